package gdbstub

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
)

// PacketSize is the longest packet data the stub accepts, announced to
// GDB in qSupported (RSP "General Query Packets", "PacketSize=bytes"). GDB
// sizes its memory reads and writes to fit; a longer packet gets E07.
const PacketSize = 0x4000

// Limits on what one packet may ask for, so that no request allocates
// more than about one packet's worth.
const (
	// maxMemRead is the most an m packet reads: the reply, two hex digits
	// per byte, then fits in PacketSize.
	maxMemRead = PacketSize / 2
	// maxXferChunk is the most one qXfer reply carries: escaping can
	// double binary data.
	maxXferChunk = PacketSize/2 - 1
)

// Error replies are "E" and two hex digits whose meaning the protocol
// leaves to the stub (RSP "Standard Replies"). govmm uses Linux errno
// values, as gdbserver often does.
const (
	errnoSRCH  = 0x03 // ESRCH: no such thread
	errnoIO    = 0x05 // EIO: the target failed
	errno2BIG  = 0x07 // E2BIG: packet longer than PacketSize
	errnoFAULT = 0x0e // EFAULT: memory not accessible
	errnoINVAL = 0x16 // EINVAL: malformed packet or bad argument
	errnoNOSPC = 0x1c // ENOSPC: no free debug register, or too many breakpoints
	// qXfer's "E00": the request was malformed, or the annex is unknown
	// (RSP "General Query Packets", "qXfer:object:read:annex:offset,length").
	errXferAnnex = 0x00
)

// GDB's signal numbers for stop replies (gdb/signals.def, RSP "Stop
// Reply Packets"). A VM has no signals; these are only how GDB words why
// it stopped: SIGTRAP for breakpoints and steps, SIGINT for Ctrl-C.
const (
	sigINT  = 2
	sigTRAP = 5
)

// eflagsRF is RFLAGS.RF, the resume flag: with it set, the next
// instruction ignores instruction breakpoints, so that a vCPU stopped by
// one can go on (SDM Vol. 3B §18.3.1.1 "Instruction-Breakpoint Exception
// Condition").
const eflagsRF = 1 << 16

// stub is the debugger's view of the target. It outlives connections:
// whether the guest runs, whether it has ended, the last stop, and the
// breakpoints in force.
type stub struct {
	t       Target
	log     *slog.Logger
	running bool      // resumed, and its StopEvent has not arrived yet
	exited  bool      // the machine ended: there is nothing left to debug
	last    StopEvent // the last stop, for '?'
	bp      breakpoints
	hwFirst bool // Options.HardwareBreakpointsFirst
}

func newStub(t Target, log *slog.Logger) *stub {
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	return &stub{t: t, log: log, last: StopEvent{Reason: stopAttached}}
}

// session is one GDB connection.
type session struct {
	*stub
	w        io.Writer
	noAck    bool   // QStartNoAckMode was agreed
	lastSent []byte // the last packet sent, to send again on '-'
	gcpu     int    // Hg: the vCPU of register and memory packets
	ccpu     int    // Hc: the vCPU that s steps; -1 for "the current one"
	// interrupted says Target.Interrupt was called in this run.
	interrupted bool
	end         bool  // D or k: close the connection
	err         error // the first write error: the connection is gone
}

func newSession(st *stub, w io.Writer) *session {
	return &session{stub: st, w: w, ccpu: -1}
}

func (s *session) write(b []byte) {
	if s.err == nil {
		_, s.err = s.w.Write(b)
	}
}

// logPacket logs a packet at Debug level, converting it only if that
// level is on.
func (s *stub) logPacket(msg string, data []byte) {
	if s.log.Enabled(context.Background(), slog.LevelDebug) {
		s.log.Debug(msg, "packet", string(data))
	}
}

// send frames and sends one packet.
func (s *session) send(data []byte) {
	s.logPacket("gdb <-", data)
	s.lastSent = appendPacket(s.lastSent[:0], data)
	s.write(s.lastSent)
}

func (s *session) sendString(data string) { s.send([]byte(data)) }

// sendError sends E and an error number.
func (s *session) sendError(errno byte) { s.send(appendHexByte([]byte{'E'}, errno)) }

// sendErr sends the E reply for err, or the empty reply for
// errUnsupported.
func (s *session) sendErr(err error) {
	switch {
	case errors.Is(err, errUnsupported):
		s.sendString("")
	case errors.Is(err, errFault):
		s.sendError(errnoFAULT)
	case errors.Is(err, errNoSpace):
		s.sendError(errnoNOSPC)
	case errors.Is(err, errInvalid):
		s.sendError(errnoINVAL)
	default:
		s.sendError(errnoIO)
	}
}

func (s *session) ack(c byte) {
	if !s.noAck {
		s.write([]byte{c})
	}
}

// handleInput acts on one thing the decoder found.
func (s *session) handleInput(in input) {
	switch in.kind {
	case inPacket:
		s.ack(ackByte)
		if s.running {
			// In all-stop mode GDB sends nothing but Ctrl-C while the
			// guest runs (RSP "Interrupts"); the stub cannot answer
			// anything else before the stop reply, so it drops it.
			s.logPacket("gdb -> (dropped: the guest is running)", in.data)
			return
		}
		s.logPacket("gdb ->", in.data)
		s.dispatch(in.data)
	case inBadChecksum:
		s.ack(nackByte)
	case inTooLong:
		s.ack(ackByte)
		if !s.running {
			s.sendError(errno2BIG)
		}
	case inInterrupt:
		if s.running && !s.interrupted {
			s.interrupted = true
			s.t.Interrupt()
		}
	case inNack:
		if !s.noAck && len(s.lastSent) > 0 {
			s.write(s.lastSent)
		}
	}
}

// onStop records a stop and sends its stop reply.
func (s *session) onStop(ev StopEvent) {
	s.record(ev)
	s.send(s.stopReply())
}

// record notes a stop without telling GDB.
func (s *stub) record(ev StopEvent) {
	s.running = false
	if ev.CPU < 0 || ev.CPU >= s.t.NumCPUs() {
		ev.CPU = 0
	}
	if ev.Reason == StopExited {
		s.exited = true
	}
	s.last = ev
}

func (s *session) record(ev StopEvent) {
	s.stub.record(ev)
	s.interrupted = false
	if !s.exited {
		// GDB makes the thread that stopped its current one.
		s.gcpu = ev.CPU
	}
}

// stopReply formats the last stop (RSP "Stop Reply Packets"):
// "T05thread:1;swbreak:;" and the like, or "W00" once the machine ended.
func (s *stub) stopReply() []byte {
	ev := s.last
	if s.exited {
		return appendHexByte([]byte{'W'}, ev.Status)
	}
	sig := byte(sigTRAP)
	if ev.Reason == StopInterrupted {
		sig = sigINT
	}
	b := appendHexByte([]byte{'T'}, sig)
	b = append(b, "thread:"...)
	b = appendHexNum(b, uint64(ev.CPU)+1)
	b = append(b, ';')
	switch ev.Reason {
	case StopSWBreakpoint:
		b = append(b, "swbreak:;"...)
	case StopHWBreakpoint:
		b = append(b, "hwbreak:;"...)
	case StopWatchpoint:
		if ev.Watch == BreakAccess {
			b = append(b, "awatch:"...)
		} else {
			b = append(b, "watch:"...)
		}
		b = appendHexNum(b, ev.Addr)
		b = append(b, ';')
	}
	return b
}

// attach brings a running guest to a stop for a new connection: GDB
// expects a stopped target when it connects. It waits on stops, and gives
// up if done closes first.
func (s *session) attach(stops <-chan StopEvent, done <-chan struct{}) bool {
	if s.running {
		s.t.Interrupt()
		select {
		case ev := <-stops:
			s.record(ev)
		case <-done:
			return false
		}
	}
	if !s.exited {
		s.last.Reason = stopAttached
	}
	return true
}

// release is what happens when GDB goes away, by D or by closing the
// connection: the breakpoints come out and the guest runs on by itself.
// A guest that is running is stopped first, because int3s can only be
// removed from a stopped guest.
func (s *session) release(stops <-chan StopEvent, done <-chan struct{}) {
	if s.running {
		if !s.interrupted {
			s.t.Interrupt()
		}
		select {
		case ev := <-stops:
			s.record(ev)
		case <-done:
			return
		}
	}
	if s.exited {
		return
	}
	s.removeAll()
	if err := s.t.Resume(Debug{Step: NoStep}); err != nil {
		s.log.Warn("gdb: could not resume the guest", "err", err)
		return
	}
	s.running = true
}

// resume lets the guest run: every vCPU, or only step when it is not
// NoStep. The stop reply comes later, from onStop.
func (s *session) resume(step int) {
	if s.exited {
		s.send(s.stopReply())
		return
	}
	s.suppressRepeat(step)
	if err := s.t.Resume(s.bp.debug(step)); err != nil {
		s.log.Warn("gdb: resume failed", "err", err)
		s.sendError(errnoIO)
		return
	}
	s.running = true
	s.interrupted = false
}

// suppressRepeat sets RFLAGS.RF on a vCPU that stopped at an instruction
// breakpoint still in a debug register: instruction breakpoints are
// faults, taken before the instruction runs, so without RF it would stop
// again at once. GDB itself takes its breakpoints out before it steps off
// one, so this only matters for clients that do not.
func (s *session) suppressRepeat(step int) {
	ev := s.last
	if ev.Reason != StopHWBreakpoint && ev.Reason != StopSWBreakpoint {
		return
	}
	if step != NoStep && step != ev.CPU {
		return
	}
	for _, b := range s.bp.hw {
		if b.Active() && b.isExec() && b.Addr == ev.Addr {
			var r Registers
			if s.t.ReadRegisters(ev.CPU, &r) == nil && r.RIP == ev.Addr {
				r.EFLAGS |= eflagsRF
				s.t.WriteRegisters(ev.CPU, &r)
			}
			return
		}
	}
}

// dispatch answers one packet (RSP "Packets"). Unknown packets get the
// empty reply, which tells GDB "not supported".
func (s *session) dispatch(pkt []byte) {
	if len(pkt) == 0 {
		s.sendString("")
		return
	}
	args := pkt[1:]
	switch pkt[0] {
	case '?':
		s.send(s.stopReply())
	case 'g':
		s.readRegisters()
	case 'G':
		s.writeRegisters(args)
	case 'p':
		s.readRegister(args)
	case 'P':
		s.writeRegister(args)
	case 'm':
		s.readMemory(args)
	case 'M':
		s.writeMemory(args, false)
	case 'X':
		s.writeMemory(args, true)
	case 'c', 's':
		s.legacyResume(pkt[0] == 's', args, false)
	case 'C', 'S':
		s.legacyResume(pkt[0] == 'S', args, true)
	case 'v':
		s.vPacket(pkt)
	case 'Z', 'z':
		s.breakpoint(pkt[0] == 'Z', args)
	case 'H':
		s.setThread(args)
	case 'T':
		if _, err := s.parseThread(args); err != nil {
			s.sendError(errnoSRCH)
		} else {
			s.sendString("OK")
		}
	case 'q':
		s.query(pkt)
	case 'Q':
		if string(pkt) == "QStartNoAckMode" {
			// This OK is still acknowledged; from the next packet on
			// neither side sends + or - (RSP "Packet Acknowledgment").
			s.sendString("OK")
			s.noAck = true
			return
		}
		s.sendString("")
	case 'D':
		// "D" or "D;pid": detach. The guest runs on without the
		// debugger. It is stopped, so release does not wait.
		s.release(nil, nil)
		s.sendString("OK")
		s.end = true
	case 'k':
		// Kill has no reply (RSP "Packets", "k").
		s.kill()
	default:
		s.sendString("")
	}
}

func (s *session) kill() {
	if !s.exited {
		s.t.Kill()
	}
	s.exited = true
	s.end = true
}

// targetErr logs a failure of the target and answers EIO.
func (s *session) targetErr(what string, err error) {
	s.log.Warn("gdb: "+what+" failed", "err", err)
	s.sendError(errnoIO)
}

func (s *session) readRegisters() {
	var r Registers
	if err := s.t.ReadRegisters(s.gcpu, &r); err != nil {
		s.targetErr("reading registers", err)
		return
	}
	s.send(appendHex(nil, r.marshal()))
}

func (s *session) writeRegisters(args []byte) {
	raw, err := decodeHex(args)
	var r Registers
	if err == nil {
		err = r.unmarshal(raw)
	}
	if err != nil {
		s.sendError(errnoINVAL)
		return
	}
	if err := s.t.WriteRegisters(s.gcpu, &r); err != nil {
		s.targetErr("writing registers", err)
		return
	}
	s.sendString("OK")
}

// regNumber parses a register number of p or P.
func regNumber(b []byte) (int, bool) {
	n, err := parseHex(b)
	if err != nil || n >= numRegs {
		return 0, false
	}
	return int(n), true
}

func (s *session) readRegister(args []byte) {
	n, ok := regNumber(args)
	if !ok {
		s.sendError(errnoINVAL)
		return
	}
	var r Registers
	if err := s.t.ReadRegisters(s.gcpu, &r); err != nil {
		s.targetErr("reading registers", err)
		return
	}
	s.send(appendHex(nil, r.appendReg(nil, n)))
}

func (s *session) writeRegister(args []byte) {
	num, val, ok := bytes.Cut(args, []byte{'='})
	n, okn := regNumber(num)
	raw, err := decodeHex(val)
	if !ok || !okn || err != nil || len(raw) != regs[n].size {
		s.sendError(errnoINVAL)
		return
	}
	var r Registers
	if err := s.t.ReadRegisters(s.gcpu, &r); err != nil {
		s.targetErr("reading registers", err)
		return
	}
	r.setReg(n, raw)
	if err := s.t.WriteRegisters(s.gcpu, &r); err != nil {
		s.targetErr("writing registers", err)
		return
	}
	s.sendString("OK")
}

// parseAddrLen parses "addr,length".
func parseAddrLen(b []byte) (addr, length uint64, ok bool) {
	a, l, found := bytes.Cut(b, []byte{','})
	if !found {
		return 0, 0, false
	}
	addr, err1 := parseHex(a)
	length, err2 := parseHex(l)
	return addr, length, err1 == nil && err2 == nil
}

// clampLen limits a request at addr to max bytes and to the top of the
// address space.
func clampLen(addr, length uint64, max int) int {
	length = min(length, uint64(max))
	if room := ^addr; length > 0 && length-1 > room {
		length = room + 1
	}
	return int(length)
}

func (s *session) readMemory(args []byte) {
	addr, length, ok := parseAddrLen(args)
	if !ok {
		s.sendError(errnoINVAL)
		return
	}
	// A shorter reply than asked for is allowed (RSP "Packets", "m addr,length").
	buf := make([]byte, clampLen(addr, length, maxMemRead))
	n, _ := s.t.ReadMemory(s.gcpu, addr, buf)
	n = max(0, min(n, len(buf)))
	if n == 0 && len(buf) > 0 {
		s.sendError(errnoFAULT)
		return
	}
	s.bp.hideInt3s(addr, buf[:n])
	s.send(appendHex(nil, buf[:n]))
}

// writeMemory handles "M addr,length:hex" and "X addr,length:binary".
func (s *session) writeMemory(args []byte, binary bool) {
	head, body, found := bytes.Cut(args, []byte{':'})
	addr, length, ok := parseAddrLen(head)
	if !found || !ok {
		s.sendError(errnoINVAL)
		return
	}
	var data []byte
	var err error
	if binary {
		data, err = unescape(body)
	} else {
		data, err = decodeHex(body)
	}
	if err != nil || uint64(len(data)) != length || clampLen(addr, length, len(data)) != len(data) {
		s.sendError(errnoINVAL)
		return
	}
	if len(data) == 0 {
		// GDB probes for X support with a zero-length write.
		s.sendString("OK")
		return
	}
	n, _ := s.t.WriteMemory(s.gcpu, addr, s.bp.keepInt3s(addr, data))
	n = max(0, min(n, len(data)))
	s.bp.saveUnderInt3s(addr, data[:n])
	if n < len(data) {
		s.sendError(errnoFAULT)
		return
	}
	s.sendString("OK")
}

// legacyResume handles "c [addr]", "s [addr]" and, with a signal number
// first, "C sig[;addr]" and "S sig[;addr]". A VM has no signals to deliver,
// so the signal is checked and ignored.
func (s *session) legacyResume(step bool, args []byte, withSignal bool) {
	if withSignal {
		sig, rest, _ := bytes.Cut(args, []byte{';'})
		if _, err := parseHex(sig); err != nil {
			s.sendError(errnoINVAL)
			return
		}
		args = rest
	}
	cpu := s.gcpu
	if s.ccpu >= 0 {
		cpu = s.ccpu
	}
	if len(args) > 0 {
		addr, err := parseHex(args)
		if err != nil {
			s.sendError(errnoINVAL)
			return
		}
		var r Registers
		if err := s.t.ReadRegisters(cpu, &r); err != nil {
			s.targetErr("reading registers", err)
			return
		}
		r.RIP = addr
		if err := s.t.WriteRegisters(cpu, &r); err != nil {
			s.targetErr("writing registers", err)
			return
		}
	}
	if step {
		s.resume(cpu)
	} else {
		s.resume(NoStep)
	}
}

// Thread ids in packets (RSP "Packets", thread-id syntax): a positive hex number,
// -1 for all threads, 0 for any thread. The stub does not announce
// multiprocess+, so the p<pid>.<tid> form never comes.
const (
	threadAll = -1
	threadAny = 0
)

// parseThread parses a thread id naming one vCPU and returns the vCPU.
func (s *session) parseThread(b []byte) (int, error) {
	t, err := s.parseThreadID(b)
	if err != nil {
		return 0, err
	}
	if t == threadAll || t == threadAny {
		return 0, errInvalid
	}
	return t - 1, nil
}

// parseThreadID parses a thread id: threadAll, threadAny or a vCPU's
// thread id, which is checked to exist.
func (s *session) parseThreadID(b []byte) (int, error) {
	if string(b) == "-1" {
		return threadAll, nil
	}
	v, err := parseHex(b)
	if err != nil {
		return 0, errInvalid
	}
	if v > uint64(s.t.NumCPUs()) {
		return 0, errInvalid
	}
	return int(v), nil
}

// setThread handles "Hg thread" (the thread of g, G, m, M, ...) and "Hc
// thread" (the thread of c and s).
func (s *session) setThread(args []byte) {
	if len(args) == 0 {
		s.sendError(errnoINVAL)
		return
	}
	t, err := s.parseThreadID(args[1:])
	if err != nil {
		s.sendError(errnoSRCH)
		return
	}
	switch args[0] {
	case 'g':
		if t != threadAll && t != threadAny {
			s.gcpu = t - 1
		}
	case 'c':
		s.ccpu = t - 1
		if t == threadAll || t == threadAny {
			s.ccpu = -1
		}
	default:
		s.sendError(errnoINVAL)
		return
	}
	s.sendString("OK")
}

// vPacket handles the v packets: vCont? and vCont (RSP "Packets", "vCont[;action
// [:thread-id]]..."), vKill and vMustReplyEmpty (which must get the empty
// reply, like every unknown v packet).
func (s *session) vPacket(pkt []byte) {
	switch {
	case string(pkt) == "vCont?":
		// GDB only uses vCont if c, C, s and S are all there.
		s.sendString("vCont;c;C;s;S")
	case bytes.HasPrefix(pkt, []byte("vCont;")):
		s.vCont(pkt[len("vCont;"):])
	case bytes.HasPrefix(pkt, []byte("vKill")):
		s.sendString("OK")
		s.kill()
	default:
		s.sendString("")
	}
}

// vCont resumes as asked by a list of actions. Each thread takes the
// leftmost action that names it or names no thread. The stub is
// all-stop, and steps one vCPU alone: if some thread is to step, that
// vCPU (the first one) steps and the others stay stopped; otherwise, if
// some thread is to continue, every vCPU continues.
func (s *session) vCont(actions []byte) {
	ncpu := s.t.NumCPUs()
	verb := make([]byte, ncpu) // 0 until a thread has its action
	for _, a := range bytes.Split(actions, []byte{';'}) {
		act, tid, hasTID := bytes.Cut(a, []byte{':'})
		if len(act) == 0 {
			s.sendError(errnoINVAL)
			return
		}
		switch act[0] {
		case 'c', 's':
			if len(act) != 1 {
				s.sendError(errnoINVAL)
				return
			}
		case 'C', 'S':
			if _, err := parseHex(act[1:]); err != nil {
				s.sendError(errnoINVAL)
				return
			}
		default:
			// t (stop) is for non-stop mode, r (range step) was not
			// announced.
			s.sendError(errnoINVAL)
			return
		}
		v := byte('c') // C is c: a signal changes nothing here
		if act[0] == 's' || act[0] == 'S' {
			v = 's'
		}
		t := threadAll
		if hasTID {
			var err error
			if t, err = s.parseThreadID(tid); err != nil {
				s.sendError(errnoSRCH)
				return
			}
			if t == threadAny {
				t = s.gcpu + 1
			}
		}
		for cpu := range verb {
			if verb[cpu] == 0 && (t == threadAll || t == cpu+1) {
				verb[cpu] = v
			}
		}
	}
	step, cont := NoStep, false
	for cpu, v := range verb {
		if v == 's' && step == NoStep {
			step = cpu
		}
		cont = cont || v == 'c'
	}
	switch {
	case step != NoStep:
		s.resume(step)
	case cont:
		s.resume(NoStep)
	default:
		s.sendError(errnoINVAL)
	}
}

// breakpoint handles "Z type,addr,kind" and "z type,addr,kind" (RSP
// "Packets", "insert/remove breakpoint or watchpoint"). Conditions and
// commands after ';' are only sent to stubs that announce them, which
// this one does not.
func (s *session) breakpoint(insert bool, args []byte) {
	args, _, _ = bytes.Cut(args, []byte{';'})
	typ, rest, _ := bytes.Cut(args, []byte{','})
	if len(typ) != 1 || typ[0] < '0' || typ[0] > '4' {
		s.sendString("") // an unknown type must get the empty reply
		return
	}
	addr, kind, ok := parseAddrLen(rest)
	if !ok {
		s.sendError(errnoINVAL)
		return
	}
	t := BreakType(typ[0] - '0')
	var err error
	if insert {
		err = s.insert(t, addr, kind, s.gcpu)
	} else {
		err = s.remove(t, addr, kind)
	}
	if err != nil {
		s.sendErr(err)
		return
	}
	s.sendString("OK")
}

// query handles the q packets (RSP "General Query Packets").
func (s *session) query(pkt []byte) {
	name, args, _ := bytes.Cut(pkt, []byte{':'})
	switch string(name) {
	case "qSupported":
		// GDB's own features in args need no answer: the stub uses
		// none of the optional ones (multiprocess, ...).
		s.sendString(fmt.Sprintf("PacketSize=%x;QStartNoAckMode+;swbreak+;hwbreak+;qXfer:features:read+;vContSupported+", PacketSize))
	case "qXfer":
		s.xfer(args)
	case "qAttached":
		// 1: GDB attached to a running machine, so quitting GDB
		// detaches and leaves the guest running instead of killing it.
		s.sendString("1")
	case "qC":
		s.send(appendHexNum([]byte("QC"), uint64(s.gcpu)+1))
	case "qfThreadInfo":
		b := []byte{'m'}
		for cpu := range s.t.NumCPUs() {
			if cpu > 0 {
				b = append(b, ',')
			}
			b = appendHexNum(b, uint64(cpu)+1)
		}
		s.send(b)
	case "qsThreadInfo":
		s.sendString("l") // the list ended with qfThreadInfo's reply
	default:
		if t, ok := bytes.CutPrefix(pkt, []byte("qThreadExtraInfo,")); ok {
			cpu, err := s.parseThread(t)
			if err != nil {
				s.sendError(errnoSRCH)
				return
			}
			s.send(appendHex(nil, fmt.Appendf(nil, "vCPU %d", cpu)))
			return
		}
		s.sendString("")
	}
}

// xfer handles "qXfer:features:read:annex:offset,length", the only object
// the stub offers: the target description. The reply is "m" and data when
// more follows, "l" and data for the last part, with binary escaping.
func (s *session) xfer(args []byte) {
	parts := bytes.SplitN(args, []byte{':'}, 4)
	if len(parts) != 4 || string(parts[0]) != "features" || string(parts[1]) != "read" {
		s.sendString("")
		return
	}
	if string(parts[2]) != "target.xml" {
		s.sendError(errXferAnnex)
		return
	}
	off, length, ok := parseAddrLen(parts[3])
	if !ok {
		s.sendError(errXferAnnex)
		return
	}
	doc := TargetXML
	if off >= uint64(len(doc)) {
		s.sendString("l")
		return
	}
	n := clampLen(off, length, maxXferChunk)
	end := min(uint64(len(doc)), off+uint64(n))
	mark := byte('m')
	if end == uint64(len(doc)) {
		mark = 'l'
	}
	s.send(appendEscaped([]byte{mark}, []byte(doc[off:end])))
}
