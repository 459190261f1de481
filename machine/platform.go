package machine

import (
	"fmt"
	"log/slog"
	"sync"

	"github.com/govmm/govmm/devices"
	"github.com/govmm/govmm/devices/pci"
	"github.com/govmm/govmm/kvm"
)

// ISA interrupt lines of the legacy devices (IBM PC/AT assignments). With
// KVM's default routing GSI n drives PIC input n and IOAPIC pin n, and the
// MP table and MADT describe ISA IRQs as identity-mapped (no override for
// IRQ 0), so each device raises the GSI of its IRQ number.
const (
	irqPIT      = devices.PITIRQ
	irqKeyboard = devices.KeyboardIRQ
	irqCOM1     = devices.COM1IRQ
	irqRTC      = devices.RTCIRQ
	irqSCI      = devices.SCIIRQ
	irqMouse    = devices.MouseIRQ
)

// gsiLine is a devices.IRQLine that drives a GSI with KVM_IRQ_LINE.
type gsiLine struct {
	vm  *kvm.VM
	gsi uint32
	log *slog.Logger
}

func (l *gsiLine) SetLevel(high bool) {
	if err := l.vm.IRQLine(l.gsi, high); err != nil {
		l.log.Warn("cannot set interrupt line", "gsi", l.gsi, "err", err)
	}
}

// gsiLine returns the interrupt line that drives gsi.
func (m *Machine) gsiLine(gsi uint32) devices.IRQLine {
	return &gsiLine{vm: m.vm, gsi: gsi, log: m.log}
}

// platform is the set of legacy devices emulated in userspace.
type platform struct {
	out     *devices.BufferedWriter // guest console output, batched
	console *devices.Console        // stdin → COM1, nil without stdin
	uart    *devices.UART
	pit     *devices.PIT
	rtc     *devices.RTC
	pm      *devices.PM

	stopOnce sync.Once
}

// setupPlatform creates the userspace devices and puts them on the port
// bus. Everything not listed here that a PC has (PICs, IOAPIC, local APICs)
// lives in KVM.
func (m *Machine) setupPlatform() error {
	m.ports = devices.NewPortBus()
	m.mmio.log = m.log
	p := &platform{}
	m.plat = p
	line := m.gsiLine
	power := func(ev devices.PowerEvent, reason string) {
		switch ev {
		case devices.PowerOff:
			m.finish(Result{Reason: PowerOff, Detail: reason})
		default:
			m.finish(Result{Reason: Reset, Detail: reason})
		}
	}

	p.out = devices.NewBufferedWriter(m.cfg.Console, devices.DefaultFlushDelay)
	p.uart = devices.NewUART(p.out, line(irqCOM1))
	p.pit = devices.NewPIT(line(irqPIT), devices.SystemClock)
	p.rtc = devices.NewRTC(line(irqRTC), devices.SystemClock)
	p.pm = devices.NewPM(devices.PMConfig{SCI: line(irqSCI), Power: power, S5SleepType: devices.DefaultS5SleepType})
	kbc := devices.NewI8042(line(irqKeyboard), line(irqMouse), power)

	for _, r := range []struct {
		name       string
		base, size uint16
		dev        devices.PortDevice
	}{
		{"i8254 PIT", devices.PITBase, devices.PITPorts, p.pit},
		{"port B (PIT gate, speaker)", devices.PortBPort, devices.PortBPorts, p.pit.PortB()},
		{"i8042 data", devices.I8042DataPort, 1, kbc.DataPort()},
		{"i8042 command/status", devices.I8042CommandPort, 1, kbc.CommandPort()},
		{"CMOS RTC", devices.RTCBase, devices.RTCPorts, p.rtc},
		// Linux writes the POST code port as an I/O delay
		// (arch/x86/include/asm/io.h: slow_down_io), so it is claimed and
		// silently ignored to keep the logs clean.
		{"POST code", devices.POSTPort, 1, devices.Ignore{}},
		{"COM1 16550A UART", devices.COM1Base, devices.UARTPorts, p.uart},
		{"ACPI PM1a event", devices.DefaultPM1aEventPort, devices.PM1EventBlockLen, p.pm.EventBlock()},
		{"ACPI PM1a control", devices.DefaultPM1aControlPort, devices.PM1ControlBlockLen, p.pm.ControlBlock()},
		{"ACPI PM timer", devices.DefaultPMTimerPort, devices.PMTimerBlockLen, p.pm.Timer()},
	} {
		if err := m.ports.Register(r.name, r.base, r.size, r.dev); err != nil {
			return fmt.Errorf("platform: %w", err)
		}
	}

	// The reset control register shares its port range with the PCI
	// configuration mechanism, which forwards to it.
	if err := m.setupPCI(devices.NewResetControl(power)); err != nil {
		return err
	}
	if err := m.setupCoalescedIO(); err != nil {
		return err
	}

	if m.cfg.Stdin != nil {
		c, err := devices.NewConsole(devices.ConsoleConfig{
			In:     m.cfg.Stdin,
			Sink:   p.uart,
			Out:    p.out,
			OnQuit: func() { m.Stop("Ctrl-A X") },
		})
		if err != nil {
			return fmt.Errorf("console: %w", err)
		}
		p.console = c
	}
	return nil
}

// stop quiesces the devices after the vCPUs have stopped and flushes the
// console, so every byte the guest wrote reaches stdout before govmm exits.
func (p *platform) stop() {
	p.stopOnce.Do(func() {
		p.pit.Close()
		p.rtc.Close()
		if p.console != nil {
			p.console.Close()
		}
	})
	p.out.Flush()
}

// close releases what stop has not.
func (p *platform) close() {
	p.stop()
	p.out.Close()
}

// setupCoalescedIO lets guest writes to CONFIG_ADDRESS go to KVM's
// coalesced ring instead of exiting. CONFIG_ADDRESS (PCI Local Bus
// Specification 3.0, §3.2.2.3.2) is the 32-bit register at 0xCF8 whose
// value selects the bus, device, function and register that the next
// access to CONFIG_DATA at 0xCFC reaches: a write there has no effect until
// that access, which exits and finds the write replayed first.
// Every configuration-space access is an address write plus a data access,
// so this halves the exits of PCI scans (a stock Debian kernel scans
// thousands of slots at boot). The zone also covers the byte-wide reset
// control register at 0xCF9: a reset request written there takes effect at
// the vCPU's next exit, at most one halt-watchdog period later.
func (m *Machine) setupCoalescedIO() error {
	off := m.sys.CheckExtension(kvm.CapCoalescedMMIO)
	if off == 0 || m.sys.CheckExtension(kvm.CapCoalescedPIO) == 0 {
		return nil // works without, one exit per write
	}
	ring := m.vcpus[0].CoalescedRing(off)
	if ring == nil {
		return nil
	}
	if err := m.vm.RegisterCoalescedPIO(pci.ConfigAddressPort, uint32(pci.ConfigAddressPorts)); err != nil {
		return err
	}
	m.coalesced = ring
	return nil
}

// drainCoalesced replays the coalesced writes on their buses, oldest first.
func (m *Machine) drainCoalesced() {
	if m.coalesced == nil {
		return
	}
	m.coalescedMu.Lock()
	defer m.coalescedMu.Unlock()
	m.coalesced.Drain(func(w kvm.CoalescedWrite) {
		if w.PIO {
			m.ports.Write(uint16(w.Addr), w.Data)
		} else {
			m.mmio.Write(w.Addr, w.Data)
		}
	})
}
