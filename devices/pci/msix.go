package pci

import (
	"errors"
	"fmt"
	"sync"
)

// MSI-X capability structure (PCI 3.0 §6.8.2, Figure 6-10): after the ID
// and next pointer, Message Control, then the Table Offset/Table BIR and
// the PBA Offset/PBA BIR registers.
const (
	msixControl         = 2  // capability offset of Message Control (16 bits, §6.8.2.3)
	msixTableOffsetBIR  = 4  // capability offset of Table Offset/Table BIR (32 bits, §6.8.2.4)
	msixPBAOffsetBIR    = 8  // capability offset of PBA Offset/PBA BIR (32 bits, §6.8.2.5)
	msixCapabilitySize  = 12 // the whole structure
	msixTableSizeMask   = 0x7FF
	msixBIRMask         = 0x7 // bits 2:0 of the offset registers: the BAR indicator
	msixStructureAlign  = 8   // the offsets' low three bits hold the BIR: QWORD alignment
	msixControlWritable = MSIXControlFunctionMask | MSIXControlEnable

	// MSIXControlFunctionMask is Message Control bit 14: while set, all
	// vectors are masked, whatever their own Mask bits (§6.8.2.3).
	MSIXControlFunctionMask = 1 << 14
	// MSIXControlEnable is Message Control bit 15: the function uses
	// MSI-X and not INTx# (§6.8.2.3).
	MSIXControlEnable = 1 << 15
	// MaxMSIXVectors is the largest table: Table Size is 11 bits
	// holding N-1 (§6.8.2.3).
	MaxMSIXVectors = msixTableSizeMask + 1
)

// MSI-X table and PBA layout (PCI 3.0 §6.8.2.6-§6.8.2.10, Figures 6-11 and
// 6-12).
const (
	// MSIXEntrySize is the size of a table entry: Message Address,
	// Message Upper Address, Message Data, Vector Control.
	MSIXEntrySize       = 16
	msixEntryAddrLow    = 0  // §6.8.2.6: bits 1:0 are 0 (DWORD-aligned address)
	msixEntryAddrHigh   = 4  // §6.8.2.7
	msixEntryData       = 8  // §6.8.2.8
	msixEntryControl    = 12 // §6.8.2.9
	msixAddrLowMask     = ^uint32(3)
	msixVectorMasked    = 1 << 0 // Vector Control bit 0, Mask Bit; 1 after reset; bits 31:1 reserved, read as 0
	msixPBABitsPerQWORD = 64     // the PBA is an array of QWORDs, one bit per vector (§6.8.2.10)
	msixPBAQWORDSize    = 8
	// dwordSize and qwordSize are the only table accesses: "For all
	// accesses to MSI-X Table and MSI-X PBA fields, software must use
	// aligned full DWORD or aligned full QWORD transactions; otherwise,
	// the result is undefined" (§6.8.2). Here, other writes are ignored;
	// reads of any shape return the bytes they cover.
	dwordSize = 4
	qwordSize = 8
)

// MSIMessage is the memory write that signals an MSI-X vector: Data
// written to Address (PCI 3.0 §6.8.2.6-§6.8.2.8). On x86 the address
// selects local APICs and the data the vector (Intel SDM Vol. 3A §11.11).
type MSIMessage struct {
	Address uint64
	Data    uint32
}

// MSIRouter is the machine's side of one function's MSI-X vectors.
//
// UpdateVector tells it that a vector became unmasked (masked false, msg
// its message), that an unmasked vector's message changed, or that a
// vector became masked (masked true). A vector is masked while its Mask
// bit, the Function Mask or a clear MSI-X Enable says so. With KVM, an
// unmasked vector gets a GSI route for msg (KVM_SET_GSI_ROUTING with a
// KVM_IRQ_ROUTING_MSI entry) and an irqfd, and a masked one loses them.
// Changes to a masked vector's message are not reported: the call that
// unmasks it carries the current message.
//
// SendMSI delivers one message for vector (KVM_SIGNAL_MSI, or a write to
// the vector's irqfd).
//
// Both are called with the table's lock held (so that masking and
// delivery are ordered), from the vCPU goroutine that programmed the
// table or the device goroutine that called Signal; they must not call
// back into the MSIXTable.
type MSIRouter interface {
	UpdateVector(vector int, msg MSIMessage, masked bool)
	SendMSI(vector int, msg MSIMessage)
}

// MSIXConfig places an MSI-X capability's structures.
type MSIXConfig struct {
	// Vectors is the number of table entries, 1 to MaxMSIXVectors.
	Vectors int
	// TableBAR and TableOffset locate the vector table: a memory BAR of
	// the function (defined before AddMSIX) and a QWORD-aligned offset in
	// it. PBABAR and PBAOffset locate the Pending Bit Array likewise. The
	// two may share a BAR but not overlap; PCI 3.0 §6.8.2 recommends
	// giving them 4 KiB pages of their own, apart from other registers.
	TableBAR    int
	TableOffset uint32
	PBABAR      int
	PBAOffset   uint32
	// Router programs and delivers the vectors; nil drops them.
	Router MSIRouter
}

// msixEntry is one vector table entry.
type msixEntry struct {
	addrLow, addrHigh, data, control uint32
}

// msixLive is what the router was last told about a vector.
type msixLive struct {
	unmasked bool
	msg      MSIMessage
}

// MSIXTable is a function's MSI-X: the capability in configuration space
// and the vector table and Pending Bit Array it points to in a memory BAR.
// It is the table's MMIOHandler (offsets from the table's start); PBA
// returns the PBA's. Put both in the BAR's handler, for example with a Mux
// at TableOffset and PBAOffset.
type MSIXTable struct {
	cs        *ConfigSpace
	capOffset uint8
	cfg       MSIXConfig

	mu             sync.Mutex
	entries        []msixEntry
	pending        []uint64
	enabled        bool // Message Control: MSI-X Enable
	functionMasked bool // Message Control: Function Mask
	live           []msixLive
}

// AddMSIX adds an MSI-X capability to cs (PCI 3.0 §6.8.2) for the table
// and PBA that cfg places, and returns the table. Every vector starts
// masked, MSI-X disabled.
func AddMSIX(cs *ConfigSpace, cfg MSIXConfig) (*MSIXTable, error) {
	if cfg.Vectors < 1 || cfg.Vectors > MaxMSIXVectors {
		return nil, fmt.Errorf("pci: MSI-X vector count %d is not in 1-%d", cfg.Vectors, MaxMSIXVectors)
	}
	t := &MSIXTable{
		cs:      cs,
		cfg:     cfg,
		entries: make([]msixEntry, cfg.Vectors),
		pending: make([]uint64, (cfg.Vectors+msixPBABitsPerQWORD-1)/msixPBABitsPerQWORD),
		live:    make([]msixLive, cfg.Vectors),
	}
	for i := range t.entries {
		t.entries[i].control = msixVectorMasked
	}
	if err := t.checkPlacement(); err != nil {
		return nil, err
	}

	body := make([]byte, msixCapabilitySize-capabilityHeaderSize)
	le.PutUint16(body[msixControl-capabilityHeaderSize:], uint16(cfg.Vectors-1))
	le.PutUint32(body[msixTableOffsetBIR-capabilityHeaderSize:], cfg.TableOffset|uint32(cfg.TableBAR))
	le.PutUint32(body[msixPBAOffsetBIR-capabilityHeaderSize:], cfg.PBAOffset|uint32(cfg.PBABAR))
	off, err := cs.AddCapability(CapabilityMSIX, body)
	if err != nil {
		return nil, err
	}
	t.capOffset = off
	ctl := uint16(off) + msixControl
	if err := cs.SetWriteMask(ctl, le.AppendUint16(nil, msixControlWritable)); err != nil {
		return nil, err
	}
	if err := cs.OnWrite(ctl, 2, func(uint16, int) { t.controlWritten() }); err != nil {
		return nil, err
	}
	return t, nil
}

// checkPlacement checks that the table and the PBA lie inside memory BARs
// of the function without overlapping.
func (t *MSIXTable) checkPlacement() error {
	c := t.cfg
	type structure struct {
		name   string
		bar    int
		offset uint32
		size   uint64
	}
	ss := []structure{
		{"table", c.TableBAR, c.TableOffset, t.TableSize()},
		{"PBA", c.PBABAR, c.PBAOffset, t.PBASize()},
	}
	for _, s := range ss {
		b, ok := t.cs.BAR(s.bar)
		if !ok || !b.Kind.IsMemory() {
			return fmt.Errorf("pci: MSI-X %s: BAR %d is not a memory BAR", s.name, s.bar)
		}
		if s.offset%msixStructureAlign != 0 {
			return fmt.Errorf("pci: MSI-X %s offset %#x is not QWORD-aligned", s.name, s.offset)
		}
		if uint64(s.offset)+s.size > b.Size {
			return fmt.Errorf("pci: MSI-X %s [%#x, +%#x) overruns BAR %d of %#x bytes",
				s.name, s.offset, s.size, s.bar, b.Size)
		}
	}
	a, b := ss[0], ss[1]
	if a.bar == b.bar && uint64(a.offset) < uint64(b.offset)+b.size && uint64(b.offset) < uint64(a.offset)+a.size {
		return errors.New("pci: MSI-X table and PBA overlap")
	}
	return nil
}

// CapabilityOffset returns the offset of the MSI-X capability in
// configuration space.
func (t *MSIXTable) CapabilityOffset() uint8 { return t.capOffset }

// Vectors returns the number of table entries.
func (t *MSIXTable) Vectors() int { return t.cfg.Vectors }

// TableSize returns the size of the vector table in bytes.
func (t *MSIXTable) TableSize() uint64 { return uint64(t.cfg.Vectors) * MSIXEntrySize }

// PBASize returns the size of the Pending Bit Array in bytes: whole
// QWORDs.
func (t *MSIXTable) PBASize() uint64 { return uint64(len(t.pending)) * msixPBAQWORDSize }

// controlWritten takes a guest write to Message Control: the Enable and
// Function Mask bits may have changed, masking or unmasking every vector.
func (t *MSIXTable) controlWritten() {
	ctl := t.cs.Uint16(uint16(t.capOffset) + msixControl)
	t.mu.Lock()
	defer t.mu.Unlock()
	t.enabled = ctl&MSIXControlEnable != 0
	t.functionMasked = ctl&MSIXControlFunctionMask != 0
	for v := range t.entries {
		t.updateLocked(v)
	}
}

// Enabled reports whether the guest enabled MSI-X. While it is enabled
// the function must not use INTx# (PCI 3.0 §6.8.2.3).
func (t *MSIXTable) Enabled() bool {
	t.mu.Lock()
	defer t.mu.Unlock()
	return t.enabled
}

// Masked reports whether vector is masked: by its Mask bit, by the
// Function Mask, or because MSI-X is disabled.
func (t *MSIXTable) Masked(vector int) bool {
	t.mu.Lock()
	defer t.mu.Unlock()
	return vector < 0 || vector >= len(t.entries) || t.maskedLocked(vector)
}

// Pending reports whether vector's Pending bit is set.
func (t *MSIXTable) Pending(vector int) bool {
	t.mu.Lock()
	defer t.mu.Unlock()
	return vector >= 0 && vector < len(t.entries) && t.pendingLocked(vector)
}

// Message returns vector's message as the guest programmed it.
func (t *MSIXTable) Message(vector int) MSIMessage {
	t.mu.Lock()
	defer t.mu.Unlock()
	if vector < 0 || vector >= len(t.entries) {
		return MSIMessage{}
	}
	return t.messageLocked(vector)
}

// Signal raises vector (PCI 3.0 §6.8.3.4). If the vector is masked, its
// Pending bit is set instead, and the message goes out when the guest
// unmasks it. Signal returns false, doing nothing, when MSI-X is disabled
// or vector is not in the table: the device then uses INTx# (or, for
// virtio's VIRTIO_MSI_NO_VECTOR, nothing). A function that may not master
// the bus (Command bit 2 clear) cannot write the message, which is lost
// (PCIe §7.5.1.1.3: Bus Master Enable also gates MSI/MSI-X).
func (t *MSIXTable) Signal(vector int) bool {
	t.mu.Lock()
	defer t.mu.Unlock()
	if vector < 0 || vector >= len(t.entries) || !t.enabled {
		return false
	}
	if t.maskedLocked(vector) {
		t.setPendingLocked(vector, true)
		return true
	}
	if t.cs.BusMaster() && t.cfg.Router != nil {
		t.cfg.Router.SendMSI(vector, t.messageLocked(vector))
	}
	return true
}

func (t *MSIXTable) maskedLocked(v int) bool {
	return !t.enabled || t.functionMasked || t.entries[v].control&msixVectorMasked != 0
}

func (t *MSIXTable) messageLocked(v int) MSIMessage {
	e := &t.entries[v]
	return MSIMessage{Address: uint64(e.addrHigh)<<32 | uint64(e.addrLow), Data: e.data}
}

func (t *MSIXTable) pendingLocked(v int) bool {
	return t.pending[v/msixPBABitsPerQWORD]&(1<<(v%msixPBABitsPerQWORD)) != 0
}

func (t *MSIXTable) setPendingLocked(v int, set bool) {
	bit := uint64(1) << (v % msixPBABitsPerQWORD)
	if set {
		t.pending[v/msixPBABitsPerQWORD] |= bit
	} else {
		t.pending[v/msixPBABitsPerQWORD] &^= bit
	}
}

// updateLocked tells the router about a change in vector v's masking or
// message, and sends a pending message once v is unmasked: "When software
// unmasks a vector whose associated Pending bit is set, the function must
// schedule sending the associated message, and clear the Pending bit as
// soon as the message has been sent" (PCI 3.0 §6.8.3.4).
func (t *MSIXTable) updateLocked(v int) {
	masked := t.maskedLocked(v)
	msg := t.messageLocked(v)
	l := &t.live[v]
	r := t.cfg.Router
	if masked {
		if l.unmasked {
			l.unmasked = false
			if r != nil {
				r.UpdateVector(v, msg, true)
			}
		}
		return
	}
	if !l.unmasked || l.msg != msg {
		l.unmasked, l.msg = true, msg
		if r != nil {
			r.UpdateVector(v, msg, false)
		}
	}
	if t.pendingLocked(v) {
		t.setPendingLocked(v, false)
		if t.cs.BusMaster() && r != nil {
			r.SendMSI(v, msg)
		}
	}
}

// field returns a pointer to the DWORD at offset (a multiple of 4) inside
// an entry.
func (e *msixEntry) field(offset uint64) *uint32 {
	switch offset {
	case msixEntryAddrLow:
		return &e.addrLow
	case msixEntryAddrHigh:
		return &e.addrHigh
	case msixEntryData:
		return &e.data
	default:
		return &e.control
	}
}

// inRange reports whether [offset, offset+n) lies inside a region of size
// bytes, without overflow.
func inRange(offset uint64, n int, size uint64) bool {
	return offset < size && uint64(n) <= size-offset
}

// ReadMMIO reads the vector table. Bytes outside it read as zero.
func (t *MSIXTable) ReadMMIO(offset uint64, data []byte) {
	t.mu.Lock()
	defer t.mu.Unlock()
	size := t.TableSize()
	for i := range data {
		o := offset + uint64(i)
		if o < offset || o >= size {
			data[i] = 0
			continue
		}
		dw := *t.entries[o/MSIXEntrySize].field(o % MSIXEntrySize &^ (dwordSize - 1))
		data[i] = byte(dw >> (8 * (o % dwordSize)))
	}
}

// WriteMMIO writes the vector table: an aligned DWORD writes one field, an
// aligned QWORD two fields of one entry (the address, or the data and
// Vector Control). Other writes are ignored. The reserved bits read as 0:
// Message Address bits 1:0 (§6.8.2.6) and Vector Control bits 31:1
// (§6.8.2.9).
func (t *MSIXTable) WriteMMIO(offset uint64, data []byte) {
	n := len(data)
	if n != dwordSize && n != qwordSize || offset%uint64(n) != 0 || !inRange(offset, n, t.TableSize()) {
		return
	}
	t.mu.Lock()
	defer t.mu.Unlock()
	v := int(offset / MSIXEntrySize)
	e := &t.entries[v]
	for i := 0; i < n; i += dwordSize {
		field := offset%MSIXEntrySize + uint64(i)
		val := le.Uint32(data[i:])
		switch field {
		case msixEntryAddrLow:
			val &= msixAddrLowMask
		case msixEntryControl:
			val &= msixVectorMasked
		}
		*e.field(field) = val
	}
	t.updateLocked(v)
}

// PBA returns the MMIOHandler of the Pending Bit Array: read-only, one bit
// per vector, bit v%64 of QWORD v/64 (PCI 3.0 §6.8.2.10). Writes are
// ignored; bytes outside it read as zero.
func (t *MSIXTable) PBA() MMIOHandler { return (*msixPBA)(t) }

type msixPBA MSIXTable

func (p *msixPBA) ReadMMIO(offset uint64, data []byte) {
	t := (*MSIXTable)(p)
	t.mu.Lock()
	defer t.mu.Unlock()
	size := t.PBASize()
	for i := range data {
		o := offset + uint64(i)
		if o < offset || o >= size {
			data[i] = 0
			continue
		}
		data[i] = byte(t.pending[o/msixPBAQWORDSize] >> (8 * (o % msixPBAQWORDSize)))
	}
}

func (p *msixPBA) WriteMMIO(offset uint64, data []byte) {}
