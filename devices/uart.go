package devices

import (
	"io"
	"log/slog"
	"sync"
)

// Standard PC serial port resources. The IBM PC/AT assigns COM1 to ports
// 0x3F8-0x3FF on IRQ 4 and COM2 to 0x2F8-0x2FF on IRQ 3 (IBM PC/AT Technical
// Reference, "System I/O Address Map"); Linux's legacy table has the same
// values (arch/x86/include/asm/serial.h, SERIAL_PORT_DFNS).
const (
	COM1Base uint16 = 0x3F8
	COM1IRQ         = 4
	COM2Base uint16 = 0x2F8
	COM2IRQ         = 3
	// UARTPorts is the number of consecutive ports a 16550A decodes
	// (address lines A0-A2).
	UARTPorts uint16 = 8
)

// UART register offsets from the base (NS16550A datasheet, Table II
// "Register Addresses"). Offsets 0 and 1 reach the divisor latch instead
// when LCR.DLAB is set.
const (
	uartRBR = 0 // Receiver Buffer Register (read, DLAB=0)
	uartTHR = 0 // Transmitter Holding Register (write, DLAB=0)
	uartDLL = 0 // Divisor Latch, least significant byte (DLAB=1)
	uartIER = 1 // Interrupt Enable Register (DLAB=0)
	uartDLM = 1 // Divisor Latch, most significant byte (DLAB=1)
	uartIIR = 2 // Interrupt Identification Register (read)
	uartFCR = 2 // FIFO Control Register (write)
	uartLCR = 3 // Line Control Register
	uartMCR = 4 // Modem Control Register
	uartLSR = 5 // Line Status Register
	uartMSR = 6 // Modem Status Register
	uartSCR = 7 // Scratch Register
)

// IER bits. Bits 4-7 are always 0 on a 16550A; Linux checks that they do
// not stick (8250_port.c autoconfig: the IER test masks them, and
// autoconfig_16550a tells an XScale UART from a 16550A by whether bit 6
// reads back).
const (
	ierERBFI = 0x01 // enable received data available (and character timeout) interrupt
	ierETBEI = 0x02 // enable transmitter holding register empty interrupt
	ierELSI  = 0x04 // enable receiver line status interrupt
	ierEDSSI = 0x08 // enable modem status interrupt
	ierMask  = ierERBFI | ierETBEI | ierELSI | ierEDSSI
)

// IIR values (NS16550A datasheet, Table IV "Interrupt Control Functions").
// Bit 0 is 0 while an interrupt is pending; bits 1-3 identify the highest
// priority one; bits 6-7 are both set when the FIFOs are enabled (FCR bit 0).
const (
	iirNoInterrupt   = 0x01 // no interrupt pending
	iirModemStatus   = 0x00 // priority 4: CTS, DSR, RI or DCD changed; cleared by reading MSR
	iirTHRE          = 0x02 // priority 3: THR empty; cleared by reading IIR or writing THR
	iirRxData        = 0x04 // priority 2: received data at the trigger level
	iirRxLineStatus  = 0x06 // priority 1: overrun, parity, framing error or break; cleared by reading LSR
	iirCharTimeout   = 0x0C // priority 2: data below the trigger level and no FIFO activity
	iirFIFOsEnabled  = 0xC0 // FIFOs enabled (a 16450 has no FIFO and reads 00 here)
	uartFIFOCapacity = 16   // bytes in each of the receive and transmit FIFOs
)

// FCR bits (NS16550A datasheet, "FIFO Control Register").
const (
	fcrEnable       = 0x01 // enable both FIFOs; toggling it clears them
	fcrClearRx      = 0x02 // clear the receive FIFO (self-clearing)
	fcrClearTx      = 0x04 // clear the transmit FIFO (self-clearing)
	fcrDMAMode      = 0x08 // RXRDY/TXRDY pin mode; no DMA here, only stored
	fcrTriggerMask  = 0xC0 // receive FIFO interrupt trigger level
	fcrTriggerShift = 6
	fcrStored       = fcrEnable | fcrDMAMode | fcrTriggerMask
)

// rxTriggerLevels maps FCR bits 7:6 to the receive FIFO trigger level in
// bytes (NS16550A datasheet, "FIFO Control Register", bits 6 and 7).
var rxTriggerLevels = [4]int{1, 4, 8, 14}

// LCR bits.
const (
	lcrWordLengthMask = 0x03 // 00 = 5 bits ... 11 = 8 bits; stored only (see transmit)
	lcrStopBits       = 0x04 // stored only: there is no line timing
	lcrParityEnable   = 0x08 // stored only
	lcrEvenParity     = 0x10 // stored only
	lcrStickParity    = 0x20 // stored only
	lcrSetBreak       = 0x40 // stored only
	lcrDLAB           = 0x80 // divisor latch access bit
)

// MCR bits. Bits 5-7 are always 0 on a 16550A.
const (
	mcrDTR  = 0x01 // data terminal ready
	mcrRTS  = 0x02 // request to send
	mcrOUT1 = 0x04 // user output 1
	mcrOUT2 = 0x08 // user output 2: on a PC, the interrupt enable
	mcrLOOP = 0x10 // local loopback diagnostic mode
	mcrMask = mcrDTR | mcrRTS | mcrOUT1 | mcrOUT2 | mcrLOOP
)

// LSR bits.
const (
	lsrDR        = 0x01 // data ready: a character is in RBR or the FIFO
	lsrOE        = 0x02 // overrun error
	lsrPE        = 0x04 // parity error (never produced: the link is perfect)
	lsrFE        = 0x08 // framing error (never produced)
	lsrBI        = 0x10 // break interrupt (never produced)
	lsrTHRE      = 0x20 // transmitter holding register (or TX FIFO) empty
	lsrTEMT      = 0x40 // transmitter empty: THR and shift register both empty
	lsrRxFIFOErr = 0x80 // an error character is in the RX FIFO (never produced)
	lsrErrorBits = lsrOE | lsrPE | lsrFE | lsrBI
)

// MSR bits. The low nibble holds "delta" bits that record changes of the
// modem inputs since MSR was last read; the high nibble is the inputs.
const (
	msrDCTS      = 0x01 // CTS changed
	msrDDSR      = 0x02 // DSR changed
	msrTERI      = 0x04 // trailing edge of RI (RI went from on to off)
	msrDDCD      = 0x08 // DCD changed
	msrCTS       = 0x10 // clear to send
	msrDSR       = 0x20 // data set ready
	msrRI        = 0x40 // ring indicator
	msrDCD       = 0x80 // data carrier detect
	msrDeltaMask = msrDCTS | msrDDSR | msrTERI | msrDDCD
)

// uartDefaultDivisor is the divisor latch value after reset: 1, i.e. the
// maximum 115200 baud from the PC's 1.8432 MHz UART clock divided by 16
// (arch/x86/include/asm/serial.h, BASE_BAUD). The datasheet leaves the
// latch undefined after reset; the value only matters to guests that read
// it before programming it, since bytes move instantly here.
const uartDefaultDivisor = 1

// UART is a National Semiconductor NS16550A UART with the register model of
// the datasheet, attached to a perfect line: transmitted bytes go to an
// io.Writer at once (so THR is always empty again immediately) and received
// bytes come from the host through Receive.
//
// Receive path and backpressure: the host offers bytes with Receive, which
// takes only what fits in the 16-byte receive FIFO (1 byte with the FIFOs
// disabled, none in loopback mode) and never drops anything. When it takes
// less than offered, the caller waits on Room, which is signalled whenever
// the guest makes space, and offers the rest again. The console's stdin
// reader does exactly that, so a slow guest slows the host reader down
// instead of losing input.
//
// Character timeout: a real 16550A reports "character timeout" when data
// below the trigger level has sat in the FIFO for four character times with
// no FIFO activity. Host input arrives here in bursts, and once a burst has
// been placed in the FIFO no more characters are "on the line", so the
// timeout condition is taken as met at once: with ERBFI set, a non-empty
// FIFO below the trigger level reports character timeout, and one at or
// above it reports received data available.
//
// A UART is safe for concurrent use by vCPU goroutines and the host input
// goroutine.
type UART struct {
	mu  sync.Mutex
	out io.Writer
	irq irqOutput

	ier, lcr, mcr, fcr, scr byte
	dll, dlm                byte
	lsrErrors               byte // sticky LSR error bits, cleared by reading LSR
	msrDelta                byte // MSR delta bits, cleared by reading MSR
	modemIn                 byte // MSR bits 4-7 as last computed, for the deltas
	threPending             bool // the THR empty interrupt is pending

	rx     [uartFIFOCapacity]byte // receive FIFO, a ring
	rxHead int
	rxLen  int
	rbr    byte // the last character read, returned again when empty

	room     chan struct{}
	writeErr sync.Once
}

// NewUART returns a UART in its reset state whose transmitted bytes are
// written to out and whose interrupt output drives irq (nil: not wired, the
// guest must poll). On a PC, COM1 is at COM1Base on IRQ COM1IRQ.
func NewUART(out io.Writer, irq IRQLine) *UART {
	u := &UART{
		out:  out,
		irq:  irqOutput{line: irq},
		dll:  uartDefaultDivisor,
		room: make(chan struct{}, 1),
	}
	u.modemIn = u.modemInputs()
	return u
}

// ReadPort implements PortDevice. Multi-byte accesses act as consecutive
// byte accesses.
func (u *UART) ReadPort(offset uint16, data []byte) {
	u.mu.Lock()
	defer u.mu.Unlock()
	readBytes(UARTPorts, offset, data, u.readReg)
	u.updateIRQ()
}

// WritePort implements PortDevice. Multi-byte accesses act as consecutive
// byte accesses.
func (u *UART) WritePort(offset uint16, data []byte) {
	u.mu.Lock()
	defer u.mu.Unlock()
	writeBytes(UARTPorts, offset, data, u.writeReg)
	u.updateIRQ()
}

func (u *UART) readReg(off uint16) byte {
	dlab := u.lcr&lcrDLAB != 0
	switch off {
	case uartRBR: // or DLL
		if dlab {
			return u.dll
		}
		return u.popRx()
	case uartIER: // or DLM
		if dlab {
			return u.dlm
		}
		return u.ier
	case uartIIR:
		id := u.interruptID()
		if id == iirTHRE {
			// Reading IIR while it reports THRE clears that
			// interrupt (datasheet, Table IV, "Interrupt Reset
			// Control").
			u.threPending = false
		}
		if u.fcr&fcrEnable != 0 {
			id |= iirFIFOsEnabled
		}
		return id
	case uartLCR:
		return u.lcr
	case uartMCR:
		return u.mcr
	case uartLSR:
		v := u.lsrErrors | lsrTHRE | lsrTEMT
		if u.rxLen > 0 {
			v |= lsrDR
		}
		u.lsrErrors = 0 // error bits clear on read
		return v
	case uartMSR:
		v := u.modemIn | u.msrDelta
		u.msrDelta = 0 // delta bits clear on read
		return v
	case uartSCR:
		return u.scr
	}
	return openBus
}

func (u *UART) writeReg(off uint16, v byte) {
	dlab := u.lcr&lcrDLAB != 0
	switch off {
	case uartTHR: // or DLL
		if dlab {
			u.dll = v
			return
		}
		u.transmit(v)
	case uartIER: // or DLM
		if dlab {
			u.dlm = v
			return
		}
		old := u.ier
		u.ier = v & ierMask
		if old&ierETBEI == 0 && u.ier&ierETBEI != 0 {
			// Enabling the THRE interrupt while THR is empty
			// raises it at once; Linux's serial8250_do_startup
			// checks that a real 16550 does this ("THRE test")
			// and otherwise falls back to polling.
			u.threPending = true
		}
	case uartFCR:
		u.writeFCR(v)
	case uartLCR:
		u.lcr = v
	case uartMCR:
		u.mcr = v & mcrMask
		u.updateModemInputs()
		// Leaving loopback reconnects the receiver to the host.
		u.signalRoom()
	case uartLSR, uartMSR:
		// LSR is writable only for factory testing and MSR is
		// read-only (datasheet, "Line Status Register"); ignore.
	case uartSCR:
		u.scr = v
	}
}

// writeFCR handles a write to the FIFO control register. The other bits are
// only programmed when FCR bit 0 is 1 in the same write, and changing bit 0
// clears both FIFOs (datasheet, "FIFO Control Register").
func (u *UART) writeFCR(v byte) {
	if (v^u.fcr)&fcrEnable != 0 {
		u.clearRx()
	}
	if v&fcrEnable == 0 {
		u.fcr = 0
		return
	}
	u.fcr = v & fcrStored
	if v&fcrClearRx != 0 {
		u.clearRx()
	}
	// fcrClearTx: the transmit FIFO is always empty, bytes leave at once.
}

// transmit sends one character written to THR.
func (u *UART) transmit(v byte) {
	// The whole byte is sent whatever word length LCR bits 0-1 select:
	// the reset value selects 5 bits, and a guest that prints without
	// programming LCR first should still be readable on the host.
	if u.mcr&mcrLOOP != 0 {
		// Loopback: the transmitter output is connected to the
		// receiver input and the serial output is held marking.
		u.pushRx(v)
	} else if u.out != nil {
		if _, err := u.out.Write([]byte{v}); err != nil {
			u.writeErr.Do(func() {
				slog.Warn("uart: writing guest output failed; further errors are not logged", "err", err)
			})
		}
	}
	// The character moved to the (instant) shift register, so THR is
	// empty again: writing THR clears the THRE interrupt and emptying
	// THR raises it.
	u.threPending = true
}

// rxCapacity is the room of the receiver: the FIFO, or just RBR with the
// FIFOs disabled (16450 mode).
func (u *UART) rxCapacity() int {
	if u.fcr&fcrEnable != 0 {
		return uartFIFOCapacity
	}
	return 1
}

// pushRx puts one received character into the FIFO. A character that
// arrives when the receiver is full is an overrun: in FIFO mode it is lost
// (it only ever reached the shift register), in 16450 mode it overwrites RBR
// (datasheet, "Line Status Register", bit 1).
func (u *UART) pushRx(v byte) {
	if u.rxLen >= u.rxCapacity() {
		u.lsrErrors |= lsrOE
		if u.fcr&fcrEnable == 0 {
			u.rx[u.rxHead] = v
		}
		return
	}
	u.rx[(u.rxHead+u.rxLen)%uartFIFOCapacity] = v
	u.rxLen++
}

// popRx takes the oldest received character, as a read of RBR does.
func (u *UART) popRx() byte {
	if u.rxLen == 0 {
		return u.rbr
	}
	u.rbr = u.rx[u.rxHead]
	u.rxHead = (u.rxHead + 1) % uartFIFOCapacity
	u.rxLen--
	u.signalRoom()
	return u.rbr
}

func (u *UART) clearRx() {
	u.rxHead, u.rxLen = 0, 0
	u.signalRoom()
}

// modemInputs returns the MSR input bits. Normally the "modem" is a host
// that is always there: CTS, DSR and DCD are asserted and RI is not. In
// loopback mode the inputs are wired to the outputs instead: CTS to RTS,
// DSR to DTR, RI to OUT1 and DCD to OUT2 (datasheet, "Modem Control
// Register", bit 4). Linux's autoconfig tests this: with MCR = LOOP|OUT2|RTS
// it expects MSR bits 4-7 to read 0x90.
func (u *UART) modemInputs() byte {
	if u.mcr&mcrLOOP == 0 {
		return msrCTS | msrDSR | msrDCD
	}
	var v byte
	if u.mcr&mcrRTS != 0 {
		v |= msrCTS
	}
	if u.mcr&mcrDTR != 0 {
		v |= msrDSR
	}
	if u.mcr&mcrOUT1 != 0 {
		v |= msrRI
	}
	if u.mcr&mcrOUT2 != 0 {
		v |= msrDCD
	}
	return v
}

// updateModemInputs recomputes the inputs and records changes in the delta
// bits. RI sets its delta (TERI) only on its trailing edge.
func (u *UART) updateModemInputs() {
	in := u.modemInputs()
	changed := in ^ u.modemIn
	if changed&msrCTS != 0 {
		u.msrDelta |= msrDCTS
	}
	if changed&msrDSR != 0 {
		u.msrDelta |= msrDDSR
	}
	if changed&msrDCD != 0 {
		u.msrDelta |= msrDDCD
	}
	if changed&msrRI != 0 && in&msrRI == 0 {
		u.msrDelta |= msrTERI
	}
	u.modemIn = in
}

// interruptID returns the IIR identification of the highest-priority
// enabled pending interrupt, or iirNoInterrupt (datasheet, Table IV).
func (u *UART) interruptID() byte {
	if u.ier&ierELSI != 0 && u.lsrErrors != 0 {
		return iirRxLineStatus
	}
	if u.ier&ierERBFI != 0 && u.rxLen > 0 {
		if u.fcr&fcrEnable != 0 && u.rxLen < rxTriggerLevels[u.fcr>>fcrTriggerShift] {
			return iirCharTimeout
		}
		return iirRxData
	}
	if u.ier&ierETBEI != 0 && u.threPending {
		return iirTHRE
	}
	if u.ier&ierEDSSI != 0 && u.msrDelta != 0 {
		return iirModemStatus
	}
	return iirNoInterrupt
}

// updateIRQ drives the interrupt line. On the PC the 16550's INTR output
// reaches the interrupt controller only while the OUT2 pin is active: the
// serial adapter drives its IRQ line through a buffer enabled by OUT2 (IBM
// PC/AT Technical Reference, Serial/Parallel Adapter; Linux 8250_port.c
// serial8250_do_startup: "Most PC uarts need OUT2 raised to enable
// interrupts"). In loopback mode the modem control output pins are forced
// inactive (datasheet, MCR bit 4), so the line stays low then.
func (u *UART) updateIRQ() {
	gate := u.mcr&mcrOUT2 != 0 && u.mcr&mcrLOOP == 0
	u.irq.set(gate && u.interruptID() != iirNoInterrupt)
}

// Receive offers bytes from the host to the guest, as if they had arrived
// on the serial line. It takes as many as fit in the receiver (see UART),
// returns how many it took, never blocks and never drops bytes. If it takes
// fewer than len(p), wait for Room and offer the rest again.
func (u *UART) Receive(p []byte) int {
	u.mu.Lock()
	defer u.mu.Unlock()
	if u.mcr&mcrLOOP != 0 {
		// In loopback mode the serial input is disconnected.
		return 0
	}
	n := min(len(p), u.rxCapacity()-u.rxLen)
	if n <= 0 {
		return 0
	}
	for _, v := range p[:n] {
		u.pushRx(v)
	}
	u.updateIRQ()
	return n
}

// Room returns a channel that receives a value when the receiver may have
// space again after Receive took less than it was offered: the guest read a
// character, cleared the FIFO or left loopback mode. Wakeups can be
// spurious; call Receive again to find out. The channel is meant for a
// single waiting goroutine.
func (u *UART) Room() <-chan struct{} { return u.room }

// signalRoom wakes the host input goroutine without blocking.
func (u *UART) signalRoom() {
	select {
	case u.room <- struct{}{}:
	default:
	}
}
