package kvm

import "fmt"

// ExitReason is kvm_run.exit_reason: why KVM_RUN returned to userspace.
type ExitReason uint32

// Exit reasons (KVM_EXIT_* in <linux/kvm.h>).
const (
	ExitUnknown       ExitReason = 0
	ExitException     ExitReason = 1
	ExitIO            ExitReason = 2
	ExitHypercall     ExitReason = 3
	ExitDebug         ExitReason = 4
	ExitHLT           ExitReason = 5
	ExitMMIO          ExitReason = 6
	ExitIRQWindowOpen ExitReason = 7
	ExitShutdown      ExitReason = 8
	ExitFailEntry     ExitReason = 9
	ExitIntr          ExitReason = 10
	ExitSetTPR        ExitReason = 11
	ExitTPRAccess     ExitReason = 12
	ExitNMI           ExitReason = 16
	ExitInternalError ExitReason = 17
	ExitSystemEvent   ExitReason = 24
	ExitIOAPICEOI     ExitReason = 26
	ExitX86RDMSR      ExitReason = 29
	ExitX86WRMSR      ExitReason = 30
	ExitDirtyRingFull ExitReason = 31
	ExitNotify        ExitReason = 37
)

var exitNames = map[ExitReason]string{
	ExitUnknown:       "UNKNOWN",
	ExitException:     "EXCEPTION",
	ExitIO:            "IO",
	ExitHypercall:     "HYPERCALL",
	ExitDebug:         "DEBUG",
	ExitHLT:           "HLT",
	ExitMMIO:          "MMIO",
	ExitIRQWindowOpen: "IRQ_WINDOW_OPEN",
	ExitShutdown:      "SHUTDOWN",
	ExitFailEntry:     "FAIL_ENTRY",
	ExitIntr:          "INTR",
	ExitSetTPR:        "SET_TPR",
	ExitTPRAccess:     "TPR_ACCESS",
	ExitNMI:           "NMI",
	ExitInternalError: "INTERNAL_ERROR",
	ExitSystemEvent:   "SYSTEM_EVENT",
	ExitIOAPICEOI:     "IOAPIC_EOI",
	ExitX86RDMSR:      "X86_RDMSR",
	ExitX86WRMSR:      "X86_WRMSR",
	ExitDirtyRingFull: "DIRTY_RING_FULL",
	ExitNotify:        "NOTIFY",
}

// String returns the name as in KVM_EXIT_<name>.
func (r ExitReason) String() string {
	if s, ok := exitNames[r]; ok {
		return "KVM_EXIT_" + s
	}
	return fmt.Sprintf("KVM_EXIT_%d", uint32(r))
}

// ParseExitReason returns the exit reason whose name, without the
// KVM_EXIT_ prefix, is name (e.g. "IO", "MMIO", "HLT").
func ParseExitReason(name string) (ExitReason, bool) {
	for r, n := range exitNames {
		if n == name {
			return r, true
		}
	}
	return 0, false
}
