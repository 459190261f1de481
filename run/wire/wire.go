// Package wire is the protocol between `govmm run`'s host side and the
// init it puts in the guest (package run/guestinit).
//
// The host hands the init its work in a file: a JSON Config at ConfigPath
// in the initramfs it builds. The init reports back over two named ports
// of a virtio-console multiport device (virtio spec §5.3):
//
//   - StdinPort carries the host's standard input to the command. The host
//     closes the port at end of input; guest reads then return 0, which
//     the command sees as end of file.
//   - ControlPort carries a stream of frames from the guest to the host:
//     Hello once the port is open, the command's Stdout and Stderr, Log
//     lines from the init, and Exit, always the last frame.
//
// A port is a byte stream: the device may split one write of the guest
// into several buffers or merge several writes into one, so a frame
// carries its own length. A frame is a 5-byte header — the Type, then the
// payload length as a little-endian uint32 — followed by the payload:
//
//	+------+------------------+-----------------------+
//	| type | length (LE u32)  | payload (length bytes)|
//	+------+------------------+-----------------------+
//
// The guest is not trusted: Reader checks every header before it
// allocates anything, so a hostile guest can neither make the host
// allocate more than MaxPayload per frame nor make it panic.
//
// The guest cannot tell when the host has taken data off the port: Linux's
// virtio_console returns from write(2) as soon as the buffer is in the
// virtqueue (drivers/char/virtio_console.c, port_fops_write). The init
// powers the VM off right after queueing Exit, so the host must drain the
// control port's queue before it acts on the power-off.
package wire

// Names shared by the host, which builds the VM and its initramfs, and the
// guest init, which looks for them.
const (
	// StdinPort is the name of the virtio-console port that carries the
	// host's standard input to the command (host to guest). The guest
	// finds it as /sys/class/virtio-ports/vportNpM/name.
	StdinPort = "govmm.stdin"

	// ControlPort is the name of the virtio-console port that carries
	// frames from the guest to the host.
	ControlPort = "govmm.ctl"

	// ConfigPath is where the host puts the JSON-encoded Config in the
	// initramfs.
	ConfigPath = "/govmm/config.json"

	// InitPath is where the host puts the init binary in the initramfs;
	// the kernel command line names it with rdinit=.
	InitPath = "/govmm-init"

	// ConsolePrefix starts every line the init prints on the kernel
	// console, so the host can tell the init's lines from the kernel's.
	ConsolePrefix = "govmm-init: "

	// StartedLine is the first line the init prints on /dev/console. The
	// host looks for it on the serial console: seeing it without a Hello
	// frame means the init ran but the control port never came up.
	StartedLine = ConsolePrefix + "started"
)
