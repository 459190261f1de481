// Package console is the virtio console device (virtio 1.2 §5.3) in its
// multiport form (VIRTIO_CONSOLE_F_MULTIPORT, §5.3.6.2): a set of named,
// bidirectional byte pipes between host and guest, which QEMU calls
// virtio-serial. Linux's drivers/char/virtio_console.c makes each port a
// character device, /dev/vportNpM (device N, port M), and puts the port's
// name in /sys/class/virtio-ports/vportNpM/name; udev, where it runs, adds
// the link /dev/virtio-ports/NAME. A guest program opens the port and
// reads and writes it like a pipe: no terminal line discipline lies in
// between, so binary data passes unchanged.
//
// # Queues
//
// Every port has a pair of virtqueues: a receiveq, into which the driver
// posts empty buffers for host-to-guest data, and a transmitq, through
// which it hands the device buffers of guest-to-host data (§5.3.2). A
// second pair, the control queues, carries struct virtio_console_control
// messages that add ports, name them and open and close them:
//
//	0 receiveq(port0)  1 transmitq(port0)
//	2 control receiveq 3 control transmitq
//	4 receiveq(port1)  5 transmitq(port1)  ...
//
// # The handshake
//
// Linux's driver and QEMU's device (hw/char/virtio-serial-bus.c) agree on
// this order, which the spec outlines in §5.3.5. QEMU sends PORT_NAME
// before PORT_OPEN; this device sends PORT_OPEN first, so that the name,
// the one message a guest program can see, appears only once the host end
// is open (a read of a port whose host end is closed returns end of file):
//
//	driver                                 device
//	posts control receiveq buffers
//	DEVICE_READY(1)                  →
//	                                 ←     DEVICE_ADD(id), for every port
//	add_port: creates /dev/vportNpM,
//	posts receiveq buffers
//	PORT_READY(id, 1)                →
//	                                 ←     CONSOLE_PORT(id, 1), for a console port
//	                                 ←     PORT_OPEN(id, 1): the host end is open
//	                                 ←     PORT_NAME(id) + name
//	the name appears in sysfs;
//	a program opens the port:
//	PORT_OPEN(id, 1)                 →
//	... data on the port's queues ...
//	the program closes it:
//	PORT_OPEN(id, 0)                 →
//
// Linux sends each driver-to-device message by adding one 8-byte buffer to
// the control transmitq and then spinning, with a spinlock held, until the
// device returns it (virtio_console.c, __send_control_msg). So the device
// must never make that queue wait: it records what each message asks for
// and answers later, when the driver has control receiveq buffers for the
// answers. The answers wait as a few bits per port, so a driver that floods
// the device with messages cannot make it queue more.
//
// # What "open" means
//
// Each end of a port is open or closed, and Linux acts on the other end's
// state:
//
//   - The guest's read of a port whose host end is closed returns 0 (end
//     of file) once the data already received is read (port_fops_read);
//     its writes block until the host end opens (will_write_block). So
//     the device opens the host end of every port right after PORT_READY,
//     and closes it when the port's In reaches end of file, for ports
//     without Out only: closing a port with Out would stall the guest's
//     writes to it.
//   - Data that arrives on a port the guest has not opened is thrown away
//     (in_intr calls discard_port_data). So the device reads from In only
//     while the guest has the port open and has posted a buffer: input
//     the guest would discard is never taken from In.
//
// # Data and backpressure
//
// Guest-to-host data goes to the port's Out on a writer goroutine that
// lives as long as the Device. The transmitq's worker copies each buffer
// out of guest RAM, hands the copy to the writer and returns the buffer to
// the driver only once Out has taken it. A slow Out therefore fills the
// transmitq, and the guest's write blocks, as with a pipe. A Reset does
// not wait for Out: the worker stops waiting, and the writer finishes the
// copy it holds.
//
// Host-to-guest data comes from the port's In on a reader goroutine, which
// reads only when the receiveq worker asks it to, for the size of the
// buffer the driver posted, and keeps what it read across a Reset, to
// deliver it to the next activation.
//
// Port.GuestConnected reports the guest's opens and closes on the writer
// goroutine, in order with the data: when it reports a close, everything
// the guest wrote before closing has been written to Out.
//
// # Linux
//
// Debian's kernels build the driver as a module, virtio_console.ko
// (CONFIG_VIRTIO_CONSOLE=m), which needs virtio.ko and virtio_ring.ko.
package console
