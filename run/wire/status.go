package wire

import (
	"encoding/json"
	"fmt"
	"unicode"
)

// Shell conventions for exit statuses (POSIX Shell Command Language,
// §2.8.2 "Exit Status for Commands"), which the init follows so that
// `govmm run` exits the way the command would under a shell.
const (
	// StatusNotFound is the status when the command is not found.
	StatusNotFound = 127

	// StatusNotExecutable is the status when the command is found but
	// cannot be executed.
	StatusNotExecutable = 126

	// StatusSignalBase is added to the number of the signal that killed
	// the command.
	StatusSignalBase = 128

	// StatusInitError is the status that goes with an InitError, so a
	// host that looks only at Status still sees a failure. 125 is what
	// wrappers such as env(1), chroot(1), nohup(1) and timeout(1) of GNU
	// coreutils return when they fail themselves, before the command
	// runs.
	StatusInitError = 125
)

// MaxStatus is the largest exit status: wait(2) gives the low 8 bits of
// the status passed to exit(2).
const MaxStatus = 255

// MaxSignal is the largest Linux signal number (_NSIG is 64 on x86,
// include/uapi/asm-generic/signal.h; signals are numbered from 1).
const MaxSignal = 64

// MaxKernelRelease is the longest uname release string:
// __NEW_UTS_LEN in include/uapi/linux/utsname.h.
const MaxKernelRelease = 64

// MaxInitError bounds ExitStatus.InitError as Writer.Exit sends it, so
// the Exit frame always fits in MaxPayload; a longer message is cut.
const MaxInitError = 4 << 10

// HelloInfo is the payload of the Hello frame.
type HelloInfo struct {
	// Kernel is the guest kernel's release, as uname -r prints it.
	Kernel string `json:"kernel"`
}

// ExitStatus is the payload of the Exit frame: how the command ended, or
// why the init could not run it.
type ExitStatus struct {
	// Status is the command's exit status, or StatusSignalBase+Signal
	// when a signal killed it, StatusNotFound or StatusNotExecutable
	// when it could not be started, and StatusInitError with InitError.
	Status int `json:"status"`

	// Signal is the number of the signal that killed the command, or 0.
	Signal int `json:"signal,omitempty"`

	// InitError says what failed in the init itself, before or while it
	// started the command (a mount, a missing working directory); ""
	// when the init did its part.
	InitError string `json:"init_error,omitempty"`
}

// DecodeExit decodes and checks an Exit payload from the guest: Status
// in 0..MaxStatus, Signal in 0..MaxSignal, and Status equal to
// StatusSignalBase+Signal when Signal is set.
func DecodeExit(payload []byte) (ExitStatus, error) {
	var s ExitStatus
	if err := json.Unmarshal(payload, &s); err != nil {
		return ExitStatus{}, fmt.Errorf("wire: Exit payload: %w", err)
	}
	if s.Status < 0 || s.Status > MaxStatus {
		return ExitStatus{}, fmt.Errorf("wire: Exit payload: status %d is not in 0..%d", s.Status, MaxStatus)
	}
	if s.Signal < 0 || s.Signal > MaxSignal {
		return ExitStatus{}, fmt.Errorf("wire: Exit payload: signal %d is not in 0..%d", s.Signal, MaxSignal)
	}
	if s.Signal != 0 && s.Status != StatusSignalBase+s.Signal {
		return ExitStatus{}, fmt.Errorf("wire: Exit payload: status %d does not match signal %d (want %d)",
			s.Status, s.Signal, StatusSignalBase+s.Signal)
	}
	return s, nil
}

// DecodeHello decodes and checks a Hello payload from the guest: the
// kernel release must be 1 to MaxKernelRelease bytes of printable text,
// since the host prints it. (json.Unmarshal has already replaced any
// invalid UTF-8 with U+FFFD.)
func DecodeHello(payload []byte) (HelloInfo, error) {
	var h HelloInfo
	if err := json.Unmarshal(payload, &h); err != nil {
		return HelloInfo{}, fmt.Errorf("wire: Hello payload: %w", err)
	}
	if h.Kernel == "" || len(h.Kernel) > MaxKernelRelease {
		return HelloInfo{}, fmt.Errorf("wire: Hello payload: kernel release of %d bytes (want 1 to %d)", len(h.Kernel), MaxKernelRelease)
	}
	for _, r := range h.Kernel {
		if !unicode.IsPrint(r) {
			return HelloInfo{}, fmt.Errorf("wire: Hello payload: kernel release %q has an unprintable character %q", h.Kernel, r)
		}
	}
	return h, nil
}

// jsonPayload encodes v, which must fit in one frame.
func jsonPayload(v any) ([]byte, error) {
	p, err := json.Marshal(v)
	if err != nil {
		return nil, fmt.Errorf("wire: encoding %T: %w", v, err)
	}
	return p, nil
}
