package devices

import (
	"bytes"
	"io"
	"testing"
	"time"

	"github.com/govmm/govmm/devices/devicetest"
	"github.com/stretchr/testify/require"
)

// strictIRQ is an IRQ line that fails the test if a device drives it to
// the level it already has: devices must call SetLevel only on changes.
type strictIRQ struct {
	t     *testing.T
	name  string
	level bool
}

func (l *strictIRQ) SetLevel(high bool) {
	if high == l.level {
		l.t.Errorf("%s: SetLevel(%v) without a change", l.name, high)
	}
	l.level = high
}

// fuzzPlatform is every device of this package on one bus, as the machine
// wires them, on a fake clock so that runs are reproducible.
type fuzzPlatform struct {
	bus   *PortBus
	clock *devicetest.FakeClock
	uart  *UART
	pit   *PIT
	rtc   *RTC
	pm    *PM
}

func newFuzzPlatform(t *testing.T) *fuzzPlatform {
	fc := newFakeClock()
	irq := func(name string) IRQLine { return &strictIRQ{t: t, name: name} }
	power := func(PowerEvent, string) {}
	p := &fuzzPlatform{
		bus:   NewPortBus(),
		clock: fc,
		uart:  NewUART(io.Discard, irq("com1")),
		pit:   NewPIT(irq("pit"), fc),
		rtc:   NewRTC(irq("rtc"), fc),
		pm:    NewPM(PMConfig{SCI: irq("sci"), Power: power, S5SleepType: DefaultS5SleepType, Clock: fc}),
	}
	kbc := NewI8042(irq("kbd"), irq("aux"), power)
	for _, r := range []struct {
		name string
		base uint16
		size uint16
		dev  PortDevice
	}{
		{"pit", PITBase, PITPorts, p.pit},
		{"port b", PortBPort, PortBPorts, p.pit.PortB()},
		{"i8042 data", I8042DataPort, I8042Ports, kbc.DataPort()},
		{"i8042 command", I8042CommandPort, I8042Ports, kbc.CommandPort()},
		{"rtc", RTCBase, RTCPorts, p.rtc},
		{"post", POSTPort, 1, Ignore{}},
		{"com1", COM1Base, UARTPorts, p.uart},
		{"pm1a evt", DefaultPM1aEventPort, PM1EventBlockLen, p.pm.EventBlock()},
		{"pm1a cnt", DefaultPM1aControlPort, PM1ControlBlockLen, p.pm.ControlBlock()},
		{"pm tmr", DefaultPMTimerPort, PMTimerBlockLen, p.pm.Timer()},
		{"reset", ResetControlPort, ResetControlPorts, NewResetControl(power)},
	} {
		require.NoError(t, p.bus.Register(r.name, r.base, r.size, r.dev))
	}
	return p
}

func (p *fuzzPlatform) close() {
	p.pit.Close()
	p.rtc.Close()
}

// fuzzPorts are the ports the fuzzer picks from most of the time.
var fuzzPorts = []uint16{
	0x40, 0x41, 0x42, 0x43, 0x61, 0x60, 0x64, 0x70, 0x71, 0x80,
	0x3F8, 0x3F9, 0x3FA, 0x3FB, 0x3FC, 0x3FD, 0x3FE, 0x3FF,
	0x600, 0x601, 0x602, 0x603, 0x604, 0x605, 0x608, 0x609, 0x60A, 0x60B,
	0xCF9, 0xCF8, 0x3F7, 0x44, 0xFFFF,
}

// fuzzMaxAdvanceLog2 bounds one clock step to about a quarter second, so
// that inputs which enable fast periodic interrupts stay quick to run.
const fuzzMaxAdvanceLog2 = 28

// fuzzSizes are the access sizes of IN and OUT.
var fuzzSizes = [4]int{1, 2, 4, 1}

// Operation encoding: one op byte, then its operands.
const (
	fuzzOpRead    = 0 // port selector byte
	fuzzOpWrite   = 1 // port selector byte, then size data bytes
	fuzzOpAdvance = 2 // one byte b: advance the clock 2^(b%fuzzMaxAdvanceLog2) ns
	fuzzOpHost    = 3 // one byte n: host input of n%20 bytes, or a power button press
)

// runFuzzOps decodes ops and performs them on two identical platforms whose
// read buffers start out different: every read must fill the whole buffer,
// so both must return the same bytes.
func runFuzzOps(t *testing.T, ops []byte) {
	a, b := newFuzzPlatform(t), newFuzzPlatform(t)
	defer a.close()
	defer b.close()
	next := func() (byte, bool) {
		if len(ops) == 0 {
			return 0, false
		}
		v := ops[0]
		ops = ops[1:]
		return v, true
	}
	for len(ops) > 0 {
		op, _ := next()
		size := fuzzSizes[op>>2&3]
		switch op & 3 {
		case fuzzOpRead, fuzzOpWrite:
			sel, ok := next()
			if !ok {
				return
			}
			port := fuzzPorts[int(sel)%len(fuzzPorts)]
			if op&0x80 != 0 { // any port at all
				hi, _ := next()
				port = uint16(hi)<<8 | uint16(sel)
			}
			if op&3 == fuzzOpRead {
				da := bytes.Repeat([]byte{0x00}, size)
				db := bytes.Repeat([]byte{0xA5}, size)
				a.bus.Read(port, da)
				b.bus.Read(port, db)
				require.Len(t, da, size)
				require.Equal(t, da, db, "read of %d bytes at %#x left bytes unset", size, port)
			} else {
				data := make([]byte, size)
				for i := range data {
					data[i], _ = next()
				}
				a.bus.Write(port, data)
				b.bus.Write(port, bytes.Clone(data))
			}
		case fuzzOpAdvance:
			v, _ := next()
			d := time.Duration(1) << (v % fuzzMaxAdvanceLog2)
			a.clock.Advance(d)
			b.clock.Advance(d)
		case fuzzOpHost:
			v, _ := next()
			if v == 0xFF {
				a.pm.PressPowerButton()
				b.pm.PressPowerButton()
				continue
			}
			in := bytes.Repeat([]byte{v}, int(v%20))
			require.Equal(t, a.uart.Receive(in), b.uart.Receive(in))
		}
	}
}

func FuzzPortIO(f *testing.F) {
	w := func(sel byte, data ...byte) []byte { return append([]byte{fuzzOpWrite, sel}, data...) }
	r := func(sel byte) []byte { return []byte{fuzzOpRead, sel} }
	portIndex := func(port uint16) byte {
		for i, p := range fuzzPorts {
			if p == port {
				return byte(i)
			}
		}
		panic("port not in fuzzPorts")
	}
	cat := func(parts ...[]byte) []byte { return bytes.Join(parts, nil) }
	adv := []byte{fuzzOpAdvance, 20} // ~1 ms

	// Linux's PIT calibration and periodic tick.
	f.Add(cat(w(portIndex(0x61), 0x01), w(portIndex(0x43), 0xB0), w(portIndex(0x42), 0xFF),
		w(portIndex(0x42), 0xFF), adv, r(portIndex(0x42)), r(portIndex(0x42)), r(portIndex(0x61)),
		w(portIndex(0x43), 0x34), w(portIndex(0x40), 0xA9), w(portIndex(0x40), 0x04), adv, adv,
		w(portIndex(0x43), 0xCE), r(portIndex(0x40)), r(portIndex(0x40)), r(portIndex(0x40))))
	// The 8250 probe and console setup.
	f.Add(cat(w(portIndex(0x3F9), 0x0F), r(portIndex(0x3F9)), w(portIndex(0x3FC), 0x1A),
		r(portIndex(0x3FE)), w(portIndex(0x3FC), 0x00), w(portIndex(0x3FB), 0xBF),
		w(portIndex(0x3FA), 0x00), w(portIndex(0x3FB), 0x03), w(portIndex(0x3FA), 0x87),
		r(portIndex(0x3FA)), w(portIndex(0x3FC), 0x0B), w(portIndex(0x3F9), 0x0F),
		[]byte{fuzzOpHost, 10}, r(portIndex(0x3FA)), r(portIndex(0x3F8)), r(portIndex(0x3FD)),
		w(portIndex(0x3F8), 'A')))
	// RTC read and set, with update interrupts.
	f.Add(cat(w(portIndex(0x70), 0x8B), w(portIndex(0x71), 0x92), w(portIndex(0x70), 0x09),
		w(portIndex(0x71), 0x25), w(portIndex(0x70), 0x0B), w(portIndex(0x71), 0x12), adv,
		[]byte{fuzzOpAdvance, 30}, w(portIndex(0x70), 0x0C), r(portIndex(0x71)),
		[]byte{fuzzOpWrite | 1<<2, portIndex(0x70), 0x0A, 0x2F}))
	// i8042 probe and reset; ACPI power button and S5; CF9.
	f.Add(cat(w(portIndex(0x64), 0xAA), r(portIndex(0x60)), w(portIndex(0x64), 0x60),
		w(portIndex(0x60), 0x47), w(portIndex(0x64), 0xD3), w(portIndex(0x60), 0x5A),
		r(portIndex(0x64)), r(portIndex(0x60)), w(portIndex(0x60), 0xF2), w(portIndex(0x64), 0xFE),
		[]byte{fuzzOpWrite | 1<<2, portIndex(0x602), 0x00, 0x01}, []byte{fuzzOpHost, 0xFF},
		[]byte{fuzzOpRead | 2<<2, portIndex(0x600)}, []byte{fuzzOpRead | 2<<2, portIndex(0x608)},
		[]byte{fuzzOpWrite | 1<<2, portIndex(0x604), 0x00, 0x34}, w(portIndex(0xCF9), 0x06)))
	// Unaligned and wide accesses anywhere.
	f.Add(cat([]byte{fuzzOpRead | 2<<2 | 0x80, 0xFE, 0x03}, []byte{fuzzOpWrite | 2<<2 | 0x80, 0xFE, 0xFF, 1, 2, 3, 4},
		[]byte{fuzzOpRead | 2<<2, portIndex(0x60B)}, []byte{fuzzOpRead | 1<<2, portIndex(0xFFFF)}))

	f.Fuzz(runFuzzOps)
}
