package pci

import (
	"bytes"
	"testing"

	"github.com/govmm/govmm/devices"
	"github.com/govmm/govmm/devices/devicetest"
	"github.com/stretchr/testify/require"
)

// fuzzRig is a bus with the host bridge and two devices whose INTA# and
// INTB# share GSI 17, reached through every guest-facing path: the
// mechanism #1 ports, the ECAM window and device B's MSI-X BAR.
//
//	slot 1, A: 32-bit memory BAR 0 (4 KiB), I/O BAR 1 (32 ports), INTA#,
//	           extended configuration space, a vendor capability with a
//	           writable field and read and write hooks
//	slot 4, B: 64-bit memory BAR 0 (16 KiB): MSI-X table of 8 vectors at
//	           0, PBA at 0x2000; INTB#
type fuzzRig struct {
	t      testing.TB
	bus    *Bus
	ports  *devices.PortBus
	ecam   *ECAM
	a, b   *ConfigSpace
	msix   *MSIXTable
	barB   *Mux
	mapper *recordingMapper
	line   *devicetest.IRQRecorder // GSI 17
	field  uint16                  // A's writable capability field
	// concurrent says other goroutines use the rig too: reads are not
	// repeatable then, and firmware must not run.
	concurrent bool
}

func newFuzzRig(t testing.TB) *fuzzRig {
	r := &fuzzRig{t: t, ports: devices.NewPortBus(), mapper: newRecordingMapper(t), barB: &Mux{}}
	lines := map[uint32]devices.IRQLine{}
	r.bus = NewBus(BusConfig{Mapper: r.mapper, IRQ: func(gsi uint32) devices.IRQLine {
		l := &devicetest.IRQRecorder{}
		if gsi == 17 {
			r.line = l
		}
		lines[gsi] = l
		return l
	}})

	h := testHeader()
	h.Extended = true
	r.a = newConfig(t, h)
	require.NoError(t, r.a.SetBAR(0, BAR{Kind: BARMemory32, Size: 4096, Handler: &bytesHandler{mem: make([]byte, 4096)}}))
	require.NoError(t, r.a.SetBAR(1, BAR{Kind: BARIO, Size: 32}))
	capOff, err := r.a.AddVendorCapability([]byte{1, 0, 0, 0, 0})
	require.NoError(t, err)
	r.field = uint16(capOff) + 4
	require.NoError(t, r.a.SetWriteMask(r.field, []byte{0xFF, 0xFF}))
	// The read hook mirrors the field into the next byte, the write hook
	// counts: both deterministic, so repeated reads agree.
	require.NoError(t, r.a.OnRead(r.field+2, 1, func(uint16, int) { r.a.SetUint8(r.field+2, r.a.Uint8(r.field)) }))
	require.NoError(t, r.a.OnWrite(r.field, 2, func(uint16, int) { r.a.SetUint8(r.field+3, r.a.Uint8(r.field+3)+1) }))
	require.NoError(t, r.bus.Attach(1, r.a))

	h = testHeader()
	h.InterruptPin = PinINTB
	r.b = newConfig(t, h)
	require.NoError(t, r.b.SetBAR(0, BAR{Kind: BARMemory64, Size: 16 << 10, Handler: r.barB}))
	r.msix, err = AddMSIX(r.b, MSIXConfig{Vectors: 8, TableBAR: 0, PBABAR: 0, PBAOffset: 0x2000, Router: &recordingRouter{}})
	require.NoError(t, err)
	require.NoError(t, r.barB.Add(0, r.msix.TableSize(), r.msix))
	require.NoError(t, r.barB.Add(0x2000, r.msix.PBASize(), r.msix.PBA()))
	require.NoError(t, r.bus.Attach(4, r.b))

	conf1 := NewConf1(r.bus, devices.NewResetControl(nil))
	require.NoError(t, r.ports.Register("conf1 address", ConfigAddressPort, ConfigAddressPorts, conf1.AddressPort()))
	require.NoError(t, r.ports.Register("conf1 data", ConfigDataPort, ConfigDataPorts, conf1.DataPort()))
	r.ecam, err = NewECAM(r.bus, ECAMBusCount)
	require.NoError(t, err)
	return r
}

// fuzzInput hands out the fuzzer's bytes, then zeros.
type fuzzInput []byte

func (in *fuzzInput) byte() byte {
	if len(*in) == 0 {
		return 0
	}
	b := (*in)[0]
	*in = (*in)[1:]
	return b
}

func (in *fuzzInput) uint16() uint16 { return uint16(in.byte()) | uint16(in.byte())<<8 }

func (in *fuzzInput) bytes(n int) []byte {
	b := make([]byte, n)
	for i := range b {
		b[i] = in.byte()
	}
	return b
}

// portSizes are the sizes of IN and OUT; mmioSizes those of loads and
// stores, including the odd ones a handler must survive.
var (
	portSizes = []int{1, 2, 4}
	mmioSizes = []int{1, 2, 4, 8, 3, 16}
)

// checkedRead reads twice, into buffers of different garbage, and fails
// unless both reads fill every byte with the same value.
func (r *fuzzRig) checkedRead(what string, n int, read func([]byte)) {
	x := bytes.Repeat([]byte{0x00}, n)
	y := bytes.Repeat([]byte{0xA5}, n)
	read(x)
	if r.concurrent {
		return
	}
	read(y)
	if !bytes.Equal(x, y) {
		r.t.Fatalf("%s of %d bytes: %x then %x: not every byte was filled", what, n, x, y)
	}
}

// step performs one guest action chosen by the input.
func (r *fuzzRig) step(in *fuzzInput) {
	switch op := in.byte() % 10; op {
	case 0: // a DWORD to CONFIG_ADDRESS aimed at a real function
		dev := uint32(in.byte() % 5)
		addr := 1<<31 | dev<<11 | uint32(in.byte())&0xFC
		if in.byte()%8 == 0 {
			addr ^= uint32(in.byte()) << 8 // function, device high bits
		}
		r.ports.Write(ConfigAddressPort, le.AppendUint32(nil, addr))
	case 1: // any OUT to 0xCF8-0xCFF
		port := ConfigAddressPort + uint16(in.byte()%8)
		n := portSizes[int(in.byte())%len(portSizes)]
		r.ports.Write(port, in.bytes(n))
	case 2: // any IN from 0xCF8-0xCFF
		port := ConfigAddressPort + uint16(in.byte()%8)
		n := portSizes[int(in.byte())%len(portSizes)]
		r.checkedRead("IN", n, func(b []byte) { r.ports.Read(port, b) })
	case 3: // ECAM store
		off := r.ecamOffset(in)
		n := mmioSizes[int(in.byte())%len(mmioSizes)]
		r.ecam.WriteMMIO(off, in.bytes(n))
	case 4: // ECAM load
		off := r.ecamOffset(in)
		n := mmioSizes[int(in.byte())%len(mmioSizes)]
		r.checkedRead("ECAM load", n, func(b []byte) { r.ecam.ReadMMIO(off, b) })
	case 5: // MSI-X BAR store
		off := uint64(in.uint16() % 0x2100)
		n := mmioSizes[int(in.byte())%len(mmioSizes)]
		r.barB.WriteMMIO(off, in.bytes(n))
	case 6: // MSI-X BAR load
		off := uint64(in.uint16() % 0x2100)
		n := mmioSizes[int(in.byte())%len(mmioSizes)]
		r.checkedRead("BAR load", n, func(b []byte) { r.barB.ReadMMIO(off, b) })
	case 7: // the device side: an MSI-X vector fires
		r.msix.Signal(int(in.byte()%10) - 1)
	case 8: // the device side: INTx
		v := in.byte()
		dev := r.a
		if v&1 != 0 {
			dev = r.b
		}
		dev.SetINTx(v&2 != 0)
	case 9: // rarely, firmware runs again
		if in.byte() == 0 && !r.concurrent {
			if _, err := r.bus.AssignResources(DefaultWindows()); err != nil {
				r.t.Fatalf("AssignResources: %v", err)
			}
		}
	}
}

// ecamOffset picks an ECAM offset, mostly inside a populated slot.
func (r *fuzzRig) ecamOffset(in *fuzzInput) uint64 {
	slot := uint64([]uint8{0, 1, 4, 2}[in.byte()%4])
	off := slot<<ecamDeviceShift | uint64(in.uint16()&ecamRegisterMask)
	if in.byte()%16 == 0 {
		off ^= uint64(in.uint16()) << ecamFunctionShift // other functions, buses, out of the window
	}
	return off
}

// check verifies the invariants the guest cannot break.
func (r *fuzzRig) check() {
	t := r.t
	for _, c := range []struct {
		cs           *ConfigSpace
		vendor, dev  uint16
		bar0TypeBits uint32
	}{
		{r.a, 0x1AF4, 0x1041, 0x0},
		{r.b, 0x1AF4, 0x1041, 0x4},
		{r.bus.HostBridge().Config(), HostBridgeVendorID, HostBridgeDeviceID, 0},
	} {
		if c.cs.VendorID() != c.vendor || c.cs.DeviceID() != c.dev {
			t.Fatalf("IDs changed: %04x:%04x", c.cs.VendorID(), c.cs.DeviceID())
		}
		if c.cs.BARRegister(0)&barMemFlagsMask != c.bar0TypeBits {
			t.Fatalf("BAR 0 type bits changed: %#x", c.cs.BARRegister(0))
		}
	}
	if r.a.BARRegister(1)&barIOFlagsMask != barIOSpace || r.a.BARRegister(1) > ioSpaceLimit {
		t.Fatalf("I/O BAR register %#x", r.a.BARRegister(1))
	}
	if r.a.BARAddress(0)%4096 != 0 || r.a.BARAddress(1)%32 != 0 || r.b.BARAddress(0)%(16<<10) != 0 {
		t.Fatalf("BAR addresses not naturally aligned: %#x %#x %#x", r.a.BARAddress(0), r.a.BARAddress(1), r.b.BARAddress(0))
	}

	// The mapper's view matches what each BAR decodes.
	r.mapper.mu.Lock()
	for _, d := range []*ConfigSpace{r.a, r.b} {
		for i := range NumBARs {
			want, ok := d.MappedRegion(i)
			got, live := r.mapper.live[barKey{d, i}]
			if ok != live || ok && (got.Addr != want.Addr || got.Size != want.Size) {
				t.Fatalf("BAR %d: mapper has %v (%v), decodes %v (%v)", i, got, live, want, ok)
			}
		}
	}
	r.mapper.mu.Unlock()

	// GSI 17 is the OR of the two pins, each gated by Interrupt Disable.
	driven := func(cs *ConfigSpace) bool {
		return cs.Status()&StatusInterrupt != 0 && cs.Command()&CommandInterruptDisable == 0
	}
	if want := driven(r.a) || driven(r.b); r.line.Level() != want {
		t.Fatalf("GSI 17 is %v, want %v", r.line.Level(), want)
	}

	// A pending vector is a masked one: unmasking sends it.
	for v := range r.msix.Vectors() {
		if r.msix.Pending(v) && !r.msix.Masked(v) {
			t.Fatalf("vector %d pending while unmasked", v)
		}
	}
}

// FuzzBus throws arbitrary sequences of configuration port accesses, ECAM
// accesses, MSI-X table accesses and device-side events at a bus, checking
// that nothing panics, that reads fill exactly the bytes asked for, and
// that the invariants in check hold. Run it with
//
//	go test -run '^$' -fuzz FuzzBus -fuzztime 60s ./devices/pci/
func FuzzBus(f *testing.F) {
	// Seeds: Linux's conf1 probe, a BAR sizing through conf1, enabling
	// decoding and MSI-X through ECAM, programming and firing a vector.
	f.Add([]byte{1, 3, 2, 1, 0, 0, 0, 2, 0, 2, 0, 1, 0x10, 0, 1, 4, 2, 0xFF, 0xFF, 0xFF, 0xFF, 2, 4, 2})
	f.Add([]byte{3, 2, 0x04, 0x00, 1, 2, 0x07, 0x00, 3, 2, 0x42, 0x00, 1, 2, 0x00, 0xC0, 5, 0x0C, 0x00, 2, 0, 0, 0, 0, 7, 1, 6, 0x00, 0x20, 3})
	f.Add([]byte{9, 0, 8, 2, 8, 3, 3, 1, 0x04, 0x00, 0, 1, 0x00, 0x04, 8, 0, 4, 1, 0x06, 0x00, 0, 1})
	f.Add(bytes.Repeat([]byte{4, 1, 0x44, 0x00, 0, 2}, 8))
	f.Fuzz(func(t *testing.T, data []byte) {
		r := newFuzzRig(t)
		in := fuzzInput(data)
		for len(in) > 0 {
			r.step(&in)
			r.check()
		}
	})
}
