package machine

import (
	"github.com/govmm/govmm/bootloader"
	"github.com/govmm/govmm/kvm"
)

// kvmSegment converts the bootloader's description of a segment register
// to KVM's struct kvm_segment.
func kvmSegment(s bootloader.Segment) kvm.Segment {
	b := func(v bool) uint8 {
		if v {
			return 1
		}
		return 0
	}
	return kvm.Segment{
		Base: s.Base, Limit: s.Limit, Selector: s.Selector, Type: s.Type,
		Present: b(s.Present), DPL: s.DPL, DB: b(s.DB), S: b(s.S), L: b(s.L),
		G: b(s.G), AVL: b(s.AVL), Unusable: b(s.Unusable),
	}
}

// setBootState puts the bootstrap processor into the state the 64-bit boot
// protocol asks for (Documentation/arch/x86/boot.rst, "64-bit Boot
// Protocol"): long mode with paging, flat segments from a GDT, interrupts
// off, RSI pointing at boot_params and RIP at the 64-bit entry point.
func setBootState(v *kvm.VCPU, st *bootloader.CPUState) error {
	sregs, err := v.GetSregs()
	if err != nil {
		return err
	}
	sregs.CS = kvmSegment(st.CS)
	sregs.DS = kvmSegment(st.DS)
	sregs.ES = kvmSegment(st.ES)
	sregs.FS = kvmSegment(st.FS)
	sregs.GS = kvmSegment(st.GS)
	sregs.SS = kvmSegment(st.SS)
	sregs.TR = kvmSegment(st.TR)
	sregs.LDT = kvmSegment(st.LDT)
	sregs.GDT = kvm.DTable{Base: st.GDTBase, Limit: st.GDTLimit}
	sregs.IDT = kvm.DTable{Base: st.IDTBase, Limit: st.IDTLimit}
	sregs.CR0, sregs.CR3, sregs.CR4, sregs.EFER = st.CR0, st.CR3, st.CR4, st.EFER
	if err := v.SetSregs(sregs); err != nil {
		return err
	}
	if err := v.SetFPU(kvm.FPU{FCW: fpuControlWordDefault, MXCSR: mxcsrDefault}); err != nil {
		return err
	}
	return v.SetRegs(kvm.Regs{RIP: st.RIP, RSI: st.RSI, RSP: st.RSP, RBP: st.RSP, RFLAGS: st.RFLAGS})
}
