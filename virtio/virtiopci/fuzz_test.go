package virtiopci_test

import (
	"runtime"
	"testing"
	"time"

	"github.com/govmm/govmm/devices/pci"
	"github.com/govmm/govmm/machine/memory"
	"github.com/govmm/govmm/virtio"
	"github.com/govmm/govmm/virtio/rng"
	"github.com/govmm/govmm/virtio/virtiopci"
	"github.com/govmm/govmm/virtio/virtiotest"
	"github.com/stretchr/testify/require"
	"golang.org/x/sys/unix"
)

// The fuzzed machine's guest RAM: small and at address 0, so that fuzzed
// addresses often hit it, with guard bytes around it in the host
// allocation that must never change.
const (
	fuzzRAMSize = 64 << 10
	// fuzzDataSize is the data area the well-formed driver's buffers
	// come from.
	fuzzDataSize = 4 << 10
	// fuzzWatchdog is how long one input may run: a deadlock shows up as
	// a panic with every goroutine's stack.
	fuzzWatchdog = 20 * time.Second
)

// The operations a fuzz input is a sequence of: a byte selects one, the
// bytes after it are its arguments.
const (
	opCfgRead     = iota // configuration read, any offset, 1/2/4 bytes
	opCfgWrite           // configuration write
	opBARRead            // BAR 0 read, any offset, 1/2/4/8 bytes
	opBARWrite           // BAR 0 write
	opCommonWrite        // one common configuration register, natural width
	opBringUp            // reset, negotiate, lay a queue out in RAM, DRIVER_OK
	opRawQueue           // queue registers from the input, no checks
	opDriverOK           // set DRIVER_OK (and FEATURES_OK) as is
	opPost               // post a chain with the well-formed driver and notify
	opHarvest            // take used chains back
	opNotify             // write a notify address
	opKick               // signal a doorbell eventfd, as KVM would
	opRAMWrite           // scribble on guest RAM while the device is stopped
	opMSIX               // MSI-X control and a table entry
	opPCICfg             // an access through the PCI configuration window
	opReset              // write 0 to device_status
	opYield              // let the device's goroutines run
	numOps
)

// commonRegs are the common configuration registers with their widths.
var commonRegs = [...]struct {
	off uint64
	n   int
}{
	{commonDFSelect, 4}, {commonDF, 4}, {commonGFSelect, 4}, {commonGF, 4},
	{commonMSIX, 2}, {commonNumQ, 2}, {commonStatus, 1}, {commonCfgGen, 1},
	{commonQSelect, 2}, {commonQSize, 2}, {commonQMSIX, 2}, {commonQEnable, 2},
	{commonQNotifyOff, 2}, {commonQDescLo, 4}, {commonQDescHi, 4},
	{commonQAvailLo, 4}, {commonQAvailHi, 4}, {commonQUsedLo, 4}, {commonQUsedHi, 4},
	{commonQNData, 2}, {commonQReset, 2},
}

var accessSizes = [...]int{1, 2, 4, 8}

// fuzzer runs one input against a virtio-rng function.
type fuzzer struct {
	t    testing.TB
	r    *rig
	g    *virtiotest.GuardedRAM
	bar  pci.MMIOHandler
	d    *virtiotest.Driver // the well-formed driver of the last bring-up
	bufs []virtiotest.Buf
	next int
}

func newFuzzer(t testing.TB) *fuzzer {
	g := virtiotest.NewGuardedRAM(fuzzRAMSize)
	r := newRigWithRAM(t, rng.New(), g.Mem, g.RAM)
	r.probe()
	b, ok := r.tr.Config().BAR(virtiopci.BARIndex)
	require.True(t, ok)
	return &fuzzer{t: t, r: r, g: g, bar: b.Handler}
}

func (f *fuzzer) barRead(off uint64, n int) uint64 {
	var b [8]byte
	f.bar.ReadMMIO(off, b[:n])
	return le.Uint64(b[:])
}

func (f *fuzzer) barWrite(off uint64, n int, v uint64) {
	f.bar.WriteMMIO(off, le.AppendUint64(nil, v)[:n])
}

func (f *fuzzer) common(off uint64) uint64 { return uint64(f.r.caps[capCommonCfg].offset) + off }

func (f *fuzzer) status() uint8 { return uint8(f.barRead(f.common(commonStatus), 1)) }

// running reports whether the device may be using guest RAM: only after
// DRIVER_OK, which only a reset (which stops the device) clears.
func (f *fuzzer) running() bool { return f.status()&sDriverOK != 0 }

// ramAddr turns an input value into a guest address: mostly inside the
// 64 KiB of RAM, sometimes just past it.
func ramAddr(v uint32) uint64 { return uint64(v) % (fuzzRAMSize + fuzzRAMSize/4) }

func (f *fuzzer) run(data []byte) {
	in := &virtiotest.Input{B: data}
	for in.More() {
		f.step(in)
	}
}

func (f *fuzzer) step(in *virtiotest.Input) {
	r := f.r
	switch in.U8() % numOps {
	case opCfgRead:
		off, n := uint16(in.U8()), accessSizes[in.U8()%3]
		var b [4]byte
		r.bus.ReadConfig(pci.Address{Device: slot, Register: off}, b[:n])
	case opCfgWrite:
		off, n, v := uint16(in.U8()), accessSizes[in.U8()%3], in.U32()
		r.bus.WriteConfig(pci.Address{Device: slot, Register: off}, le.AppendUint32(nil, v)[:n])
	case opBARRead:
		f.barRead(uint64(in.U16())%virtiopci.BARSize, accessSizes[in.U8()%4])
	case opBARWrite:
		off, n := uint64(in.U16())%virtiopci.BARSize, accessSizes[in.U8()%4]
		f.barWrite(off, n, in.U64())
	case opCommonWrite:
		reg := commonRegs[int(in.U8())%len(commonRegs)]
		f.barWrite(f.common(reg.off), reg.n, in.U64())
	case opBringUp:
		f.bringUp(in)
	case opRawQueue:
		f.barWrite(f.common(commonQSelect), 2, uint64(in.U8()%3))
		f.barWrite(f.common(commonQSize), 2, uint64(in.U16()))
		for _, reg := range []uint64{commonQDescLo, commonQAvailLo, commonQUsedLo} {
			f.barWrite(f.common(reg), 8, ramAddr(in.U32()))
		}
		f.barWrite(f.common(commonQMSIX), 2, uint64(in.U8()%4))
		f.barWrite(f.common(commonQEnable), 2, uint64(in.U8()%2))
	case opDriverOK:
		f.barWrite(f.common(commonStatus), 1, uint64(f.status()|sDriverOK|in.U8()&sFeaturesOK))
	case opPost:
		f.post(in)
	case opHarvest:
		if f.d != nil {
			for range f.d.Cfg.Size {
				if _, _, ok := f.d.GetUsed(); !ok {
					break
				}
			}
			f.d.EnableInterrupts()
		}
	case opNotify:
		r.notifyVia(r.notifyCaps[int(in.U8())%len(r.notifyCaps)], uint16(in.U8()%4))
	case opKick:
		bells := r.tr.Doorbells()
		_, _ = unix.Write(bells[int(in.U8())%len(bells)].FD, []byte{1, 0, 0, 0, 0, 0, 0, 0})
	case opRAMWrite:
		addr, n := int(in.U16())%fuzzRAMSize, int(in.U8())
		b := in.Bytes(n)
		// While the device runs, the driver changes RAM only through
		// the rings' protocol (opPost); a stopped device does not look.
		if !f.running() {
			copy(f.g.RAM[addr:], b)
		}
	case opMSIX:
		ctl := r.msixCap + msixCapControl
		v := in.U8()
		r.cfgWrite(ctl, 2, uint32(v&1)<<15|uint32(v&2)<<13)
		e := uint64(r.tableOff) + uint64(in.U8()%4)*msixEntrySize
		f.barWrite(e, 4, msiAddressBase)
		f.barWrite(e+8, 4, uint64(in.U8()))
		f.barWrite(e+msixVectorCtlOff, 4, uint64(in.U8()&1))
	case opPCICfg:
		cap := r.caps[capPCICfg].pos
		r.cfgWrite(cap+capBar, 1, uint32(in.U8()%2))
		r.cfgWrite(cap+capOffset, 4, uint32(in.U16())%(virtiopci.BARSize+8))
		r.cfgWrite(cap+capLength, 4, uint32(in.U8()%6))
		if in.U8()&1 == 0 {
			r.cfgRead(cap+capCfgData, accessSizes[in.U8()%3])
		} else {
			r.cfgWrite(cap+capCfgData, accessSizes[in.U8()%3], in.U32())
		}
	case opReset:
		f.barWrite(f.common(commonStatus), 1, 0)
	case opYield:
		runtime.Gosched()
		if in.U8()&1 != 0 {
			time.Sleep(10 * time.Microsecond)
		}
	}
}

// bringUp is the driver initialising the device, with input-chosen
// features, queue size, placement and vectors; the queue may well not fit.
func (f *fuzzer) bringUp(in *virtiotest.Input) {
	w := func(off uint64, n int, v uint64) { f.barWrite(f.common(off), n, v) }
	w(commonStatus, 1, 0)
	f.d = nil
	w(commonStatus, 1, sAcknowledge|sDriver)
	sel := in.U8()
	var features uint64
	for i, bit := range []uint{fVersion1, fIndirectDesc, fEventIdx, uint(in.U8() % 64)} {
		if sel&(1<<i) == 0 {
			features |= 1 << bit
		}
	}
	w(commonGFSelect, 4, 0)
	w(commonGF, 4, features&lowBits)
	w(commonGFSelect, 4, 1)
	w(commonGF, 4, features>>32)
	w(commonStatus, 1, sAcknowledge|sDriver|sFeaturesOK)

	size := uint16(1) << (in.U8() % 8) // up to 128, above rng's maximum
	base := ramAddr(uint32(in.U16())) &^ 15
	cfg, end := virtiotest.Layout(base, size, virtio.Features(features))
	w(commonQSelect, 2, 0)
	w(commonQSize, 2, uint64(size))
	w(commonQDescLo, 8, cfg.DescTable)
	w(commonQAvailLo, 8, cfg.AvailRing)
	w(commonQUsedLo, 8, cfg.UsedRing)
	w(commonQMSIX, 2, uint64(in.U8()%4))
	w(commonMSIX, 2, uint64(in.U8()%4))
	w(commonQEnable, 2, 1)
	if end+fuzzDataSize <= fuzzRAMSize {
		// The rings fit: drive them properly. The device is stopped, so
		// the driver may set them up.
		f.d = virtiotest.NewDriver(f.g.Mem, cfg, memory.Range{Start: end, Size: fuzzDataSize})
		f.bufs = f.bufs[:0]
		for range 4 {
			n := uint32(in.U16()%(fuzzDataSize/4-16)) + 1
			f.bufs = append(f.bufs, virtiotest.Buf{Addr: f.d.Alloc(uint64(n)), Len: n})
		}
		f.d.EnableInterrupts()
	}
	w(commonStatus, 1, sAcknowledge|sDriver|sFeaturesOK|sDriverOK)
}

const lowBits = 1<<32 - 1

// post adds a chain of up to three of the driver's buffers, each readable
// or writable as the input says (so sometimes in the wrong order), and
// notifies.
func (f *fuzzer) post(in *virtiotest.Input) {
	if f.d == nil || f.d.FreeDescriptors() < 3 {
		return
	}
	f.d.AddChain(virtiotest.InputChain(in, f.bufs, &f.next)...)
	if f.d.Publish() || in.U8()&1 == 0 {
		f.r.notify(0)
	}
}

// finish stops the device and checks what must hold after any input.
func (f *fuzzer) finish() {
	t := f.t
	// Whatever the input did, the registers read sane values.
	num := f.barRead(f.common(commonNumQ), 2)
	if num != 1 {
		t.Fatalf("num_queues %d", num)
	}
	for q := range uint64(2) {
		f.barWrite(f.common(commonQSelect), 2, q)
		if v := f.barRead(f.common(commonQMSIX), 2); v >= 2 && v != noVector {
			t.Fatalf("queue %d vector %#x outside the table", q, v)
		}
	}
	if v := f.barRead(f.common(commonMSIX), 2); v >= 2 && v != noVector {
		t.Fatalf("config vector %#x outside the table", v)
	}
	if isr := f.barRead(uint64(f.r.caps[capISRCfg].offset), 1); isr&^(isrQueue|isrConfig) != 0 {
		t.Fatalf("ISR %#x", isr)
	}
	// Close resets the device: its worker is gone once it returns, the
	// interrupt is deasserted, and nothing may have been written outside
	// RAM.
	require.NoError(t, f.r.tr.Close())
	if f.r.intx().Level() {
		t.Fatal("INTx# asserted after Close")
	}
	f.g.Check(t)
}

// runInput runs one input under a watchdog.
func runInput(t testing.TB, data []byte) {
	virtiotest.WithWatchdog("virtiopci", fuzzWatchdog, func() {
		f := newFuzzer(t)
		f.run(data)
		f.finish()
	})
}

// fuzzSeeds are inputs that reach the interesting states: a working
// queue, a broken one, the INTx path, the PCI configuration window.
func fuzzSeeds() [][]byte {
	good := []byte{
		opMSIX, 1, 0, 0x41, 0, opMSIX, 1, 1, 0x42, 0,
		opBringUp, 0b1000, 0, 3, 0x00, 0x10, 0, 1, 0x40, 0, 0x80, 0, 0x20, 0, 0x10, 0,
		opPost, 0, 0, 1, opYield, 1, opPost, 2, 0b001, 0, opYield, 1, opHarvest, opPost, 1, 0, 0,
		opYield, 1, opHarvest,
	}
	broken := []byte{
		opBringUp, 0b1000, 0, 7, 0xF0, 0xFF, 0, 0, 0, 0, 0, 0, 0,
		opRawQueue, 0, 3, 0, 0xFF, 0xFF, 0xFF, 0xFF, 8, 0, 0, 0, 0x10, 0, 0, 0, 1, 1,
		opDriverOK, 8, opReset, opRAMWrite, 0, 0x10, 16, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15, 16,
	}
	intx := []byte{
		opBringUp, 0b1000, 0, 2, 0x00, 0x20, 3, 3, 0x00, 1, 0, 1, 0, 1, 0, 1,
		opPost, 0, 0, 0, opYield, 1, opYield, 1, opBARRead, 0x00, 0x10, 0, opHarvest,
	}
	window := []byte{
		opPCICfg, 0, 0x14, 0, 1, 1, 0, 3, 0, 0, 0,
		opPCICfg, 0, 0x00, 0x10, 1, 0, 0,
		opPCICfg, 0, 0x00, 0x30, 2, 1, 1, 0, 0, 0, 0,
		opCfgWrite, 0x04, 2, 0x07, 0x04, 0, 0,
	}
	return [][]byte{good, broken, intx, window, {opReset}, nil}
}

// FuzzTransport drives a virtio-rng function with a sequence of
// configuration and BAR accesses, queue setups with good and garbage
// rings, notifications and resets. It must never panic, deadlock or write
// outside guest RAM.
func FuzzTransport(f *testing.F) {
	for _, s := range fuzzSeeds() {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		if len(data) > 4096 {
			data = data[:4096]
		}
		runInput(t, data)
	})
}

// TestHostileAccessPatterns runs the fuzz target's seeds and a few hundred
// random inputs, so that `go test -race` covers them.
func TestHostileAccessPatterns(t *testing.T) {
	for _, s := range fuzzSeeds() {
		runInput(t, s)
	}
	n := 300
	if testing.Short() {
		n = 30
	}
	for _, data := range virtiotest.RandomInputs(1, n, []byte{opBringUp, opPost, opPost, opYield, opHarvest, opNotify, opReset}) {
		runInput(t, data)
	}
}
