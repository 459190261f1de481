package machine

import (
	"time"

	"github.com/govmm/govmm/kvm"
)

// haltRoundTimeout is how long haltedTogether waits for every vCPU to
// leave KVM_RUN. A guest that has stopped for good leaves at once (each
// vCPU is blocked in the kernel and the kick ends its KVM_RUN); one that
// takes longer is busy, and the round is given up.
const haltRoundTimeout = time.Second

// haltRound is one check of haltedTogether: every vCPU stops outside
// KVM_RUN, waits until all have, reads its own state and waits again
// until the round is over.
type haltRound struct {
	vcpus    int
	arrived  chan struct{} // one token per vCPU that has stopped
	allHere  chan struct{} // closed when every vCPU has stopped, or the round is given up
	verdicts chan bool     // each vCPU's stoppedForGood, read while all are stopped
	resume   chan struct{} // closed to let the vCPUs run again
}

func newHaltRound(vcpus int) *haltRound {
	return &haltRound{
		vcpus:    vcpus,
		arrived:  make(chan struct{}, vcpus),
		allHere:  make(chan struct{}),
		verdicts: make(chan bool, vcpus),
		resume:   make(chan struct{}),
	}
}

// haltedTogether confirms what the vCPUs' own reports to the halt
// watchdog suggest: that no vCPU can ever run again. Each report is taken
// at its own moment, and a vCPU halted with interrupts off is not always
// stopped for good. With paravirtual spinlocks (KVM_FEATURE_PV_UNHALT,
// Documentation/virt/kvm/x86/cpuid.rst), Linux halts a CPU that waits for
// a contended lock with interrupts off, and the holder wakes it with the
// KVM_HC_KICK_CPU hypercall when it lets go (arch/x86/kernel/kvm.c:
// kvm_wait, kvm_kick_cpu). In a busy guest two vCPUs can each be found
// waiting like that, one after the other, while the guest runs on.
//
// So every vCPU is stopped outside KVM_RUN at once, and only then does
// each read its state. With no vCPU running, none can wake another; and a
// vCPU that was kicked but has not run since reads as runnable, because
// KVM_GET_MP_STATE counts its pending unhalt (arch/x86/kvm/x86.c,
// kvm_arch_vcpu_ioctl_get_mpstate). complete is false, and halted with
// it, when the round could not be completed: a vCPU did not stop within
// haltRoundTimeout, or the machine is ending (done).
func (m *Machine) haltedTogether(done <-chan struct{}) (halted, complete bool) {
	r := newHaltRound(len(m.vcpus))
	m.haltRound.Store(r)
	defer func() {
		m.haltRound.Store(nil)
		close(r.resume)
	}()
	for _, v := range m.vcpus {
		v.Kick()
	}
	timeout := time.After(haltRoundTimeout)
	for n := 0; n < r.vcpus; n++ {
		select {
		case <-r.arrived:
			continue
		case <-timeout:
		case <-done:
		}
		close(r.allHere) // the vCPUs that came read their state for nothing
		return false, false
	}
	close(r.allHere)
	halted = true
	for n := 0; n < r.vcpus; n++ {
		halted = <-r.verdicts && halted
	}
	return halted, true
}

// joinHaltRound runs on the vCPU's goroutine after a kick: if a round of
// haltedTogether is under way that this vCPU has not joined, it stops
// there until every vCPU has, reads its state, and waits for the round to
// end.
func (v *vcpu) joinHaltRound() {
	r := v.m.haltRound.Load()
	if r == nil || r == v.round {
		return
	}
	v.round = r
	r.arrived <- struct{}{}
	<-r.allHere
	r.verdicts <- v.stoppedForGood()
	<-r.resume
}

// stoppedForGood reports whether this vCPU can never run again by
// itself. An application processor still waiting for INIT/SIPI counts,
// and so does a CPU halted with interrupts off: only an NMI or INIT could
// wake it, and govmm sends neither. That is how Linux leaves every CPU
// after "poweroff" on a machine without ACPI (arch/x86/kernel/reboot.c:
// native_machine_halt → stop_this_cpu). It must run on the vCPU's
// goroutine, outside KVM_RUN.
func (v *vcpu) stoppedForGood() bool {
	st, err := v.GetMPState()
	if err != nil {
		return false
	}
	switch st {
	case kvm.MPStateUninitialized, kvm.MPStateInitReceived:
		return true
	case kvm.MPStateHalted:
		return !v.IFFlag()
	}
	return false
}
