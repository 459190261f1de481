package machine

import (
	"errors"
	"fmt"
	"log/slog"

	"github.com/govmm/govmm/kvm"
)

// Model-specific registers set before the first KVM_RUN (Intel SDM Vol. 4,
// "Model-Specific Registers"; AMD APM Vol. 2 §6.1.1 and Appendix A).
const (
	msrIA32TSC         = 0x10
	msrIA32SysenterCS  = 0x174
	msrIA32SysenterESP = 0x175
	msrIA32SysenterEIP = 0x176
	msrIA32MiscEnable  = 0x1A0
	msrMTRRDefType     = 0x2FF
	msrSTAR            = 0xC000_0081 // SYSCALL target CS/SS
	msrLSTAR           = 0xC000_0082 // SYSCALL target RIP, 64-bit mode
	msrCSTAR           = 0xC000_0083 // SYSCALL target RIP, compatibility mode
	msrSyscallMask     = 0xC000_0084 // RFLAGS bits cleared by SYSCALL
	msrKernelGSBase    = 0xC000_0102 // swapped into GS.base by SWAPGS

	// IA32_MISC_ENABLE bit 0: fast-string operations (REP MOVS/STOS) are
	// enabled, as every firmware leaves it.
	miscEnableFastString = 1 << 0
	// IA32_MTRR_DEF_TYPE: bit 11 enables the MTRRs; bits 7-0 are the
	// default memory type, 6 = write-back (Intel SDM Vol. 3A §12.11.2.1).
	mtrrDefTypeEnable = 1 << 11
	mtrrTypeWriteBack = 6
)

// bootMSRs is the MSR state firmware would leave for the OS: system-call
// MSRs cleared, fast strings on, and MTRRs enabled with write-back as the
// default type, so all RAM is cacheable. Without the MTRR default, a Linux
// guest would map memory uncached and run many times slower.
func bootMSRs() []kvm.MSREntry {
	return []kvm.MSREntry{
		{Index: msrIA32SysenterCS},
		{Index: msrIA32SysenterESP},
		{Index: msrIA32SysenterEIP},
		{Index: msrSTAR},
		{Index: msrCSTAR},
		{Index: msrKernelGSBase},
		{Index: msrSyscallMask},
		{Index: msrLSTAR},
		// Every vCPU writes 0 within a moment of the others: KVM recognises
		// this and keeps the TSCs synchronised (kvm_synchronize_tsc).
		{Index: msrIA32TSC},
		{Index: msrIA32MiscEnable, Data: miscEnableFastString},
		{Index: msrMTRRDefType, Data: mtrrDefTypeEnable | mtrrTypeWriteBack},
	}
}

// setBootMSRs writes bootMSRs to v. KVM_SET_MSRS stops at the first MSR it
// refuses; such an MSR (a host without MTRRs, say) is skipped with a debug
// message rather than failing the boot, because the guest copes without it.
func setBootMSRs(v *kvm.VCPU, log *slog.Logger) error {
	pending := bootMSRs()
	for len(pending) > 0 {
		err := v.SetMSRs(pending)
		if err == nil {
			return nil
		}
		var refused *kvm.RefusedMSRError
		if !errors.As(err, &refused) {
			return err
		}
		log.Debug("MSR refused by KVM, skipped", "msr", fmt.Sprintf("%#x", refused.Index))
		pending = append(pending[:0:0], pending[refused.Count+1:]...)
	}
	return nil
}
