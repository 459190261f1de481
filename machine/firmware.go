package machine

import (
	"fmt"

	"github.com/govmm/govmm/bootloader"
	"github.com/govmm/govmm/bootloader/acpi"
	"github.com/govmm/govmm/bootloader/mptable"
	"github.com/govmm/govmm/devices"
	"github.com/govmm/govmm/machine/memory"
)

// Where the firmware tables go: the ACPI tables at the bottom of the BIOS
// ROM area, where Linux also scans for the RSDP, and the MP table in its
// upper half, which Linux's mpparse scans for the floating pointer. The
// e820 map marks the whole area reserved.
const (
	acpiTablesAddr  = memory.BIOSROMStart
	acpiTablesLimit = mpTableAddr - acpiTablesAddr
	mpTableAddr     = 0xF0000
	mpTableLimit    = memory.HighMemStart - mpTableAddr
)

// ioapicID is the IOAPIC's APIC ID in the MP table and MADT. Local and I/O
// APIC IDs share one namespace on MP systems (Intel MP spec §4.3.1), and
// the local APICs take 0..n-1, so the IOAPIC gets n.
func (m *Machine) ioapicID() uint8 { return uint8(m.cfg.CPUs) }

// writeFirmwareTables builds the MP table and the ACPI tables into guest
// memory and returns the RSDP's address. A kernel with ACPI uses the ACPI
// tables (Debian's cloud kernel knows nothing else); one without, like the
// minimal test kernel, finds its CPUs and IOAPIC in the MP table.
func (m *Machine) writeFirmwareTables() (rsdp uint64, err error) {
	leaf1, _ := findLeaf(m.cpuid, leafFeatures, 0)
	buses, irqs := m.pci.mpTable()
	mp, err := mptable.Build(mptable.Config{
		ISABusID:     mpISABusID,
		Buses:        buses,
		Interrupts:   irqs,
		NumCPUs:      m.cfg.CPUs,
		CPUSignature: leaf1.EAX,
		CPUFeatures:  leaf1.EDX,
		LAPICAddr:    memory.LAPICAddr,
		IOAPICAddr:   memory.IOAPICAddr,
		IOAPICID:     m.ioapicID(),
		SizeLimit:    mpTableLimit,
	}, mpTableAddr)
	if err != nil {
		return 0, fmt.Errorf("MP table: %w", err)
	}
	if _, err := m.mem.WriteAt(mp, mpTableAddr); err != nil {
		return 0, fmt.Errorf("MP table: %w", err)
	}

	tables, rsdp, err := acpi.Build(acpi.Config{
		NumCPUs:          m.cfg.CPUs,
		LAPICAddr:        memory.LAPICAddr,
		IOAPICAddr:       memory.IOAPICAddr,
		IOAPICID:         m.ioapicID(),
		SCIIRQ:           irqSCI,
		PM1aEventBlock:   devices.DefaultPM1aEventPort,
		PM1aControlBlock: devices.DefaultPM1aControlPort,
		PMTimerBlock:     devices.DefaultPMTimerPort,
		PMTimer32Bit:     devices.PMTimer32Bit,
		ResetPort:        devices.ResetControlPort,
		ResetValue:       devices.ResetControlValue,
		S5SleepType:      devices.DefaultS5SleepType,
		SystemBus:        append(pciDSDT(), m.virtioMMIODSDT()...),
		Tables:           []acpi.Table{mcfgTable()},
		SizeLimit:        acpiTablesLimit,
	}, acpiTablesAddr)
	if err != nil {
		return 0, fmt.Errorf("ACPI tables: %w", err)
	}
	if _, err := m.mem.WriteAt(tables, acpiTablesAddr); err != nil {
		return 0, fmt.Errorf("ACPI tables: %w", err)
	}
	return rsdp, nil
}

// loadKernel writes the firmware tables, loads the kernel, initrd and
// command line, and sets up the bootstrap processor to enter the kernel.
func (m *Machine) loadKernel() error {
	if m.cfg.RealMode {
		return m.loadRealMode(m.cfg.Kernel)
	}
	rsdp, err := m.writeFirmwareTables()
	if err != nil {
		return err
	}
	info, err := bootloader.Load(m.mem, m.cfg.Kernel, m.cfg.Initrd, m.withVirtioMMIO(m.cfg.Cmdline), bootloader.LoadOptions{
		RSDPAddr: rsdp,
		Reserved: []memory.Range{ecamRange()},
	})
	if err != nil {
		return err
	}
	m.log.Debug("kernel loaded", "protocol", info.Header.ProtocolString(),
		"kernel", fmt.Sprintf("%#x+%#x", info.KernelAddr, info.KernelSize),
		"initrd", fmt.Sprintf("%#x+%#x", info.InitrdAddr, info.InitrdSize),
		"entry", fmt.Sprintf("%#x", info.CPU.RIP))
	return setBootState(m.vcpus[0].VCPU, &info.CPU)
}
