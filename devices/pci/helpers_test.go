package pci

import (
	"fmt"
	"sync"
	"testing"

	"github.com/stretchr/testify/require"
)

// testHeader is a modern virtio network device (virtio 1.2 §4.1.2).
func testHeader() Header {
	return Header{
		VendorID:          0x1AF4,
		DeviceID:          0x1041,
		RevisionID:        0x01,
		ClassCode:         0x020000, // network controller, Ethernet
		SubsystemVendorID: 0x1AF4,
		SubsystemID:       0x0001,
		InterruptPin:      PinINTA,
	}
}

func newConfig(t testing.TB, h Header) *ConfigSpace {
	t.Helper()
	cs, err := NewConfigSpace(h)
	require.NoError(t, err)
	return cs
}

// Guest-side accessors: what a configuration read or write through the
// bus does to one function.

func read8(cs *ConfigSpace, off uint16) uint8 {
	var b [1]byte
	cs.ReadConfig(off, b[:])
	return b[0]
}

func read16(cs *ConfigSpace, off uint16) uint16 {
	var b [2]byte
	cs.ReadConfig(off, b[:])
	return le.Uint16(b[:])
}

func read32(cs *ConfigSpace, off uint16) uint32 {
	var b [4]byte
	cs.ReadConfig(off, b[:])
	return le.Uint32(b[:])
}

func write8(cs *ConfigSpace, off uint16, v uint8) { cs.WriteConfig(off, []byte{v}) }

func write16(cs *ConfigSpace, off uint16, v uint16) {
	cs.WriteConfig(off, le.AppendUint16(nil, v))
}

func write32(cs *ConfigSpace, off uint16, v uint32) {
	cs.WriteConfig(off, le.AppendUint32(nil, v))
}

// mapperCall is one BARMapper call.
type mapperCall struct {
	Map    bool
	Device Device
	Region Region
}

func (c mapperCall) String() string {
	op := "unmap"
	if c.Map {
		op = "map"
	}
	return fmt.Sprintf("%s %v", op, c.Region)
}

// recordingMapper records BARMapper calls and checks that they pair up:
// a BAR is mapped at most once at a time, and an unmap names the region
// that is mapped.
type recordingMapper struct {
	t     testing.TB
	mu    sync.Mutex
	calls []mapperCall
	live  map[barKey]Region
}

type barKey struct {
	dev   Device
	index int
}

func newRecordingMapper(t testing.TB) *recordingMapper {
	return &recordingMapper{t: t, live: map[barKey]Region{}}
}

func (m *recordingMapper) MapBAR(dev Device, r Region) {
	m.mu.Lock()
	defer m.mu.Unlock()
	k := barKey{dev, r.Index}
	if old, ok := m.live[k]; ok {
		m.t.Errorf("MapBAR %v while %v is mapped", r, old)
	}
	m.live[k] = r
	m.calls = append(m.calls, mapperCall{Map: true, Device: dev, Region: r})
}

func (m *recordingMapper) UnmapBAR(dev Device, r Region) {
	m.mu.Lock()
	defer m.mu.Unlock()
	k := barKey{dev, r.Index}
	if old, ok := m.live[k]; !ok || old.Addr != r.Addr || old.Size != r.Size {
		m.t.Errorf("UnmapBAR %v, mapped: %v (%v)", r, old, ok)
	}
	delete(m.live, k)
	m.calls = append(m.calls, mapperCall{Map: false, Device: dev, Region: r})
}

// take returns the calls recorded since the last take, without devices.
func (m *recordingMapper) take() []string {
	m.mu.Lock()
	defer m.mu.Unlock()
	var s []string
	for _, c := range m.calls {
		s = append(s, c.String())
	}
	m.calls = nil
	return s
}

// routerCall is one MSIRouter call.
type routerCall struct {
	Send   bool // SendMSI rather than UpdateVector
	Vector int
	Msg    MSIMessage
	Masked bool
}

type recordingRouter struct {
	mu    sync.Mutex
	calls []routerCall
}

func (r *recordingRouter) UpdateVector(vector int, msg MSIMessage, masked bool) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.calls = append(r.calls, routerCall{Vector: vector, Msg: msg, Masked: masked})
}

func (r *recordingRouter) SendMSI(vector int, msg MSIMessage) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.calls = append(r.calls, routerCall{Send: true, Vector: vector, Msg: msg})
}

func (r *recordingRouter) take() []routerCall {
	r.mu.Lock()
	defer r.mu.Unlock()
	c := r.calls
	r.calls = nil
	return c
}

// findCapability walks the capability list as Linux's pci_find_capability
// does (drivers/pci/pci.c, __pci_find_next_cap_ttl): only if Status says
// there is a list, from the pointer at 0x34, masking the low two bits of
// every pointer, stopping below 0x40, at ID 0xFF, or after 48 hops
// (PCI_FIND_CAP_TTL), which bounds a looping list.
func findCapability(read func(off uint16, n int) uint32, id uint8) uint8 {
	const findCapTTL = 48
	if read(RegStatus, 2)&StatusCapabilitiesList == 0 {
		return 0
	}
	pos := uint8(read(RegCapabilitiesPointer, 1))
	for range findCapTTL {
		if pos < HeaderSize {
			break
		}
		pos &^= 3
		ent := read(uint16(pos), 2)
		capID := uint8(ent)
		if capID == invalidCapabilityID {
			break
		}
		if capID == id {
			return pos
		}
		pos = uint8(ent >> 8)
	}
	return 0
}

// configReader adapts a ConfigSpace to findCapability's guest reads.
func configReader(cs *ConfigSpace) func(off uint16, n int) uint32 {
	return func(off uint16, n int) uint32 {
		b := make([]byte, 4)
		cs.ReadConfig(off, b[:n])
		return le.Uint32(b)
	}
}

// bytesHandler is an MMIOHandler over a byte slice that records accesses.
type bytesHandler struct {
	mu       sync.Mutex
	mem      []byte
	accesses []string
}

func (h *bytesHandler) ReadMMIO(offset uint64, data []byte) {
	h.mu.Lock()
	defer h.mu.Unlock()
	h.accesses = append(h.accesses, fmt.Sprintf("r%d@%#x", len(data), offset))
	for i := range data {
		o := offset + uint64(i)
		if o < uint64(len(h.mem)) {
			data[i] = h.mem[o]
		} else {
			data[i] = 0
		}
	}
}

func (h *bytesHandler) WriteMMIO(offset uint64, data []byte) {
	h.mu.Lock()
	defer h.mu.Unlock()
	h.accesses = append(h.accesses, fmt.Sprintf("w%d@%#x", len(data), offset))
	for i, v := range data {
		if o := offset + uint64(i); o < uint64(len(h.mem)) {
			h.mem[o] = v
		}
	}
}
