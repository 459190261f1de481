package main

import (
	"fmt"
	"io"

	"github.com/govmm/govmm/kvm"
	"github.com/spf13/pflag"
)

// probedCaps are the KVM capabilities govmm uses, as printed by probe.
var probedCaps = []struct {
	cap  int
	name string
	why  string
}{
	{kvm.CapIRQChip, "KVM_CAP_IRQCHIP", "in-kernel PIC, IOAPIC and local APICs"},
	{kvm.CapUserMemory, "KVM_CAP_USER_MEMORY", "guest RAM from userspace mappings"},
	{kvm.CapExtCPUID, "KVM_CAP_EXT_CPUID", "KVM_GET_SUPPORTED_CPUID / KVM_SET_CPUID2"},
	{kvm.CapMPState, "KVM_CAP_MP_STATE", "vCPU run states (halt detection)"},
	{kvm.CapImmediateExit, "KVM_CAP_IMMEDIATE_EXIT", "stopping vCPUs without races"},
	{kvm.CapSetTSSAddr, "KVM_CAP_SET_TSS_ADDR", "Intel real-mode support"},
	{kvm.CapSetIdentityMap, "KVM_CAP_SET_IDENTITY_MAP_ADDR", "Intel real-mode support"},
	{kvm.CapIRQRouting, "KVM_CAP_IRQ_ROUTING", "GSI routing (MSI)"},
	{kvm.CapIRQFD, "KVM_CAP_IRQFD", "interrupts from eventfds"},
	{kvm.CapIOEventFD, "KVM_CAP_IOEVENTFD", "doorbells to eventfds"},
	{kvm.CapSignalMSI, "KVM_CAP_SIGNAL_MSI", "message-signalled interrupts"},
	{kvm.CapTSCDeadlineTimer, "KVM_CAP_TSC_DEADLINE_TIMER", "TSC-deadline local APIC timer"},
	{kvm.CapSetGuestDebug, "KVM_CAP_SET_GUEST_DEBUG", "breakpoints and single-step"},
	{kvm.CapNestedState, "KVM_CAP_NESTED_STATE", "nested virtualization state"},
}

func cmdProbe(args []string, stdout io.Writer) error {
	fs := pflag.NewFlagSet("probe", pflag.ContinueOnError)
	fs.SetOutput(stdout)
	fs.Usage = func() {
		fmt.Fprintln(stdout, "Usage: govmm probe\n\nSays whether this host's /dev/kvm is hardware-backed (VMX/SVM) or PVM,\nwith the KVM API version and the capabilities govmm uses.")
	}
	if err := fs.Parse(args); err != nil {
		return usageError{err}
	}
	backend := kvm.DetectBackend("/sys", "/proc")
	sys, err := kvm.Open()
	if err != nil {
		return err
	}
	defer sys.Close()
	fmt.Fprintf(stdout, "KVM backend:    %s\n", backend)
	fmt.Fprintf(stdout, "KVM API:        version %d\n", kvm.APIVersion)
	fmt.Fprintf(stdout, "vCPUs per VM:   %d recommended, %d maximum\n",
		sys.CheckExtension(kvm.CapNrVCPUs), sys.CheckExtension(kvm.CapMaxVCPUs))
	fmt.Fprintf(stdout, "memory slots:   %d\n", sys.CheckExtension(kvm.CapNrMemslots))
	fmt.Fprintln(stdout, "capabilities:")
	for _, c := range probedCaps {
		mark := "no "
		if sys.CheckExtension(c.cap) != 0 {
			mark = "yes"
		}
		fmt.Fprintf(stdout, "  %s  %-31s %s\n", mark, c.name, c.why)
	}
	switch {
	case backend.HardwareAssisted():
		fmt.Fprintln(stdout, "verdict:        hardware-assisted KVM: govmm boots Linux guests directly")
	case backend == kvm.BackendPVM:
		fmt.Fprintln(stdout, "verdict:        software KVM (PVM): tiny guests run, but stock Linux kernels do not boot at usable speed;")
		fmt.Fprintln(stdout, "                run govmm inside the nested test bed: scripts/nested-run.sh -- bin/govmm boot ...")
	default:
		fmt.Fprintln(stdout, "verdict:        unknown KVM backend: /dev/kvm works, but no VMX/SVM flag or known module was found")
	}
	return nil
}
