package machine

import (
	"encoding/binary"
	"fmt"
	"io"
	"math/bits"
	"strings"
	"syscall"
	"time"
)

// InspectSignal is the signal on which govmm's commands call InspectVCPUs,
// printing on stderr, and keep running. SIGUSR1 is taken: it is
// kvm.KickSignal.
const InspectSignal = syscall.SIGUSR2

// InspectTimeout is how long the commands give each vCPU to answer.
const InspectTimeout = 2 * time.Second

// Local APIC interrupt registers, each 256 bits wide, stored as eight 32-bit
// registers 16 bytes apart (Intel SDM Vol. 3A §11.8.4, Figure 11-20, and
// Table 11-1): ISR holds the vectors being serviced (delivered, no EOI
// yet), IRR those accepted and waiting for delivery. TPR blocks vectors
// whose priority class is at or below its own.
const (
	lapicTPR        = 0x080
	lapicISR        = 0x100
	lapicIRR        = 0x200
	lapicVectorRegs = 8
	lapicRegStride  = 0x10
)

// rflagsIF is RFLAGS bit 9, the interrupt enable flag: maskable interrupts
// are taken only while it is set (Intel SDM Vol. 1 §3.4.3.3).
const rflagsIF = 1 << 9

// InspectVCPUs writes what each vCPU is doing to w: its multiprocessing
// state (running, halted, waiting for SIPI), whether it takes interrupts,
// its registers, and its local APIC's pending and in-service vectors. It
// is for a guest that seems stuck: a CPU spinning shows where, one halted
// with vectors waiting in IRR points at interrupt delivery, one halted
// with nothing pending at a device that never interrupted.
//
// The state of a vCPU can only be read by its own thread while it is out
// of KVM_RUN, so each vCPU is kicked and answers from its goroutine. One
// that does not answer within timeout (stuck inside the kernel) is named
// as such. Safe to call from any goroutine while the machine runs.
func (m *Machine) InspectVCPUs(w io.Writer, timeout time.Duration) {
	m.inspectMu.Lock()
	defer m.inspectMu.Unlock()
	gen := m.inspectGen.Add(1)
	for _, v := range m.vcpus {
		v.Kick()
	}
	got := make([]string, len(m.vcpus))
	left := len(m.vcpus)
	deadline := time.After(timeout)
	for left > 0 {
		select {
		case r := <-m.inspected:
			if r.gen == gen && got[r.id] == "" {
				got[r.id] = r.text
				left--
			}
		case <-deadline:
			left = 0
		}
	}
	for id, text := range got {
		if text == "" {
			text = fmt.Sprintf("vCPU %d: no answer within %v (still inside KVM_RUN)\n", id, timeout)
		}
		io.WriteString(w, text)
	}
}

// inspectReport is one vCPU's answer to InspectVCPUs request gen.
type inspectReport struct {
	gen  uint64
	id   int
	text string
}

// answerInspect runs on the vCPU's goroutine after a kick: if an inspection
// it has not answered is under way, it describes itself.
func (v *vcpu) answerInspect() {
	gen := v.m.inspectGen.Load()
	if gen == v.inspectedGen {
		return
	}
	v.inspectedGen = gen
	select {
	case v.m.inspected <- inspectReport{gen: gen, id: v.ID(), text: v.describe()}:
	default: // nobody is waiting any more
	}
}

// describe formats the vCPU's state for InspectVCPUs.
func (v *vcpu) describe() string {
	var b strings.Builder
	state := "state unavailable"
	if st, err := v.GetMPState(); err == nil {
		state = st.String()
	}
	// RFLAGS.IF as the vCPU stands now. (kvm_run.if_flag says the same
	// as of the last exit, but the registers are what the dump shows.)
	interrupts := "disabled"
	if r, err := v.GetRegs(); err == nil && r.RFLAGS&rflagsIF != 0 {
		interrupts = "enabled"
	}
	fmt.Fprintf(&b, "vCPU %d: %s, interrupts %s\n", v.ID(), state, interrupts)
	b.WriteString(v.dump())
	b.WriteByte('\n')
	if l, err := v.GetLAPIC(); err == nil {
		fmt.Fprintf(&b, "  local APIC: TPR=%02x in service %v, requested %v\n",
			binary.LittleEndian.Uint32(l.Regs[lapicTPR:]),
			lapicVectors(l.Regs[:], lapicISR), lapicVectors(l.Regs[:], lapicIRR))
	}
	return b.String()
}

// lapicVectors lists the vectors set in the 256-bit APIC register at off.
func lapicVectors(regs []byte, off int) []int {
	var vs []int
	for i := 0; i < lapicVectorRegs; i++ {
		word := binary.LittleEndian.Uint32(regs[off+i*lapicRegStride:])
		for word != 0 {
			bit := bits.TrailingZeros32(word)
			vs = append(vs, i*32+bit)
			word &^= 1 << bit
		}
	}
	return vs
}
