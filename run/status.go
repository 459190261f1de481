package run

import "github.com/govmm/govmm/run/wire"

// Exit statuses of `govmm run`. A run that got as far as the command ends
// with the command's own status (0-255; 128+N when a signal N killed it, as
// shells report it). The other ways a run can end have statuses of their
// own, chosen like timeout(1)'s and the shells': near the top of the range
// that commands rarely use.
const (
	// StatusNoInit: the guest never reached govmm's init. The kernel
	// failed to boot (a triple fault, a reset, a power off, a halt) or
	// did not get to the init within the boot timeout.
	StatusNoInit = 121
	// StatusPanic: the guest kernel panicked, as reported by the pvpanic
	// device or printed on the console (an early panic, before the init
	// loaded pvpanic, shows only there).
	StatusPanic = 122
	// StatusTimeout: the command ran past --timeout; the VM was killed.
	StatusTimeout = 124
	// StatusError: govmm or the run's setup failed: a bad flag, a missing
	// kernel or share, modules that do not match the kernel, no usable
	// /dev/kvm, or the guest init could not set up the guest (a mount
	// failed, the control port never appeared).
	StatusError = 125
	// StatusNotExecutable and StatusNotFound are the shells' statuses for
	// a command that exists but cannot be run, and for one that does not
	// exist in the guest.
	StatusNotExecutable = wire.StatusNotExecutable
	StatusNotFound      = wire.StatusNotFound
)
