package gdbstub

// Target is the machine as the debugger sees it: vCPUs with registers,
// guest-virtual memory, and a way to run and stop them. The stub never
// touches KVM itself; govmm's machine implements Target, and the tests
// implement it with a toy CPU.
//
// The stub calls the register and memory methods, Resume and Kill only
// while the guest is stopped: at the start, and after a StopEvent. It
// calls them from one goroutine at a time. Interrupt is the exception: it
// is called while the guest runs.
type Target interface {
	// NumCPUs returns the number of vCPUs. GDB sees each as a thread,
	// with thread id cpu+1 (thread id 0 means "any" in the protocol).
	NumCPUs() int

	// ReadRegisters and WriteRegisters get and set vCPU cpu's registers
	// (KVM_GET_REGS/SREGS/FPU and their SET counterparts).
	ReadRegisters(cpu int, r *Registers) error
	WriteRegisters(cpu int, r *Registers) error

	// ReadMemory and WriteMemory access guest-virtual memory as vCPU cpu
	// sees it: each page is translated through that vCPU's page tables
	// (KVM_TRANSLATE), and the guest-physical bytes are accessed directly,
	// so writes ignore page protections (that is how an int3 gets into
	// read-only kernel text). They return how many bytes were done before
	// the first address that does not translate to RAM, and an error if
	// that is fewer than len(p).
	ReadMemory(cpu int, addr uint64, p []byte) (int, error)
	WriteMemory(cpu int, addr uint64, p []byte) (int, error)

	// Resume lets the guest run under the debug setup d (apply it with
	// KVM_SET_GUEST_DEBUG on every vCPU, see Debug.GuestDebug): every
	// vCPU, or only d.Step for a single step. It returns at once. The
	// target then sends exactly one StopEvent on Stops when the guest
	// stops: a breakpoint of d (Debug.Classify), the step, Interrupt, or
	// the end of the machine. When any vCPU stops, all of them stop (GDB's
	// "all-stop" mode). An idle d (Debug.Idle) is how the stub lets go:
	// the guest runs as if no debugger had ever come, until Interrupt.
	Resume(d Debug) error

	// Interrupt stops a running guest (GDB's Ctrl-C), which the target
	// reports as StopInterrupted unless another stop got there first. It
	// may be called from any goroutine and does nothing if the guest is
	// already stopped or stopping.
	Interrupt()

	// Stops delivers the StopEvents. The channel needs a buffer of one:
	// there is at most one stop per Resume, and the stub is not always
	// there to receive it at once (between two GDB connections).
	Stops() <-chan StopEvent

	// Kill ends the machine (GDB's kill command, the k packet).
	Kill()
}
