package pvpanic_test

import (
	"encoding/binary"
	"sync"
	"testing"

	"github.com/govmm/govmm/devices"
	"github.com/govmm/govmm/devices/pci"
	"github.com/govmm/govmm/devices/pvpanic"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// recorder collects onEvent calls.
type recorder struct {
	mu     sync.Mutex
	events []uint8
}

func (r *recorder) event(ev uint8) {
	r.mu.Lock()
	r.events = append(r.events, ev)
	r.mu.Unlock()
}

func (r *recorder) take() []uint8 {
	r.mu.Lock()
	defer r.mu.Unlock()
	e := r.events
	r.events = nil
	return e
}

// mapper records the BARs the bus maps.
type mapper struct{ mapped []pci.Region }

func (m *mapper) MapBAR(_ pci.Device, r pci.Region)   { m.mapped = append(m.mapped, r) }
func (m *mapper) UnmapBAR(_ pci.Device, _ pci.Region) {}

const slot = 5

func cfgRead(bus *pci.Bus, reg uint16, n int) uint32 {
	b := make([]byte, 4)
	bus.ReadConfig(pci.Address{Device: slot, Register: reg}, b[:n])
	return binary.LittleEndian.Uint32(b)
}

// TestIdentity checks what Linux's PCI core and pvpanic-pci see: QEMU's
// IDs and class, no interrupt, one 16-byte 32-bit memory BAR.
func TestIdentity(t *testing.T) {
	var rec recorder
	dev, err := pvpanic.New(rec.event)
	require.NoError(t, err)
	m := &mapper{}
	bus := pci.NewBus(pci.BusConfig{Mapper: m})
	require.NoError(t, bus.Attach(slot, dev))

	assert.EqualValues(t, 0x1B36, cfgRead(bus, pci.RegVendorID, 2), "PCI_VENDOR_ID_REDHAT")
	assert.EqualValues(t, 0x0011, cfgRead(bus, pci.RegDeviceID, 2), "PCI_DEVICE_ID_REDHAT_PVPANIC")
	assert.EqualValues(t, 1, cfgRead(bus, pci.RegRevisionID, 1))
	assert.EqualValues(t, 0x088000, cfgRead(bus, pci.RegClassCode, 3), "PCI_CLASS_SYSTEM_OTHER, prog-if 0")
	assert.EqualValues(t, 0x1AF4, cfgRead(bus, pci.RegSubsystemVendorID, 2))
	assert.EqualValues(t, 0x1100, cfgRead(bus, pci.RegSubsystemID, 2))
	assert.EqualValues(t, 0, cfgRead(bus, pci.RegHeaderType, 1), "type 0, single function")
	assert.EqualValues(t, 0, cfgRead(bus, pci.RegInterruptPin, 1), "no INTx")

	// Sizing BAR 0 (PCI 3.0 §6.2.5.1): all ones in, ~(size-1) | type out.
	a := pci.Address{Device: slot, Register: pci.RegBAR0}
	bus.WriteConfig(a, []byte{0xFF, 0xFF, 0xFF, 0xFF})
	assert.EqualValues(t, 0xFFFF_FFF0, cfgRead(bus, pci.RegBAR0, 4), "16 bytes, 32-bit, not prefetchable")
	bus.WriteConfig(a, []byte{0, 0, 0, 0})
	for i := 1; i < pci.NumBARs; i++ {
		assert.Zero(t, cfgRead(bus, uint16(pci.RegBAR0+4*i), 4), "BAR %d unused", i)
	}

	// Firmware assigns it; the machine maps the Register there.
	_, err = bus.AssignResources(pci.DefaultWindows())
	require.NoError(t, err)
	require.Len(t, m.mapped, 1)
	r := m.mapped[0]
	assert.Equal(t, pvpanic.BARIndex, r.Index)
	assert.EqualValues(t, 16, r.Size)
	assert.Same(t, dev.Register(), r.Handler)
}

// TestLinuxDriver follows drivers/misc/pvpanic: the probe reads the
// capability, the panic notifier writes one event with iowrite8.
func TestLinuxDriver(t *testing.T) {
	var rec recorder
	dev, err := pvpanic.New(rec.event)
	require.NoError(t, err)
	reg := dev.Register()

	// devm_pvpanic_probe: capability = (PANICKED | CRASH_LOADED) & ioread8(base).
	b := []byte{0}
	reg.ReadMMIO(pvpanic.RegEvents, b)
	capability := (pvpanic.PVPANIC_PANICKED | pvpanic.PVPANIC_CRASH_LOADED) & b[0]
	assert.EqualValues(t, 3, capability)
	assert.Empty(t, rec.take(), "reads report nothing")

	// pvpanic_panic_notify, without and with a crash kernel.
	reg.WriteMMIO(pvpanic.RegEvents, []byte{pvpanic.PVPANIC_PANICKED})
	reg.WriteMMIO(pvpanic.RegEvents, []byte{pvpanic.PVPANIC_CRASH_LOADED})
	assert.Equal(t, []uint8{pvpanic.PVPANIC_PANICKED, pvpanic.PVPANIC_CRASH_LOADED}, rec.take())
}

// TestRegister checks every width and offset.
func TestRegister(t *testing.T) {
	var rec recorder
	reg := pvpanic.NewRegister(rec.event)
	for _, tc := range []struct {
		offset uint64
		n      int
		want   []byte
	}{
		{0, 1, []byte{3}},
		{0, 2, []byte{3, 0}},
		{0, 4, []byte{3, 0, 0, 0}},
		{0, 8, []byte{3, 0, 0, 0, 0, 0, 0, 0}},
		{1, 1, []byte{0}},
		{1, 4, []byte{0, 0, 0, 0}},
		{15, 1, []byte{0}},
		{16, 2, []byte{0, 0}},
		{1<<64 - 1, 2, []byte{0, 0}}, // no wrap to offset 0
		{0, 0, []byte{}},
	} {
		b := make([]byte, tc.n)
		for i := range b {
			b[i] = 0xAA
		}
		reg.ReadMMIO(tc.offset, b)
		assert.Equal(t, tc.want, b, "read %d at %#x", tc.n, tc.offset)
	}

	for _, tc := range []struct {
		offset uint64
		data   []byte
		want   []uint8
	}{
		{0, []byte{1}, []uint8{1}},
		{0, []byte{2}, []uint8{2}},
		{0, []byte{3}, []uint8{3}},
		{0, []byte{0}, nil},
		{0, []byte{4}, nil},                 // PVPANIC_SHUTDOWN: not supported
		{0, []byte{0xFF}, []uint8{3}},       // unsupported bits dropped
		{0, []byte{1, 2, 3, 4}, []uint8{1}}, // the register's byte counts
		{0, []byte{0, 1}, nil},
		{1, []byte{1}, nil},
		{8, []byte{3, 3, 3, 3}, nil},
		{1<<64 - 1, []byte{1, 1}, nil},
		{0, nil, nil},
	} {
		reg.WriteMMIO(tc.offset, tc.data)
		assert.Equal(t, tc.want, rec.take(), "write %x at %#x", tc.data, tc.offset)
	}

	// Without a callback, writes are dropped.
	pvpanic.NewRegister(nil).WriteMMIO(0, []byte{1})
}

// TestPort checks the ISA form of the register.
func TestPort(t *testing.T) {
	var rec recorder
	var p devices.PortDevice = pvpanic.NewRegister(rec.event)
	b := []byte{0}
	p.ReadPort(0, b)
	assert.Equal(t, []byte{3}, b)
	p.WritePort(0, []byte{pvpanic.PVPANIC_PANICKED})
	assert.Equal(t, []uint8{1}, rec.take())
	assert.EqualValues(t, 0x505, pvpanic.ISAPort)
}

// TestConcurrentWrites checks that the register is safe from several
// vCPUs at once (run with -race).
func TestConcurrentWrites(t *testing.T) {
	var rec recorder
	reg := pvpanic.NewRegister(rec.event)
	var wg sync.WaitGroup
	for range 4 {
		wg.Go(func() {
			b := []byte{0}
			for range 100 {
				reg.ReadMMIO(0, b)
				reg.WriteMMIO(0, []byte{pvpanic.PVPANIC_PANICKED})
			}
		})
	}
	wg.Wait()
	assert.Len(t, rec.take(), 400)
}
