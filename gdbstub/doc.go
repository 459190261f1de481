// Package gdbstub lets GDB debug a govmm guest: `govmm boot --gdb :1234`,
// then `gdb vmlinux -ex 'target remote :1234'`. It speaks the GDB remote
// serial protocol over TCP, and drives the machine through the small
// Target interface, so it knows nothing of KVM and is tested against a toy
// CPU.
//
// The protocol is specified in the GDB manual's appendix "GDB Remote
// Serial Protocol" (https://sourceware.org/gdb/current/onlinedocs/gdb.html/Remote-Protocol.html).
// Its sections are cited by title, as RSP "Packets", because their
// numbers change between GDB releases; so are the Intel SDM's chapters
// after "Protected-Mode Memory Management", which were renumbered in 2023.
//
// # The protocol
//
// GDB sends packets "$data#cs" (cs: the data's byte sum modulo 256 in hex)
// and the stub answers each with one reply packet; both sides acknowledge
// packets with + or -, until they agree to stop (QStartNoAckMode). A lone
// 0x03 byte between packets is Ctrl-C. codec.go frames, checksums, escapes
// and run-length encodes; session.go answers:
//
//	?                     why the guest last stopped (a stop reply)
//	g G p P               read/write all registers, or one (registers.go)
//	m M X                 read/write memory (hex, or escaped binary for X)
//	c s C S vCont         continue, or step one instruction; the reply is
//	                      a stop reply, sent when the guest stops
//	Z z (types 0,1,2,4)   insert/remove breakpoints and watchpoints
//	H T qC qfThreadInfo   threads: one per vCPU, thread id = vCPU + 1
//	qSupported qXfer      features, and the target description (TargetXML)
//	D k                   detach (the guest runs on), kill (the machine ends)
//
// Anything else gets the empty reply, GDB's "not supported"; malformed
// packets get "E" and an errno number. Packets are bounded by PacketSize,
// and no request allocates more than about that much.
//
// # Stopping and running
//
// The stub is all-stop: when one vCPU stops, every vCPU stops, and GDB
// sees the one that stopped as the current thread. A single step runs
// only the vCPU that steps. Target.Resume starts the guest with a Debug
// setup: which vCPU steps, where the int3s are, and the debug registers.
// The machine turns it into KVM_SET_GUEST_DEBUG (Debug.GuestDebug), and
// the KVM_EXIT_DEBUG that follows into a StopEvent (Debug.Classify).
// Breakpoints and how they work are described in breakpoints.go; the x86
// debug registers and KVM's guest-debug interface in debug.go.
//
// # Connections
//
// Listen binds to loopback unless given a host. One debugger is served
// at a time. The guest is stopped when the stub starts; when the debugger
// detaches or its connection drops, its breakpoints are removed and the
// guest runs on; a debugger that connects later stops it again.
package gdbstub
