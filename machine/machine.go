// Package machine assembles a virtual PC on KVM: guest RAM and memory slots,
// the in-kernel interrupt controllers, vCPUs with their CPUID and MSRs, the
// userspace platform devices, firmware tables and the loaded kernel, and runs
// the vCPU exit loops until the guest powers off, resets or fails.
package machine

import (
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"sync"
	"sync/atomic"
	"time"

	"github.com/govmm/govmm/bootloader"
	"github.com/govmm/govmm/devices"
	"github.com/govmm/govmm/kvm"
	"github.com/govmm/govmm/machine/memory"
)

// Limits on the machine's shape.
const (
	MinCPUs = 1
	// MaxCPUs is the most vCPUs govmm supports: the MADT and MP table use
	// 8-bit xAPIC IDs, and 64 is what is tested.
	MaxCPUs = 64
)

// DefaultCmdline is the kernel command line when none is given: the
// console on COM1, reboot through the keyboard controller (which govmm
// turns into a clean exit), and an immediate reboot on panic instead of a
// hang.
const DefaultCmdline = "console=ttyS0 reboot=k panic=-1"

// haltCheckInterval is how often the halt watchdog asks every vCPU whether
// it can still run. Each check costs one exit per vCPU.
const haltCheckInterval = 500 * time.Millisecond

// Config describes the machine to build.
type Config struct {
	Kernel  []byte // a bzImage, or a flat real-mode image with RealMode
	Initrd  []byte // optional initial ramdisk
	Cmdline string
	MemSize uint64 // bytes of guest RAM
	CPUs    int
	// RealMode makes Kernel a flat real-mode image, loaded and entered at
	// 0000:7C00 like a boot sector, instead of a bzImage. No firmware
	// tables are written. For tiny hand-made guests.
	RealMode bool

	// Console receives the guest's serial output (COM1).
	Console io.Writer
	// Stdin, if set, is the guest's serial input. A terminal is put into
	// raw mode, with Ctrl-A X to quit.
	Stdin *os.File

	// KVMPath is the KVM device; empty means /dev/kvm.
	KVMPath string
	// Log receives diagnostics; nil means slog.Default().
	Log *slog.Logger

	// Disks are virtio-blk disks, /dev/vda first. The command line is
	// not changed here; see WithRootDisk.
	Disks []Disk
	// NICs are virtio-net cards, each on a tap device.
	NICs []NIC
	// VirtioTransport is how the virtio devices reach the guest: on the
	// PCI bus (the default) or behind virtio-mmio windows announced on
	// the kernel command line.
	VirtioTransport VirtioTransport
	// Devices are further virtio devices (consoles, 9p shares, ...),
	// placed after the disks and network cards in the order given. The
	// caller keeps them: the machine resets them when it stops, and the
	// caller closes them after Machine.Close.
	Devices []VirtioDevice
	// OnPanic, if set, adds a pvpanic-pci device (devices/pvpanic): a
	// guest kernel whose pvpanic driver is loaded reports its panic
	// through it, and OnPanic is called with the reported events, on the
	// vCPU goroutine of the panicking CPU.
	OnPanic func(events uint8)

	// Debug starts the machine stopped, for a debugger: Debugger returns
	// the gdbstub.Target, and the vCPUs run when the debugger says so.
	Debug bool

	// Stats records exits by port and by MMIO address as well as by
	// reason (see Machine.Stats).
	Stats bool
	// Trace, if set, receives one line per exit that TraceFilter
	// selects (see the tracer type for the format).
	Trace       io.Writer
	TraceFilter TraceFilter
}

// Reason says how a run ended.
type Reason int

// How a run can end.
const (
	PowerOff Reason = iota // the guest powered off (ACPI S5)
	Reset                  // the guest rebooted: i8042, port 0xCF9, triple fault
	Halted                 // every vCPU stopped for good (halted with interrupts off)
	Stopped                // the host stopped it: a signal or Ctrl-A X
	Failed                 // an error: see Result.Err
)

func (r Reason) String() string {
	switch r {
	case PowerOff:
		return "power off"
	case Reset:
		return "reset"
	case Halted:
		return "halted"
	case Stopped:
		return "stopped"
	case Failed:
		return "failed"
	}
	return "unknown"
}

// Result is how and why a run ended.
type Result struct {
	Reason Reason
	Detail string // e.g. "ACPI S5", "i8042 reset"
	Err    error  // set when Reason is Failed
}

// Machine is a configured virtual machine.
type Machine struct {
	cfg   Config
	log   *slog.Logger
	sys   *kvm.System
	vm    *kvm.VM
	mem   *memory.Guest
	cpuid []kvm.CPUIDEntry // vCPU 0's CPUID table
	vcpus []*vcpu

	ports *devices.PortBus
	mmio  mmioBus
	// coalesced is the ring of coalesced port writes (nil if KVM has
	// none); coalescedMu serialises its draining across vCPUs.
	coalesced   *kvm.CoalescedRing
	coalescedMu sync.Mutex
	plat        *platform
	pci         *pciHost
	virtio      []*virtioFunction
	tracer      *tracer       // nil unless Config.Trace
	ranFor      time.Duration // Run's duration, for Stats

	debugger *debugger // nil without Config.Debug

	vcpuWG       sync.WaitGroup
	stopping     atomic.Bool
	haltCheckGen atomic.Uint64
	haltRound    atomic.Pointer[haltRound] // the haltedTogether round under way, or nil

	// InspectVCPUs: one inspection at a time, numbered by inspectGen;
	// the vCPUs answer on inspected, which has room for all of them.
	inspectMu  sync.Mutex
	inspectGen atomic.Uint64
	inspected  chan inspectReport

	endOnce sync.Once
	done    chan struct{}
	result  Result
}

// ValidateShape checks the machine's size: the number of vCPUs and the
// amount of RAM.
func ValidateShape(memSize uint64, cpus int) error {
	if cpus < MinCPUs || cpus > MaxCPUs {
		return fmt.Errorf("%d CPUs requested: govmm supports %d to %d", cpus, MinCPUs, MaxCPUs)
	}
	if memSize < memory.MinRAM {
		return fmt.Errorf("%d MiB of memory requested: at least %d MiB is needed", memSize>>20, memory.MinRAM>>20)
	}
	if memSize > memory.MaxRAM {
		return fmt.Errorf("%d GiB of memory requested: at most %d GiB is supported", memSize>>30, memory.MaxRAM>>30)
	}
	if memSize%memory.PageSize != 0 {
		return fmt.Errorf("memory size %d is not a multiple of %d bytes", memSize, memory.PageSize)
	}
	return nil
}

// ValidateConfig checks a configuration before anything is allocated.
func ValidateConfig(cfg *Config) error {
	if err := ValidateShape(cfg.MemSize, cfg.CPUs); err != nil {
		return err
	}
	if err := ValidateTraceFilter(cfg.TraceFilter); err != nil {
		return err
	}
	if len(cfg.Kernel) == 0 {
		return errors.New("no kernel image")
	}
	if cfg.RealMode {
		if len(cfg.Kernel) > MaxRealModeImage {
			return fmt.Errorf("real-mode image of %d bytes is larger than the %d bytes below the EBDA", len(cfg.Kernel), MaxRealModeImage)
		}
		return nil
	}
	// Check the kernel before any KVM resource exists, so that a wrong
	// file fails fast with the bootloader's explanation.
	_, err := bootloader.ParseSetupHeader(cfg.Kernel)
	return err
}

// New builds the machine: nothing runs until Run.
func New(cfg Config) (_ *Machine, err error) {
	if err := ValidateConfig(&cfg); err != nil {
		return nil, err
	}
	if cfg.Cmdline == "" {
		cfg.Cmdline = DefaultCmdline
	}
	if cfg.Console == nil {
		cfg.Console = io.Discard
	}
	m := &Machine{cfg: cfg, log: cfg.Log, done: make(chan struct{}), inspected: make(chan inspectReport, cfg.CPUs)}
	if m.log == nil {
		m.log = slog.Default()
	}
	// Every return below with an error releases what was set up so far
	// (the results are unnamed so that "return nil, err" cannot hide m).
	defer func() {
		if err != nil {
			m.Close()
		}
	}()
	path := cfg.KVMPath
	if path == "" {
		path = kvm.DevicePath
	}
	if m.sys, err = kvm.OpenPath(path); err != nil {
		return nil, err
	}
	if maxV := m.sys.CheckExtension(kvm.CapMaxVCPUs); maxV > 0 && cfg.CPUs > maxV {
		return nil, fmt.Errorf("%d CPUs requested but this host's KVM allows at most %d per VM", cfg.CPUs, maxV)
	}
	for _, c := range []struct {
		cap  int
		name string
	}{
		{kvm.CapIRQChip, "KVM_CAP_IRQCHIP"},
		{kvm.CapUserMemory, "KVM_CAP_USER_MEMORY"},
		{kvm.CapExtCPUID, "KVM_CAP_EXT_CPUID"},
		{kvm.CapMPState, "KVM_CAP_MP_STATE"},
		{kvm.CapImmediateExit, "KVM_CAP_IMMEDIATE_EXIT"},
	} {
		if m.sys.CheckExtension(c.cap) == 0 {
			return nil, fmt.Errorf("this host's KVM lacks %s, which govmm needs", c.name)
		}
	}
	if m.vm, err = m.sys.CreateVM(); err != nil {
		return nil, err
	}
	if err := m.setupVM(); err != nil {
		return nil, err
	}
	if err := m.setupMemory(); err != nil {
		return nil, err
	}
	if err := m.setupVCPUs(); err != nil {
		return nil, err
	}
	if cfg.Debug {
		m.debugger = newDebugger(m)
	}
	if err := m.setupPlatform(); err != nil {
		return nil, err
	}
	if err := m.setupVirtio(); err != nil {
		return nil, err
	}
	if err := m.loadKernel(); err != nil {
		return nil, err
	}
	return m, nil
}

// setupVM creates the VM-wide pieces that must exist before any vCPU.
func (m *Machine) setupVM() error {
	// The identity map page and TSS are only used by Intel VMX to run real
	// mode on CPUs without "unrestricted guest"; KVM wants them set before
	// vCPUs are created. Both sit in the MMIO hole, away from RAM.
	if m.sys.CheckExtension(kvm.CapSetIdentityMap) != 0 {
		if err := m.vm.SetIdentityMapAddr(memory.KVMIdentityMapAddr); err != nil {
			return err
		}
	}
	if m.sys.CheckExtension(kvm.CapSetTSSAddr) != 0 {
		if err := m.vm.SetTSSAddr(memory.KVMTSSAddr); err != nil {
			return err
		}
	}
	// The 8259 PICs, the IOAPIC and the local APICs live in the kernel:
	// interrupt delivery, EOIs, IPIs, INIT/SIPI and HLT never leave it.
	return m.vm.CreateIRQChip()
}

// setupMemory maps guest RAM and hands it to KVM as memory slots.
func (m *Machine) setupMemory() error {
	var err error
	if m.mem, err = memory.New(memory.RAMLayout(m.cfg.MemSize)); err != nil {
		return err
	}
	for i, r := range m.mem.Regions {
		if err := m.vm.SetUserMemoryRegion(uint32(i), r.Start, r.Host, 0); err != nil {
			return fmt.Errorf("memory slot %d at %#x (%d MiB): %w", i, r.Start, r.Size>>20, err)
		}
	}
	return nil
}

// setupVCPUs creates the vCPUs with their CPUID, MSRs and APIC wiring. The
// registers of vCPU 0 are set by loadKernel; the others wait, in KVM, for
// the INIT and SIPI IPIs with which Linux starts them.
func (m *Machine) setupVCPUs() error {
	supported, err := m.sys.SupportedCPUID()
	if err != nil {
		return err
	}
	tscDeadline := m.sys.CheckExtension(kvm.CapTSCDeadlineTimer) != 0
	for i := 0; i < m.cfg.CPUs; i++ {
		kv, err := m.vm.CreateVCPU(i)
		if err != nil {
			return fmt.Errorf("vCPU %d: %w", i, err)
		}
		v := &vcpu{VCPU: kv, m: m, rec: newExitRecorder(m.cfg.Stats)}
		m.vcpus = append(m.vcpus, v)
		cpuid := vcpuCPUID(supported, i, m.cfg.CPUs, tscDeadline)
		if i == 0 {
			m.cpuid = cpuid
		}
		if err := v.SetCPUID2(cpuid); err != nil {
			return fmt.Errorf("vCPU %d: %w", i, err)
		}
		if err := setBootMSRs(v.VCPU, m.log); err != nil {
			return fmt.Errorf("vCPU %d: %w", i, err)
		}
		if err := v.setLINT(i == 0); err != nil {
			return fmt.Errorf("vCPU %d: %w", i, err)
		}
	}
	return nil
}

// Run starts the vCPUs and blocks until the machine ends. It returns how
// it ended; the console is flushed by then.
func (m *Machine) Run() Result {
	start := time.Now()
	if m.cfg.Trace != nil {
		m.tracer = newTracer(m, m.cfg.Trace, m.cfg.TraceFilter)
		m.tracer.start = start
	}
	for _, v := range m.vcpus {
		m.vcpuWG.Add(1)
		go v.run()
	}
	watchdogDone := make(chan struct{})
	go m.haltWatchdog(watchdogDone)
	<-m.done
	close(watchdogDone)
	m.stopVCPUs()
	m.stopVirtio()
	m.plat.stop()
	m.ranFor = time.Since(start)
	if m.tracer != nil {
		if err := m.tracer.flush(); err != nil {
			m.log.Warn("the exit trace is incomplete", "err", err)
		}
	}
	return m.result
}

// Stop ends the run from outside, e.g. on SIGINT; Run returns Stopped.
func (m *Machine) Stop(why string) {
	m.finish(Result{Reason: Stopped, Detail: why})
}

// finish records how the run ended (the first call wins) and wakes Run.
func (m *Machine) finish(r Result) {
	m.endOnce.Do(func() {
		m.result = r
		m.stopping.Store(true)
		close(m.done)
		if m.debugger != nil {
			m.debugger.exited(r)
		}
	})
}

// fail ends the run with an error.
func (m *Machine) fail(err error) {
	m.finish(Result{Reason: Failed, Detail: err.Error(), Err: err})
}

// stopVCPUs kicks every vCPU out of KVM_RUN and waits for their goroutines.
// A kick can race with a vCPU that is just entering KVM_RUN; immediate_exit
// covers that, and the kicks repeat until all have left.
func (m *Machine) stopVCPUs() {
	exited := make(chan struct{})
	go func() { m.vcpuWG.Wait(); close(exited) }()
	for {
		for _, v := range m.vcpus {
			v.Kick()
		}
		select {
		case <-exited:
			return
		case <-time.After(10 * time.Millisecond):
		}
	}
}

// haltWatchdog notices a guest that has stopped every CPU for good (see
// vcpu.stoppedForGood) and ends the run as Halted. Each round kicks all
// vCPUs so they report, then judges the reports at the next tick; when
// they all say stopped, haltedTogether confirms it with every vCPU stopped
// at once.
func (m *Machine) haltWatchdog(done <-chan struct{}) {
	t := time.NewTicker(haltCheckInterval)
	defer t.Stop()
	var asked uint64
	for {
		select {
		case <-done:
			return
		case <-t.C:
		}
		// The reports of the last round say every vCPU has stopped;
		// haltedTogether makes sure they all have at once.
		if asked != 0 && m.allHalted(asked) {
			if halted, _ := m.haltedTogether(done); halted {
				m.finish(Result{Reason: Halted, Detail: "all vCPUs halted with interrupts disabled"})
				return
			}
		}
		asked = m.haltCheckGen.Add(1)
		for _, v := range m.vcpus {
			v.Kick()
		}
	}
}

func (m *Machine) allHalted(gen uint64) bool {
	for _, v := range m.vcpus {
		if v.checkGen.Load() != gen || !v.halted.Load() {
			return false
		}
	}
	return true
}

// Close releases every resource. The Machine must not be running.
func (m *Machine) Close() error {
	if m.plat != nil {
		m.plat.close()
	}
	if m.pci != nil {
		m.pci.close()
	}
	m.closeVirtio()
	for _, v := range m.vcpus {
		v.Close()
	}
	if m.vm != nil {
		m.vm.Close()
	}
	if m.mem != nil {
		m.mem.Close()
	}
	if m.sys != nil {
		m.sys.Close()
	}
	return nil
}
