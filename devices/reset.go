package devices

import "sync"

// The reset control register of Intel's PC chipsets: RST_CNT at port 0xCF9
// (Intel 82371AB PIIX4 datasheet, "RC - Reset Control Register"; Intel ICH
// datasheets, "RST_CNT - Reset Control Register").
const (
	// ResetControlPort is the port of the reset control register. It lies
	// inside the PCI configuration mechanism's 0xCF8-0xCFF window; a PCI
	// host bridge that owns the window forwards byte accesses to 0xCF9
	// here at offset 0.
	ResetControlPort uint16 = 0xCF9
	// ResetControlPorts is the size of the register.
	ResetControlPorts uint16 = 1
	// ResetControlValue is what a guest writes for a full reset: SYS_RST
	// | RST_CPU. Linux writes it for reboot=pci (arch/x86/kernel/reboot.c,
	// BOOT_CF9_FORCE); the FADT's RESET_REG (port 0xCF9) and RESET_VALUE
	// should use it (ACPI 6.5 §4.8, "Reset Register").
	ResetControlValue byte = rstCntSysRst | rstCntRstCPU
)

// RST_CNT bits.
const (
	rstCntSysRst  = 0x02 // SYS_RST: 1 = hard reset (assert PCIRST#), 0 = soft (INIT only)
	rstCntRstCPU  = 0x04 // RST_CPU: setting it initiates the reset selected by SYS_RST
	rstCntFullRst = 0x08 // FULL_RST (ICH): also cycle power
	rstCntStored  = rstCntSysRst | rstCntFullRst
)

// ResetControl is the 0xCF9 reset control register. A write with RST_CPU set
// resets the machine (on the chip the reset starts on RST_CPU's 0-to-1
// transition; RST_CPU reads back 0 here, so every such write is one). Soft,
// hard and full resets are all a Reset event: a virtual machine restarts
// the same way for each.
type ResetControl struct {
	mu    sync.Mutex
	power PowerHandler
	value byte
}

// NewResetControl returns the register; power receives Reset (nil: the
// request is ignored). Register it at ResetControlPort.
func NewResetControl(power PowerHandler) *ResetControl {
	return &ResetControl{power: power}
}

// ReadPort reads SYS_RST and FULL_RST as last written.
func (r *ResetControl) ReadPort(offset uint16, data []byte) {
	r.mu.Lock()
	defer r.mu.Unlock()
	readBytes(ResetControlPorts, offset, data, func(uint16) byte { return r.value })
}

// WritePort stores the reset type and resets the machine if RST_CPU is set.
func (r *ResetControl) WritePort(offset uint16, data []byte) {
	r.mu.Lock()
	var reset bool
	writeBytes(ResetControlPorts, offset, data, func(_ uint16, v byte) {
		r.value = v & rstCntStored
		reset = reset || v&rstCntRstCPU != 0
	})
	r.mu.Unlock()
	if reset && r.power != nil {
		r.power(Reset, "port 0xCF9 reset")
	}
}
