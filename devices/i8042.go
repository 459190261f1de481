package devices

import (
	"log/slog"
	"sync"
)

// PC resources of the 8042 keyboard controller (IBM PC/AT Technical
// Reference, "Keyboard Controller"). The two ports are not adjacent (port
// B, 0x61, sits between them), so the controller registers as two devices.
const (
	// I8042DataPort is the data port: the output buffer on reads, the
	// input buffer (data or a command's argument) on writes.
	I8042DataPort uint16 = 0x60
	// I8042CommandPort is the status register on reads and the command
	// register on writes.
	I8042CommandPort uint16 = 0x64
	// I8042Ports is the size of each of the two port ranges.
	I8042Ports uint16 = 1
	// KeyboardIRQ is the ISA IRQ for data from the keyboard port.
	KeyboardIRQ = 1
	// MouseIRQ is the ISA IRQ for data from the auxiliary (PS/2 mouse)
	// port.
	MouseIRQ = 12
)

// Status register bits (names as in Linux include/linux/i8042.h).
const (
	i8042StrOBF      = 0x01 // output buffer full: a byte waits at port 0x60
	i8042StrIBF      = 0x02 // input buffer full: the controller is busy (never here)
	i8042StrSYS      = 0x04 // system flag: set by a passed self test or via CTR bit 2
	i8042StrCMD      = 0x08 // A2: the last write was to the command port
	i8042StrUnlocked = 0x10 // keyboard not inhibited by the keylock switch
	i8042StrAuxData  = 0x20 // the output byte comes from the auxiliary port
	i8042StrTimeout  = 0x40 // the device did not respond
	i8042StrParity   = 0x80 // parity error on the device link (never here)
)

// Controller command byte ("CTR" in Linux, byte 0 of the 8042's RAM).
const (
	i8042CtrKbdInt      = 0x01 // raise IRQ 1 for keyboard data
	i8042CtrAuxInt      = 0x02 // raise IRQ 12 for auxiliary data
	i8042CtrSys         = 0x04 // system flag
	i8042CtrIgnKeylock  = 0x08 // ignore the keylock switch
	i8042CtrKbdDisable  = 0x10 // keyboard interface disabled (clock held low)
	i8042CtrAuxDisable  = 0x20 // auxiliary interface disabled
	i8042CtrXlate       = 0x40 // translate scan code set 2 to set 1
	i8042CtrAfterFWInit = i8042CtrKbdInt | i8042CtrSys | i8042CtrXlate
)

// Controller commands written to the command port (IBM PC/AT Technical
// Reference and the IBM PS/2 8042 commands; Linux include/linux/i8042.h).
const (
	i8042CmdReadRAM      = 0x20 // 0x20-0x3F: read RAM byte (cmd & 0x1F); 0x20 reads the CTR
	i8042CmdReadRAMLast  = 0x3F
	i8042CmdWriteRAM     = 0x60 // 0x60-0x7F: write RAM byte with the next data byte; 0x60 writes the CTR
	i8042CmdWriteRAMLast = 0x7F
	i8042CmdAuxDisable   = 0xA7
	i8042CmdAuxEnable    = 0xA8
	i8042CmdAuxTest      = 0xA9 // auxiliary interface test: 0x00 = no error
	i8042CmdSelfTest     = 0xAA // controller self test: 0x55 = passed
	i8042CmdKbdTest      = 0xAB // keyboard interface test: 0x00 = no error
	i8042CmdKbdDisable   = 0xAD
	i8042CmdKbdEnable    = 0xAE
	i8042CmdReadInput    = 0xC0 // read the input port
	i8042CmdReadOutput   = 0xD0 // read the output port
	i8042CmdWriteOutput  = 0xD1 // write the output port with the next data byte
	i8042CmdWriteKbdOut  = 0xD2 // next data byte appears as if from the keyboard
	i8042CmdWriteAuxOut  = 0xD3 // next data byte appears as if from the aux device ("AUX loop")
	i8042CmdWriteAux     = 0xD4 // next data byte goes to the aux device
	i8042CmdReadTest     = 0xE0 // read the test inputs
	i8042CmdPulseFirst   = 0xF0 // 0xF0-0xFF: pulse output port bits 0-3 whose command bit is 0
	i8042RAMIndexMask    = 0x1F
	i8042PulseMask       = 0x0F
)

// Command results and device responses.
const (
	i8042SelfTestPassed = 0x55
	i8042InterfaceOK    = 0x00
	// i8042NoDeviceReply is what the controller puts in the output buffer,
	// with the timeout status bit, when the device on a port does not
	// answer a byte sent to it. Linux's libps2 treats it as a NAK
	// (PS2_RET_NAK, drivers/input/serio/libps2.c, ps2_handle_ack), so a
	// probe for a missing keyboard or mouse fails at once instead of
	// waiting for its timeout.
	i8042NoDeviceReply = 0xFE
	// i8042InputPortValue is the input port: bit 7 set = keyboard not
	// inhibited, all others 0 (as QEMU reports).
	i8042InputPortValue = 0x80
	// i8042TestInputsValue is the test inputs (T0 keyboard clock, T1
	// aux clock): both low.
	i8042TestInputsValue = 0x00
)

// Output port bits (IBM PC/AT Technical Reference, 8042 output port).
const (
	i8042OutResetN   = 0x01 // system reset, active low: 0 resets the CPU
	i8042OutA20      = 0x02 // A20 gate (stored; KVM has no A20 masking)
	i8042OutKbdIRQ   = 0x10 // IRQ 1 output (output buffer full from keyboard)
	i8042OutAuxIRQ   = 0x20 // IRQ 12 output (output buffer full from aux)
	i8042OutDefault  = 0xCF // reset high, A20 on, clock/data lines idle high (QEMU KBD_OUT_ONES)
	i8042OutIRQBits  = i8042OutKbdIRQ | i8042OutAuxIRQ
	i8042RAMSize     = 32
	i8042OutputQueue = 16 // bytes held for the guest; a real 8042 holds one
)

// i8042Byte is one byte waiting in the output buffer with the status bits
// that come with it.
type i8042Byte struct {
	data   byte
	status byte // i8042StrAuxData and/or i8042StrTimeout
}

// I8042 is the Intel 8042 keyboard controller of the PC/AT with no keyboard
// and no mouse plugged in: enough for Linux's i8042 driver
// (drivers/input/serio/i8042.c) to probe it, find its ports empty
// quickly and reboot the machine through it.
//
// The controller commands (read/write CTR and RAM, self test, interface
// tests, enable/disable ports, output port, AUX loopback 0xD3, write to aux
// 0xD4, pulse output lines) behave as on the chip. Bytes sent to the
// keyboard (data port writes) or the mouse (command 0xD4) are answered with
// 0xFE and the timeout status bit, which is what a controller reports when
// the device does not clock the byte in. Resetting the CPU through the
// output port (command 0xD1 with bit 0 clear, or pulse command 0xFE, the way
// Linux's reboot=k does in arch/x86/kernel/reboot.c) calls the
// PowerHandler with Reset.
//
// Interrupts follow the output buffer: IRQ 1 is high while it holds a
// keyboard byte and CTR bit 0 is set, IRQ 12 likewise for an aux byte and
// CTR bit 1. Replies queue (up to i8042OutputQueue bytes, where a real 8042
// would have overwritten its single buffer), and each byte is presented with
// a fresh rising edge.
type I8042 struct {
	mu      sync.Mutex
	power   PowerHandler
	kbdIRQ  irqOutput
	auxIRQ  irqOutput
	ram     [i8042RAMSize]byte // ram[0] is the CTR
	sysFlag bool
	lastCmd bool // the last write went to the command port
	outPort byte
	pending byte // command waiting for its data byte, 0 if none
	queue   []i8042Byte
	last    byte // last byte read from the data port, returned again when empty
}

// NewI8042 returns a controller as firmware leaves it (self test passed,
// translation and the keyboard interrupt on). kbdIRQ and auxIRQ are ISA
// IRQs KeyboardIRQ and MouseIRQ (nil: not wired); power receives reset
// requests (nil: ignored). Register DataPort at I8042DataPort and
// CommandPort at I8042CommandPort.
func NewI8042(kbdIRQ, auxIRQ IRQLine, power PowerHandler) *I8042 {
	c := &I8042{
		power:   power,
		kbdIRQ:  irqOutput{line: kbdIRQ},
		auxIRQ:  irqOutput{line: auxIRQ},
		sysFlag: true,
		outPort: i8042OutDefault,
	}
	c.ram[0] = i8042CtrAfterFWInit
	return c
}

// DataPort returns the device for port 0x60.
func (c *I8042) DataPort() PortDevice { return (*i8042Data)(c) }

// CommandPort returns the device for port 0x64.
func (c *I8042) CommandPort() PortDevice { return (*i8042Command)(c) }

type (
	i8042Data    I8042
	i8042Command I8042
)

// ReadPort reads the output buffer.
func (d *i8042Data) ReadPort(offset uint16, data []byte) {
	c := (*I8042)(d)
	c.mu.Lock()
	defer c.mu.Unlock()
	readBytes(I8042Ports, offset, data, func(uint16) byte { return c.readData() })
}

// WritePort writes the input buffer as data.
func (d *i8042Data) WritePort(offset uint16, data []byte) {
	c := (*I8042)(d)
	c.mu.Lock()
	var reset bool
	writeBytes(I8042Ports, offset, data, func(_ uint16, v byte) {
		reset = c.writeData(v) || reset
	})
	c.mu.Unlock()
	c.requestReset(reset)
}

// ReadPort reads the status register.
func (d *i8042Command) ReadPort(offset uint16, data []byte) {
	c := (*I8042)(d)
	c.mu.Lock()
	defer c.mu.Unlock()
	readBytes(I8042Ports, offset, data, func(uint16) byte { return c.status() })
}

// WritePort writes the input buffer as a command.
func (d *i8042Command) WritePort(offset uint16, data []byte) {
	c := (*I8042)(d)
	c.mu.Lock()
	var reset bool
	writeBytes(I8042Ports, offset, data, func(_ uint16, v byte) {
		reset = c.command(v) || reset
	})
	c.mu.Unlock()
	c.requestReset(reset)
}

// requestReset tells the machine that the guest reset the CPU through the
// controller. It runs without the lock held.
func (c *I8042) requestReset(reset bool) {
	if reset && c.power != nil {
		c.power(Reset, "i8042 reset")
	}
}

func (c *I8042) status() byte {
	s := byte(i8042StrUnlocked)
	if len(c.queue) > 0 {
		s |= i8042StrOBF | c.queue[0].status
	}
	if c.sysFlag {
		s |= i8042StrSYS
	}
	if c.lastCmd {
		s |= i8042StrCMD
	}
	return s
}

func (c *I8042) readData() byte {
	if len(c.queue) == 0 {
		return c.last
	}
	c.last = c.queue[0].data
	c.queue = c.queue[1:]
	if len(c.queue) == 0 {
		c.queue = nil // let the backing array go
	}
	// The next byte, if any, loads into the emptied buffer: OBF and the
	// IRQ output drop and rise again, one edge per byte.
	c.kbdIRQ.set(false)
	c.auxIRQ.set(false)
	c.updateIRQ()
	return c.last
}

// command executes a byte written to the command port. It reports whether
// the CPU is to be reset.
func (c *I8042) command(cmd byte) (reset bool) {
	c.lastCmd = true
	c.pending = 0
	switch {
	case cmd >= i8042CmdReadRAM && cmd <= i8042CmdReadRAMLast:
		c.reply(c.ram[cmd&i8042RAMIndexMask], 0)
	case cmd >= i8042CmdWriteRAM && cmd <= i8042CmdWriteRAMLast:
		c.pending = cmd
	case cmd == i8042CmdAuxDisable:
		c.ram[0] |= i8042CtrAuxDisable
	case cmd == i8042CmdAuxEnable:
		c.ram[0] &^= i8042CtrAuxDisable
	case cmd == i8042CmdAuxTest, cmd == i8042CmdKbdTest:
		c.reply(i8042InterfaceOK, 0)
	case cmd == i8042CmdSelfTest:
		c.sysFlag = true
		c.reply(i8042SelfTestPassed, 0)
	case cmd == i8042CmdKbdDisable:
		c.ram[0] |= i8042CtrKbdDisable
	case cmd == i8042CmdKbdEnable:
		c.ram[0] &^= i8042CtrKbdDisable
	case cmd == i8042CmdReadInput:
		c.reply(i8042InputPortValue, 0)
	case cmd == i8042CmdReadOutput:
		c.reply(c.outputPort(), 0)
	case cmd == i8042CmdWriteOutput, cmd == i8042CmdWriteKbdOut,
		cmd == i8042CmdWriteAuxOut, cmd == i8042CmdWriteAux:
		c.pending = cmd
	case cmd == i8042CmdReadTest:
		c.reply(i8042TestInputsValue, 0)
	case cmd >= i8042CmdPulseFirst:
		// Bits 0-3 of the command select output port bits to pulse
		// low for about 6 µs; a 0 bit means "pulse". Bit 0 is the
		// CPU reset line, so 0xFE resets the machine.
		return cmd&i8042OutResetN == 0
	default:
		slog.Debug("i8042: unsupported controller command", "cmd", cmd)
	}
	c.updateIRQ()
	return false
}

// writeData handles a byte written to the data port: the argument of a
// pending command, or else a byte for the keyboard. It reports whether the
// CPU is to be reset.
func (c *I8042) writeData(v byte) (reset bool) {
	c.lastCmd = false
	cmd := c.pending
	c.pending = 0
	switch {
	case cmd >= i8042CmdWriteRAM && cmd <= i8042CmdWriteRAMLast:
		i := cmd & i8042RAMIndexMask
		c.ram[i] = v
		if i == 0 {
			c.sysFlag = v&i8042CtrSys != 0
		}
	case cmd == i8042CmdWriteOutput:
		c.outPort = v
		if v&i8042OutResetN == 0 {
			reset = true
		}
	case cmd == i8042CmdWriteKbdOut:
		c.reply(v, 0)
	case cmd == i8042CmdWriteAuxOut:
		c.reply(v, i8042StrAuxData)
	case cmd == i8042CmdWriteAux:
		// No mouse: the byte is never clocked in.
		c.reply(i8042NoDeviceReply, i8042StrAuxData|i8042StrTimeout)
	default:
		// To the keyboard, which is not there.
		c.reply(i8042NoDeviceReply, i8042StrTimeout)
	}
	c.updateIRQ()
	return reset
}

// outputPort returns the output port with the live IRQ output bits.
func (c *I8042) outputPort() byte {
	v := c.outPort &^ i8042OutIRQBits
	switch {
	case len(c.queue) == 0:
	case c.queue[0].status&i8042StrAuxData != 0:
		v |= i8042OutAuxIRQ
	default:
		v |= i8042OutKbdIRQ
	}
	return v
}

// reply queues a byte for the guest to read from the data port.
func (c *I8042) reply(v, status byte) {
	if len(c.queue) >= i8042OutputQueue {
		slog.Debug("i8042: output buffer overflow, byte dropped", "data", v)
		return
	}
	c.queue = append(c.queue, i8042Byte{data: v, status: status})
}

// updateIRQ drives IRQ 1 and IRQ 12 from the output buffer and the CTR.
func (c *I8042) updateIRQ() {
	var kbd, aux bool
	if len(c.queue) > 0 {
		if c.queue[0].status&i8042StrAuxData != 0 {
			aux = c.ram[0]&i8042CtrAuxInt != 0
		} else {
			kbd = c.ram[0]&i8042CtrKbdInt != 0
		}
	}
	c.kbdIRQ.set(kbd)
	c.auxIRQ.set(aux)
}
