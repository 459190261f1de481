package virtiommio_test

import (
	"runtime"
	"testing"
	"time"

	"github.com/govmm/govmm/machine/memory"
	"github.com/govmm/govmm/virtio"
	"github.com/govmm/govmm/virtio/rng"
	"github.com/govmm/govmm/virtio/virtiommio"
	"github.com/govmm/govmm/virtio/virtiotest"
	"github.com/stretchr/testify/require"
	"golang.org/x/sys/unix"
)

const (
	// fuzzRAMSize is the fuzzed machine's guest RAM: small and at
	// address 0, so that fuzzed addresses often hit it.
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
	opRead     = iota // any offset in and past the window, 1/2/4/8 bytes
	opWrite           // the same, writing
	opRegister        // one control register, 32 bits, as a driver writes it
	opBringUp         // reset, negotiate, lay a queue out in RAM, DRIVER_OK
	opRawQueue        // queue registers from the input, no checks
	opDriverOK        // set DRIVER_OK (and FEATURES_OK) as is
	opPost            // post a chain with the well-formed driver and notify
	opHarvest         // take used chains back
	opKick            // signal the doorbell eventfd, as KVM would
	opRAMWrite        // scribble on guest RAM while the device is stopped
	opACK             // read InterruptStatus and acknowledge it
	opReset           // write 0 to Status
	opYield           // let the device's goroutines run
	numOps
)

var (
	controlRegs = [...]uint64{
		mMagic, mVersion, mDeviceID, mVendorID, mDevFeatures, mDevFeatSel, mDrvFeatures,
		mDrvFeatSel, mQueueSel, mQueueNumMax, mQueueNum, mQueueReady, mQueueNotify,
		mIntStatus, mIntACK, mStatus, mDescLow, mDescHigh, mDriverLow, mDriverHigh,
		mDeviceLow, mDeviceHigh, mSHMSel, mConfigGen,
	}
	accessSizes = [...]int{1, 2, 4, 8}
)

// fuzzer runs one input against a virtio-rng device.
type fuzzer struct {
	t    testing.TB
	r    *rig
	g    *virtiotest.GuardedRAM
	d    *virtiotest.Driver // the well-formed driver of the last bring-up
	bufs []virtiotest.Buf
	next int
}

func newFuzzer(t testing.TB) *fuzzer {
	g := virtiotest.NewGuardedRAM(fuzzRAMSize)
	r := &rig{t: t, mem: g.Mem}
	tr, err := virtiommio.New(virtiommio.Config{Device: rng.New(), Mem: g.Mem, Interrupt: func() { r.edges.Add(1) }})
	require.NoError(t, err)
	r.tr = tr
	return &fuzzer{t: t, r: r, g: g}
}

// running reports whether the device may be using guest RAM: only after
// DRIVER_OK, which only a reset (which stops the device) clears.
func (f *fuzzer) running() bool { return f.r.read(mStatus)&sDriverOK != 0 }

// ramAddr turns an input value into a guest address: mostly inside the
// 64 KiB of RAM, sometimes just past it.
func ramAddr(v uint32) uint64 { return uint64(v) % (fuzzRAMSize + fuzzRAMSize/4) }

func (f *fuzzer) step(in *virtiotest.Input) {
	r := f.r
	switch in.U8() % numOps {
	case opRead:
		var b [8]byte
		r.tr.ReadMMIO(uint64(in.U16())%(2*mWindow), b[:accessSizes[in.U8()%4]])
	case opWrite:
		off, n := uint64(in.U16())%(2*mWindow), accessSizes[in.U8()%4]
		r.tr.WriteMMIO(off, le.AppendUint64(nil, in.U64())[:n])
	case opRegister:
		r.write(controlRegs[int(in.U8())%len(controlRegs)], in.U32())
	case opBringUp:
		f.bringUp(in)
	case opRawQueue:
		r.write(mQueueSel, uint32(in.U8()%3))
		r.write(mQueueNum, uint32(in.U16()))
		for _, reg := range []uint64{mDescLow, mDriverLow, mDeviceLow} {
			r.write(reg, uint32(ramAddr(in.U32())))
		}
		r.write(mQueueReady, uint32(in.U8()%2))
	case opDriverOK:
		r.write(mStatus, r.read(mStatus)|sDriverOK|uint32(in.U8()&sFeaturesOK))
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
	case opKick:
		_, _ = unix.Write(r.tr.Doorbells()[0].FD, le.AppendUint64(nil, 1))
	case opRAMWrite:
		addr, n := int(in.U16())%fuzzRAMSize, int(in.U8())
		b := in.Bytes(n)
		// While the device runs, the driver changes RAM only through
		// the rings' protocol (opPost); a stopped device does not look.
		if !f.running() {
			copy(f.g.RAM[addr:], b)
		}
	case opACK:
		r.write(mIntACK, r.read(mIntStatus))
	case opReset:
		r.write(mStatus, 0)
	case opYield:
		runtime.Gosched()
		if in.U8()&1 != 0 {
			time.Sleep(10 * time.Microsecond)
		}
	}
}

// bringUp is the driver initialising the device, with input-chosen
// features, queue size and placement; the queue may well not fit.
func (f *fuzzer) bringUp(in *virtiotest.Input) {
	r := f.r
	f.d = nil
	sel := in.U8()
	var features uint64
	for i, bit := range []uint{fVersion1, fIndirectDesc, fEventIdx, uint(in.U8() % 64)} {
		if sel&(1<<i) == 0 {
			features |= 1 << bit
		}
	}
	r.negotiate(features)
	size := uint16(1) << (in.U8() % 8) // up to 128, above rng's maximum
	base := ramAddr(uint32(in.U16())) &^ 15
	cfg, end := virtiotest.Layout(base, size, virtio.Features(features))
	r.write(mQueueSel, 0)
	r.write(mQueueNum, uint32(size))
	r.write(mDescLow, uint32(cfg.DescTable))
	r.write(mDriverLow, uint32(cfg.AvailRing))
	r.write(mDeviceLow, uint32(cfg.UsedRing))
	r.write(mQueueReady, 1)
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
	r.addStatus(sDriverOK)
}

// post adds a chain of up to three of the driver's buffers, each readable
// or writable as the input says (so sometimes in the wrong order), and
// notifies.
func (f *fuzzer) post(in *virtiotest.Input) {
	if f.d == nil || f.d.FreeDescriptors() < 3 {
		return
	}
	f.d.AddChain(virtiotest.InputChain(in, f.bufs, &f.next)...)
	if f.d.Publish() || in.U8()&1 == 0 {
		f.r.write(mQueueNotify, 0)
	}
}

// finish stops the device and checks what must hold after any input.
func (f *fuzzer) finish() {
	t := f.t
	r := f.r
	// Whatever the input did, the registers read sane values.
	if v := r.read(mMagic); v != magicVirt {
		t.Fatalf("MagicValue %#x", v)
	}
	if v := r.read(mIntStatus); v&^(intVring|intConfig) != 0 {
		t.Fatalf("InterruptStatus %#x", v)
	}
	r.write(mQueueSel, 1)
	if v := r.read(mQueueNumMax); v != 0 {
		t.Fatalf("QueueNumMax %d for a queue rng does not have", v)
	}
	// Close resets the device: its worker is gone once it returns, and
	// nothing may have been written outside RAM.
	require.NoError(t, r.tr.Close())
	if v := r.read(mIntStatus); v != 0 {
		t.Fatalf("InterruptStatus %#x after Close", v)
	}
	f.g.Check(t)
}

// runInput runs one input under a watchdog.
func runInput(t testing.TB, data []byte) {
	virtiotest.WithWatchdog("virtiommio", fuzzWatchdog, func() {
		f := newFuzzer(t)
		in := &virtiotest.Input{B: data}
		for in.More() {
			f.step(in)
		}
		f.finish()
	})
}

// fuzzSeeds are inputs that reach the interesting states: a working
// queue, a broken one, a queue stopped while the device runs.
func fuzzSeeds() [][]byte {
	good := []byte{
		opBringUp, 0b1000, 0, 3, 0x00, 0x10, 0x40, 0, 0x80, 0, 0x20, 0, 0x10, 0,
		opPost, 0, 0, 1, opYield, 1, opPost, 2, 0b001, 0, opYield, 1, opHarvest, opACK, opPost, 1, 0, 0,
		opKick, opYield, 1, opHarvest,
	}
	broken := []byte{
		opBringUp, 0b1000, 0, 7, 0xF0, 0xFF, 0, 0, 0, 0, 0, 0, 0,
		opRawQueue, 0, 3, 0, 0xFF, 0xFF, 0xFF, 0xFF, 8, 0, 0, 0, 0x10, 0, 0, 0, 1,
		opDriverOK, 8, opReset, opRAMWrite, 0, 0x10, 16, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15, 16,
	}
	stopped := []byte{
		opBringUp, 0b1000, 0, 2, 0x00, 0x20, 0, 1, 0, 1, 0, 1, 0, 1,
		opPost, 0, 0, 0, opRegister, 11, 0, 0, 0, 0, opYield, 1, opACK, opKick,
	}
	return [][]byte{good, broken, stopped, {opReset}, nil}
}

// FuzzTransport drives a virtio-rng device through its register window
// with a sequence of accesses of any width and offset, queue setups with
// good and garbage rings, notifications and resets. It must never panic,
// deadlock or write outside guest RAM.
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
	for _, data := range virtiotest.RandomInputs(3, n, []byte{opBringUp, opPost, opPost, opYield, opHarvest, opKick, opACK, opReset}) {
		runInput(t, data)
	}
}
