package pci

import (
	"sync/atomic"

	"github.com/govmm/govmm/devices"
)

// Configuration mechanism #1 (PCI 3.0 §3.2.2.3.2): two 32-bit I/O
// registers, CONFIG_ADDRESS at 0xCF8 and CONFIG_DATA at 0xCFC. Software
// writes the address of a configuration register to CONFIG_ADDRESS, then
// reads or writes it through CONFIG_DATA.
const (
	ConfigAddressPort  uint16 = 0xCF8
	ConfigAddressPorts uint16 = 4
	ConfigDataPort     uint16 = 0xCFC
	ConfigDataPorts    uint16 = 4
)

// CONFIG_ADDRESS fields (PCI 3.0 §3.2.2.3.2, Figure 3-1).
const (
	configAddressEnable        = 1 << 31 // bit 31: CONFIG_DATA accesses become configuration transactions
	configAddressBusShift      = 16      // bits 23:16: bus number
	configAddressDeviceShift   = 11      // bits 15:11: device number
	configAddressDeviceMask    = 0x1F
	configAddressFunctionShift = 8 // bits 10:8: function number
	configAddressFunctionMask  = 0x7
	configAddressRegisterMask  = 0xFC // bits 7:2: DWORD register number; bits 1:0 read as 0
	// configAddressBits are the bits CONFIG_ADDRESS stores; bits 30:24
	// are reserved, "read-only and must return 0's when read", and bits
	// 1:0 are 0.
	configAddressBits = configAddressEnable | 0xFF<<configAddressBusShift |
		configAddressDeviceMask<<configAddressDeviceShift |
		configAddressFunctionMask<<configAddressFunctionShift | configAddressRegisterMask
	// configAddressWidth is the only access size that reaches
	// CONFIG_ADDRESS: "Anytime a host bridge sees a full DWORD I/O write
	// from the host to CONFIG_ADDRESS, the bridge must latch the data
	// into its CONFIG_ADDRESS register. [...] Any other types of accesses
	// to this address (non-DWORD) have no effect on CONFIG_ADDRESS and
	// are executed as normal I/O transactions".
	configAddressWidth = 4
	// resetControlOffset is the reset control register's port (0xCF9)
	// inside the CONFIG_ADDRESS range. Intel's chipsets decode a
	// byte-wide register there (PIIX4 datasheet, "RC - Reset Control
	// Register"): since CONFIG_ADDRESS answers only DWORD accesses, a
	// byte access to 0xCF9 is an ordinary I/O cycle that reaches it.
	resetControlOffset = devices.ResetControlPort - ConfigAddressPort
)

// Conf1 is configuration mechanism #1: the host bridge's CONFIG_ADDRESS
// and CONFIG_DATA registers. Register AddressPort at ConfigAddressPort and
// DataPort at ConfigDataPort, each with its four ports.
//
// The machine coalesces writes to CONFIG_ADDRESS (KVM_REGISTER_COALESCED_MMIO
// with a PIO zone): they reach AddressPort in order, replayed before the
// next exit, hence before the CONFIG_DATA access that uses them.
type Conf1 struct {
	bus     *Bus
	reset   devices.PortDevice
	address atomic.Uint32 // the latched CONFIG_ADDRESS
}

// NewConf1 returns the mechanism for bus. reset is the reset control
// register that shares the port range (byte accesses to 0xCF9 are
// forwarded to it at offset 0); nil makes them read all ones and drops
// writes.
func NewConf1(bus *Bus, reset devices.PortDevice) *Conf1 {
	return &Conf1{bus: bus, reset: reset}
}

// AddressPort returns the CONFIG_ADDRESS register (ports 0xCF8-0xCFB).
func (c *Conf1) AddressPort() devices.PortDevice { return (*conf1Address)(c) }

// DataPort returns the CONFIG_DATA register (ports 0xCFC-0xCFF).
func (c *Conf1) DataPort() devices.PortDevice { return (*conf1Data)(c) }

// Address returns the latched CONFIG_ADDRESS value.
func (c *Conf1) Address() uint32 { return c.address.Load() }

type conf1Address Conf1

// ReadPort returns CONFIG_ADDRESS for a DWORD read at 0xCF8, forwards a
// byte read at 0xCF9 to the reset control register, and reads anything
// else as an unclaimed port (all ones), as a PIIX does. Linux's probe of
// the mechanism depends on it (arch/x86/pci/direct.c, pci_check_type1).
func (r *conf1Address) ReadPort(offset uint16, data []byte) {
	switch {
	case offset == 0 && len(data) == configAddressWidth:
		le.PutUint32(data, r.address.Load())
	case offset == resetControlOffset && len(data) == 1 && r.reset != nil:
		r.reset.ReadPort(0, data)
	default:
		fillOnes(data)
	}
}

// WritePort latches CONFIG_ADDRESS on a DWORD write at 0xCF8, forwards a
// byte write at 0xCF9 to the reset control register and drops anything
// else.
func (r *conf1Address) WritePort(offset uint16, data []byte) {
	switch {
	case offset == 0 && len(data) == configAddressWidth:
		r.address.Store(le.Uint32(data) & configAddressBits)
	case offset == resetControlOffset && len(data) == 1 && r.reset != nil:
		r.reset.WritePort(0, data)
	}
}

type conf1Data Conf1

// target decodes CONFIG_ADDRESS for an access at offset (0-3) of
// CONFIG_DATA; ok is false if the enable bit is clear, in which case the
// access is an ordinary I/O access that nothing claims.
func (r *conf1Data) target(offset uint16) (a Address, ok bool) {
	v := r.address.Load()
	if v&configAddressEnable == 0 || offset >= ConfigDataPorts {
		return Address{}, false
	}
	return Address{
		Bus:      uint8(v >> configAddressBusShift),
		Device:   uint8(v >> configAddressDeviceShift & configAddressDeviceMask),
		Function: uint8(v >> configAddressFunctionShift & configAddressFunctionMask),
		// The low two address bits come from the port: an access at
		// 0xCFC+n uses byte lanes n and up of the DWORD register.
		Register: uint16(v&configAddressRegisterMask) + offset,
	}, true
}

// lanes returns the part of an access at offset that falls inside
// CONFIG_DATA's four byte lanes.
func lanes(offset uint16, data []byte) []byte {
	return data[:min(len(data), int(ConfigDataPorts-offset))]
}

// ReadPort performs a configuration read through CONFIG_DATA. Bytes past
// 0xCFF, and all bytes when CONFIG_ADDRESS is not enabled, read all ones.
func (r *conf1Data) ReadPort(offset uint16, data []byte) {
	a, ok := r.target(offset)
	if !ok {
		fillOnes(data)
		return
	}
	in := lanes(offset, data)
	fillOnes(data[len(in):])
	r.bus.ReadConfig(a, in)
}

// WritePort performs a configuration write through CONFIG_DATA.
func (r *conf1Data) WritePort(offset uint16, data []byte) {
	if a, ok := r.target(offset); ok {
		r.bus.WriteConfig(a, lanes(offset, data))
	}
}
