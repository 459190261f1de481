package gdbstub

import (
	"bytes"
	"fmt"
	"testing"
	"time"
)

// fuzzBudget keeps each toy-CPU run short under fuzzing.
const fuzzBudget = 64

// maxReply bounds any reply the stub sends: a g reply or an m reply of
// maxMemRead bytes, in hex, with room for the framing.
const maxReply = 2*PacketSize + 16

// packetSeeds are streams GDB really sends (see TestGDBBreakStepDetach's
// log), and some it does not.
var packetSeeds = []string{
	"+" + frame("qSupported:multiprocess+;swbreak+;hwbreak+;qRelocInsn+;vContSupported+"),
	frame("vMustReplyEmpty") + frame("QStartNoAckMode") + frame("Hg0") + frame("qXfer:features:read:target.xml:0,1000"),
	frame("?") + frame("qfThreadInfo") + frame("qsThreadInfo") + frame("qAttached") + frame("Hc-1") + frame("g"),
	frame("m1000,4") + frame("M1000,2:cc90") + frame("X1000,3:}]}\x03a") + frame("m1000,ffffffffffffffff"),
	frame("Z0,1234,1") + frame("vCont;c") + frame("z0,1234,1") + frame("vCont;s:1") + frame("D"),
	frame("Z1,1300,1") + frame("c") + frame("c") + frame("Z2,2000,1") + frame("Z4,2001,7") + frame("s") + frame("k"),
	frame("c") + "\x03" + frame("?") + frame("p10") + frame("P10=0000000000000000") + frame("G00"),
	frame("Hg2") + frame("vCont;s:2;c") + frame("T2") + frame("qThreadExtraInfo,2") + frame("qC"),
	frame("Z0,ffffffff81000000,1") + frame("P10=00000081ffffffff") + frame("vCont;c") + frame("vKill;1"),
	frame("M1010,1:f4") + frame("c") + frame("?") + frame("c"),
	"$g#00-+-$?#3f---\x03$$$###",
	"$" + string(bytes.Repeat([]byte{'a'}, PacketSize+1)) + "#00",
}

// FuzzPacket feeds arbitrary bytes, as if from GDB, through the decoder
// and the dispatcher to a toy machine, synchronously: the stub must never
// panic, must keep the Target contract (no access to a running guest, one
// stop per resume), must only send well-formed, bounded packets, and
// must, when the client goes away, leave no breakpoint behind and the
// guest running free.
func FuzzPacket(f *testing.F) {
	for _, s := range packetSeeds {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, stream []byte) {
		ft := newFakeTarget(2)
		ft.budget = fuzzBudget
		st := newStub(ft, nil)
		var out bytes.Buffer
		s := newSession(st, &out)
		d := newDecoder(PacketSize)
		for _, c := range stream {
			in, ok := d.feed(c)
			if !ok {
				continue
			}
			s.handleInput(in)
			if s.running {
				select {
				case ev := <-ft.stops:
					s.onStop(ev)
				default:
				}
			}
			if s.end {
				break
			}
		}
		done := make(chan struct{})
		timer := time.AfterFunc(5*time.Second, func() { close(done) })
		s.release(ft.stops, done)
		if !timer.Stop() {
			t.Fatal("the stub did not let go of the guest")
		}

		running, _, _, dbg, violation := ft.state()
		if violation != nil {
			t.Fatalf("Target contract broken: %v", violation)
		}
		if !s.exited {
			if !dbg.Idle() {
				t.Fatalf("after the client left the guest runs with %+v", dbg)
			}
			if !running {
				// Only because it ran to its end (a hlt it was given).
				select {
				case ev := <-ft.stops:
					if ev.Reason != StopExited {
						t.Fatalf("after the client left the guest stopped: %+v", ev)
					}
				default:
					t.Fatal("after the client left the guest is not running")
				}
			}
			if len(st.bp.sw) != 0 || st.bp.hw != ([NumDebugRegs]HWBreakpoint{}) {
				t.Fatalf("breakpoints left: %v %v", st.bp.sw, st.bp.hw)
			}
		}
		if err := checkStubOutput(out.Bytes()); err != nil {
			t.Fatal(err)
		}
	})
}

// checkStubOutput checks that the stub's byte stream is acks and framed
// packets with good checksums and valid run-length encoding.
func checkStubOutput(b []byte) error {
	for len(b) > 0 {
		switch b[0] {
		case ackByte, nackByte:
			b = b[1:]
			continue
		case packetStart:
		default:
			return fmt.Errorf("stray byte %q in the stub's output", b[0])
		}
		end := bytes.IndexByte(b, packetEnd)
		if end < 0 || len(b) < end+1+checksumDigits {
			return fmt.Errorf("unterminated packet %q", b)
		}
		data := b[1:end]
		if bytes.IndexByte(data, packetStart) >= 0 {
			return fmt.Errorf("'$' inside packet %q", data)
		}
		if got := string(b[end+1 : end+1+checksumDigits]); got != hex2(checksum(data)) {
			return fmt.Errorf("checksum %s of %q", got, data)
		}
		exp, err := expandRLE(data, maxReply)
		if err != nil {
			return fmt.Errorf("packet %q: %v", data, err)
		}
		if len(exp) > maxReply {
			return fmt.Errorf("reply of %d bytes", len(exp))
		}
		b = b[end+1+checksumDigits:]
	}
	return nil
}

// FuzzBreakpointShadow checks the int3 bookkeeping against a model of
// what GDB believes memory holds: through any mix of Z0, z0, M and m on
// a small window, reads show the model (never a planted int3), every
// planted breakpoint is an int3 in the guest, and after detach guest
// memory is exactly the model.
func FuzzBreakpointShadow(f *testing.F) {
	f.Add([]byte{0, 5, 0, 2, 3, 4, 3, 0, 9, 1, 5, 0})
	f.Add([]byte{0, 1, 0, 0, 2, 0, 2, 0, 7, 3, 0, 15, 1, 1, 0})
	f.Fuzz(func(t *testing.T, ops []byte) { shadowBody(t, ops) })
}

// shadowBody is one run of FuzzBreakpointShadow.
func shadowBody(t testing.TB, ops []byte) {
	const window = 64
	ft := newFakeTarget(1)
	ft.budget = fuzzBudget
	st := newStub(ft, nil)
	var out bytes.Buffer
	s := newSession(st, &out)
	s.noAck = true
	call := func(pkt string) string {
		out.Reset()
		s.handleInput(input{kind: inPacket, data: []byte(pkt)})
		r := out.Bytes()
		if len(r) < 4 || r[0] != packetStart {
			t.Fatalf("no reply to %q: %q", pkt, r)
		}
		exp, err := expandRLE(r[1:len(r)-3], maxReply)
		if err != nil {
			t.Fatal(err)
		}
		return string(exp)
	}
	model := bytes.Repeat([]byte{opNOP}, window)
	planted := map[uint64]bool{}
	for i := 0; i+2 < len(ops); i += 3 {
		off := uint64(ops[i+1]) % window
		addr := fakeBase + off
		switch ops[i] % 4 {
		case 0:
			if r := call(fmt.Sprintf("Z0,%x,1", addr)); r != "OK" {
				t.Fatalf("Z0 at %#x: %q", addr, r)
			}
			planted[addr] = true
		case 1:
			if r := call(fmt.Sprintf("z0,%x,1", addr)); r != "OK" {
				t.Fatalf("z0 at %#x: %q", addr, r)
			}
			delete(planted, addr)
		case 2:
			n := min(1+uint64(ops[i+2])%8, window-off)
			data := make([]byte, n)
			for j := range data {
				data[j] = ops[i+2] + byte(j)*int3 // int3 values included
			}
			if r := call(fmt.Sprintf("M%x,%x:%x", addr, n, data)); r != "OK" {
				t.Fatalf("M at %#x: %q", addr, r)
			}
			copy(model[off:], data)
		case 3:
			n := min(1+uint64(ops[i+2])%16, window-off)
			want := fmt.Sprintf("%x", model[off:off+n])
			if r := call(fmt.Sprintf("m%x,%x", addr, n)); r != want {
				t.Fatalf("m%x,%x = %s, GDB expects %s", addr, n, r, want)
			}
		}
		for a := range planted {
			if got := ft.memAt(a, 1)[0]; got != int3 {
				t.Fatalf("breakpoint at %#x is %#x in the guest, not int3", a, got)
			}
		}
	}
	if r := call("D"); r != "OK" {
		t.Fatalf("D: %q", r)
	}
	if got := ft.memAt(fakeBase, window); !bytes.Equal(got, model) {
		t.Fatalf("after detach guest memory is\n%x\nGDB wrote\n%x", got, model)
	}
}
