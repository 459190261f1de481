package devices

import (
	"bytes"
	"sync"
	"testing"

	"github.com/govmm/govmm/devices/devicetest"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// Register values as Linux's include/uapi/linux/serial_reg.h names them,
// for replaying the 8250 driver's probe.
const (
	linuxLCRConfModeA = 0x80 // UART_LCR_CONF_MODE_A: DLAB
	linuxLCRConfModeB = 0xBF // UART_LCR_CONF_MODE_B: EFR access on 16650+
	linuxFCR7_64Byte  = 0x20 // UART_FCR7_64BYTE (TI16750)
	linuxIERUUE       = 0x40 // UART_IER_UUE (XScale)
	linuxLCRWLen8     = 0x03 // UART_LCR_WLEN8
)

// syncBuffer is a goroutine-safe bytes.Buffer.
type syncBuffer = devicetest.Buffer

func newTestUART() (*UART, *syncBuffer, *devicetest.IRQRecorder) {
	out := &syncBuffer{}
	irq := &devicetest.IRQRecorder{}
	return NewUART(out, irq), out, irq
}

func TestUARTResetState(t *testing.T) {
	u, _, _ := newTestUART()
	assert.Equal(t, byte(0), in8(u, uartIER))
	assert.Equal(t, byte(iirNoInterrupt), in8(u, uartIIR))
	assert.Equal(t, byte(0), in8(u, uartLCR))
	assert.Equal(t, byte(0), in8(u, uartMCR))
	assert.Equal(t, byte(lsrTHRE|lsrTEMT), in8(u, uartLSR))
	assert.Equal(t, byte(msrCTS|msrDSR|msrDCD), in8(u, uartMSR))
}

// TestUARTLinuxAutoconfig replays drivers/tty/serial/8250/8250_port.c
// autoconfig, autoconfig_16550a (with the 16550A variant probes) and
// size_fifo, and checks the driver would decide "16550A".
func TestUARTLinuxAutoconfig(t *testing.T) {
	u, out, _ := newTestUART()

	// IER existence test.
	scratch := in8(u, uartIER)
	out8(u, uartIER, 0)
	scratch2 := in8(u, uartIER) & 0x0F
	out8(u, uartIER, 0x0F)
	scratch3 := in8(u, uartIER) & 0x0F
	out8(u, uartIER, scratch)
	require.Equal(t, byte(0), scratch2)
	require.Equal(t, byte(0x0F), scratch3)

	// Loopback test.
	saveMCR := in8(u, uartMCR)
	saveLCR := in8(u, uartLCR)
	out8(u, uartMCR, mcrLOOP|0x0A)
	status1 := in8(u, uartMSR) & 0xF0
	out8(u, uartMCR, saveMCR)
	require.Equal(t, byte(0x90), status1, "LOOP test")

	// FIFO detection through IIR bits 6-7.
	out8(u, uartLCR, linuxLCRConfModeB)
	out8(u, 2, 0) // UART_EFR
	out8(u, uartLCR, 0)
	out8(u, uartFCR, fcrEnable)
	require.Equal(t, byte(3), in8(u, uartIIR)>>6, "IIR bits 6-7 = 11: 16550A")

	// autoconfig_16550a: no EFR under either LCR magic value...
	out8(u, uartLCR, linuxLCRConfModeA)
	require.NotEqual(t, byte(0), in8(u, 2), "EFRv1 probe must fail")
	out8(u, uartLCR, linuxLCRConfModeB)
	require.NotEqual(t, byte(0), in8(u, 2), "EFRv2 probe must fail")
	// ...not a National Semiconductor SuperIO (EXCR1 does not follow LOOP)...
	out8(u, uartLCR, 0)
	mcr := in8(u, uartMCR)
	out8(u, uartLCR, 0xE0)
	excr1 := in8(u, 2)
	assert.Zero(t, (excr1^mcr)&mcrLOOP)
	out8(u, uartLCR, 0)
	out8(u, uartMCR, mcr^mcrLOOP)
	out8(u, uartLCR, 0xE0)
	excr1 = in8(u, 2)
	out8(u, uartLCR, 0)
	out8(u, uartMCR, mcr)
	require.Zero(t, (excr1^mcr)&mcrLOOP, "NS16550A probe must fail")
	// ...not a TI16750...
	out8(u, uartLCR, 0)
	out8(u, uartFCR, fcrEnable|linuxFCR7_64Byte)
	s1 := in8(u, uartIIR) >> 5
	out8(u, uartFCR, fcrEnable)
	out8(u, uartLCR, linuxLCRConfModeA)
	out8(u, uartFCR, fcrEnable|linuxFCR7_64Byte)
	s2 := in8(u, uartIIR) >> 5
	out8(u, uartFCR, fcrEnable)
	out8(u, uartLCR, 0)
	require.False(t, s1 == 6 && s2 == 7, "TI16750 probe must fail")
	// ...not an XScale...
	ier := in8(u, uartIER)
	out8(u, uartIER, ier|linuxIERUUE)
	require.Zero(t, in8(u, uartIER)&linuxIERUUE, "XScale probe must fail")
	out8(u, uartIER, ier)
	// ...and a 16-byte FIFO (size_fifo).
	oldLCR := in8(u, uartLCR)
	out8(u, uartLCR, 0)
	oldMCR := in8(u, uartMCR)
	out8(u, uartFCR, fcrEnable|fcrClearRx|fcrClearTx)
	out8(u, uartMCR, mcrLOOP)
	out8(u, uartLCR, linuxLCRConfModeA)
	out8(u, uartDLL, 1)
	out8(u, uartDLM, 0)
	out8(u, uartLCR, linuxLCRWLen8)
	for i := range 256 {
		out8(u, uartTHR, byte(i))
	}
	count := 0
	for ; in8(u, uartLSR)&lsrDR != 0 && count < 256; count++ {
		assert.Equal(t, byte(count), in8(u, uartRBR))
	}
	assert.Equal(t, uartFIFOCapacity, count)
	out8(u, uartFCR, 0)
	out8(u, uartMCR, oldMCR)
	out8(u, uartLCR, oldLCR)

	// Scratch register.
	out8(u, uartSCR, 0xA5)
	assert.Equal(t, byte(0xA5), in8(u, uartSCR))
	out8(u, uartLCR, saveLCR)

	assert.Empty(t, out.String(), "loopback traffic must not reach the host")
}

func TestUARTTransmit(t *testing.T) {
	u, out, _ := newTestUART()
	out8(u, uartLCR, linuxLCRWLen8)
	for _, c := range []byte("hi\n") {
		out8(u, uartTHR, c)
	}
	out8(u, uartLCR, 0) // 5-bit characters: still sent whole to the host
	out8(u, uartTHR, 0xC1)
	assert.Equal(t, "hi\n\xC1", out.String())
	assert.Equal(t, byte(lsrTHRE|lsrTEMT), in8(u, uartLSR))
}

func TestUARTDivisorLatch(t *testing.T) {
	u, out, _ := newTestUART()
	out8(u, uartLCR, lcrDLAB|linuxLCRWLen8)
	out8(u, uartDLL, 0x0C)
	out8(u, uartDLM, 0x01)
	assert.Equal(t, byte(0x0C), in8(u, uartDLL))
	assert.Equal(t, byte(0x01), in8(u, uartDLM))
	assert.Empty(t, out.String(), "DLAB writes do not transmit")
	out8(u, uartLCR, linuxLCRWLen8)
	assert.Equal(t, byte(0), in8(u, uartIER), "DLM write did not reach IER")
	out8(u, uartTHR, 'x')
	assert.Equal(t, "x", out.String())
	out8(u, uartLCR, lcrDLAB)
	assert.Equal(t, byte(0x0C), in8(u, uartDLL), "THR write did not reach DLL")
}

func TestUARTTHREInterrupt(t *testing.T) {
	u, _, irq := newTestUART()

	// Linux's THRE test in serial8250_do_startup: enabling ETBEI with THR
	// empty raises THRE each time.
	out8(u, uartIER, ierETBEI)
	iir1 := in8(u, uartIIR)
	out8(u, uartIER, 0)
	out8(u, uartIER, ierETBEI)
	iir := in8(u, uartIIR)
	out8(u, uartIER, 0)
	assert.Equal(t, byte(iirTHRE), iir1)
	assert.Equal(t, byte(iirTHRE), iir)

	// Reading IIR while it reports THRE clears it.
	out8(u, uartIER, ierETBEI)
	assert.Equal(t, byte(iirTHRE), in8(u, uartIIR))
	assert.Equal(t, byte(iirNoInterrupt), in8(u, uartIIR))
	// Writing THR empties it again at once: THRE is back.
	out8(u, uartTHR, 'a')
	assert.Equal(t, byte(iirTHRE), in8(u, uartIIR))

	// Without OUT2 the line never rises.
	out8(u, uartTHR, 'b')
	assert.Empty(t, irq.Calls())
	// With OUT2 it does, and falls when IIR is read.
	out8(u, uartMCR, mcrOUT2|mcrDTR|mcrRTS)
	assert.True(t, irq.Level())
	in8(u, uartIIR)
	assert.False(t, irq.Level())
	out8(u, uartTHR, 'c')
	assert.True(t, irq.Level())
	// Disabling ETBEI masks the pending interrupt.
	out8(u, uartIER, 0)
	assert.False(t, irq.Level())
	out8(u, uartIER, ierETBEI)
	assert.True(t, irq.Level())
	// Dropping OUT2 gates it.
	out8(u, uartMCR, mcrDTR)
	assert.False(t, irq.Level())
	assert.Equal(t, []bool{true, false, true, false, true, false}, irq.Calls())
}

func TestUARTReceiveAndTriggerLevels(t *testing.T) {
	for trig, level := range rxTriggerLevels {
		u, _, irq := newTestUART()
		out8(u, uartMCR, mcrOUT2)
		out8(u, uartFCR, fcrEnable|byte(trig)<<fcrTriggerShift)
		out8(u, uartIER, ierERBFI)
		assert.False(t, irq.Level())

		if level > 1 {
			require.Equal(t, level-1, u.Receive(bytes.Repeat([]byte{'x'}, level-1)))
			assert.Equal(t, byte(iirFIFOsEnabled|iirCharTimeout), in8(u, uartIIR), "level %d", level)
			assert.True(t, irq.Level())
		}
		require.Equal(t, 1, u.Receive([]byte{'y'}))
		assert.Equal(t, byte(iirFIFOsEnabled|iirRxData), in8(u, uartIIR), "level %d", level)
		assert.Equal(t, byte(lsrDR|lsrTHRE|lsrTEMT), in8(u, uartLSR))

		// Reading below the trigger level turns RDA into timeout.
		in8(u, uartRBR)
		if level > 1 {
			assert.Equal(t, byte(iirFIFOsEnabled|iirCharTimeout), in8(u, uartIIR))
		}
		for in8(u, uartLSR)&lsrDR != 0 {
			in8(u, uartRBR)
		}
		assert.Equal(t, byte(iirFIFOsEnabled|iirNoInterrupt), in8(u, uartIIR))
		assert.False(t, irq.Level())
	}
}

func TestUARTReceiveBackpressure(t *testing.T) {
	u, _, _ := newTestUART()
	input := []byte("0123456789abcdefghij")

	// FIFOs off: one byte at a time.
	assert.Equal(t, 1, u.Receive(input))
	assert.Equal(t, 0, u.Receive(input[1:]))
	select {
	case <-u.Room():
		t.Fatal("no room was made")
	default:
	}
	assert.Equal(t, byte('0'), in8(u, uartRBR))
	<-u.Room()
	assert.Equal(t, byte(lsrTHRE|lsrTEMT), in8(u, uartLSR), "no overrun from the host side")

	// FIFOs on: sixteen.
	out8(u, uartFCR, fcrEnable)
	assert.Equal(t, 16, u.Receive(input[1:]))
	assert.Equal(t, 0, u.Receive(input[17:]))
	var got []byte
	for in8(u, uartLSR)&lsrDR != 0 {
		got = append(got, in8(u, uartRBR))
	}
	assert.Equal(t, input[1:17], got)
	assert.Equal(t, 3, u.Receive(input[17:]))

	// An empty RBR reads the last character again.
	for in8(u, uartLSR)&lsrDR != 0 {
		in8(u, uartRBR)
	}
	assert.Equal(t, byte('j'), in8(u, uartRBR))

	// Clearing the receive FIFO makes room and drops its content.
	u.Receive([]byte("zz"))
	out8(u, uartFCR, fcrEnable|fcrClearRx)
	assert.Zero(t, in8(u, uartLSR)&lsrDR)
	// Toggling FIFO enable clears too.
	u.Receive([]byte("zz"))
	out8(u, uartFCR, 0)
	assert.Zero(t, in8(u, uartLSR)&lsrDR)

	// In loopback the serial input is disconnected.
	out8(u, uartMCR, mcrLOOP)
	assert.Equal(t, 0, u.Receive([]byte("q")))
	out8(u, uartMCR, 0)
	assert.Equal(t, 1, u.Receive([]byte("q")))
}

func TestUARTLoopbackOverrunAndLineStatusInterrupt(t *testing.T) {
	u, out, irq := newTestUART()
	out8(u, uartFCR, fcrEnable)
	out8(u, uartIER, ierELSI|ierERBFI)
	out8(u, uartMCR, mcrLOOP|mcrOUT2)
	for i := range uartFIFOCapacity + 1 {
		out8(u, uartTHR, byte(i))
	}
	assert.Empty(t, out.String())
	assert.False(t, irq.Level(), "loopback forces OUT2 inactive: no IRQ")
	assert.Equal(t, byte(iirFIFOsEnabled|iirRxLineStatus), in8(u, uartIIR))
	assert.Equal(t, byte(lsrDR|lsrOE|lsrTHRE|lsrTEMT), in8(u, uartLSR))
	assert.Equal(t, byte(lsrDR|lsrTHRE|lsrTEMT), in8(u, uartLSR), "OE clears on read")
	assert.Equal(t, byte(iirFIFOsEnabled|iirRxData), in8(u, uartIIR))
	for i := range uartFIFOCapacity {
		assert.Equal(t, byte(i), in8(u, uartRBR), "the overrun character is lost, not the FIFO")
	}

	// 16450 mode: an overrun overwrites RBR.
	out8(u, uartFCR, 0)
	out8(u, uartTHR, 'a')
	out8(u, uartTHR, 'b')
	assert.Equal(t, byte(lsrDR|lsrOE|lsrTHRE|lsrTEMT), in8(u, uartLSR))
	assert.Equal(t, byte('b'), in8(u, uartRBR))

	// Leaving loopback brings the IRQ back.
	out8(u, uartIER, ierETBEI)
	out8(u, uartMCR, mcrOUT2)
	assert.True(t, irq.Level())
}

func TestUARTModemStatus(t *testing.T) {
	u, _, irq := newTestUART()
	out8(u, uartIER, ierEDSSI)
	out8(u, uartMCR, mcrOUT2)
	assert.False(t, irq.Level())

	// Loopback: the inputs follow the outputs; the change from the
	// external CTS/DSR/DCD sets the deltas.
	out8(u, uartMCR, mcrLOOP|mcrOUT1)
	assert.Equal(t, byte(iirModemStatus), in8(u, uartIIR))
	assert.Equal(t, byte(msrRI|msrDCTS|msrDDSR|msrDDCD), in8(u, uartMSR))
	assert.Equal(t, byte(msrRI), in8(u, uartMSR), "deltas clear on read")
	assert.Equal(t, byte(iirNoInterrupt), in8(u, uartIIR))

	// RI's delta is its trailing edge only.
	out8(u, uartMCR, mcrLOOP)
	assert.Equal(t, byte(msrTERI), in8(u, uartMSR))
	out8(u, uartMCR, mcrLOOP|mcrDTR|mcrRTS|mcrOUT2)
	assert.Equal(t, byte(msrCTS|msrDSR|msrDCD|msrDCTS|msrDDSR|msrDDCD), in8(u, uartMSR))

	// Back to normal: the host end is connected, nothing changed.
	out8(u, uartMCR, mcrOUT2)
	assert.Equal(t, byte(msrCTS|msrDSR|msrDCD), in8(u, uartMSR))
}

func TestUARTInterruptPriority(t *testing.T) {
	u, _, _ := newTestUART()
	out8(u, uartFCR, fcrEnable)
	out8(u, uartIER, ierMask)
	out8(u, uartMCR, mcrLOOP) // sets modem status deltas
	for range uartFIFOCapacity + 1 {
		out8(u, uartTHR, 'x') // data, overrun, THRE
	}
	assert.Equal(t, byte(iirFIFOsEnabled|iirRxLineStatus), in8(u, uartIIR))
	in8(u, uartLSR)
	assert.Equal(t, byte(iirFIFOsEnabled|iirRxData), in8(u, uartIIR))
	for in8(u, uartLSR)&lsrDR != 0 {
		in8(u, uartRBR)
	}
	assert.Equal(t, byte(iirFIFOsEnabled|iirTHRE), in8(u, uartIIR))
	assert.Equal(t, byte(iirFIFOsEnabled|iirModemStatus), in8(u, uartIIR))
	in8(u, uartMSR)
	assert.Equal(t, byte(iirFIFOsEnabled|iirNoInterrupt), in8(u, uartIIR))
}

func TestUARTMultiByteAccess(t *testing.T) {
	u, _, _ := newTestUART()
	u.WritePort(uartSCR, []byte{0x5A, 0x77})
	assert.Equal(t, byte(0x5A), in8(u, uartSCR))
	data := []byte{0, 0, 0, 0}
	u.ReadPort(uartMSR, data)
	assert.Equal(t, []byte{msrCTS | msrDSR | msrDCD, 0x5A, 0xFF, 0xFF}, data)
	// A 16-bit write at LCR writes LCR and MCR.
	u.WritePort(uartLCR, []byte{0x03, mcrDTR})
	assert.Equal(t, byte(0x03), in8(u, uartLCR))
	assert.Equal(t, byte(mcrDTR), in8(u, uartMCR))
}

func TestUARTConcurrentUse(t *testing.T) {
	u, out, _ := newTestUART()
	out8(u, uartFCR, fcrEnable)
	var wg sync.WaitGroup
	wg.Add(3)
	go func() {
		defer wg.Done()
		for range 1000 {
			out8(u, uartTHR, 'o')
		}
	}()
	go func() {
		defer wg.Done()
		for range 1000 {
			if in8(u, uartLSR)&lsrDR != 0 {
				in8(u, uartRBR)
			}
		}
	}()
	go func() {
		defer wg.Done()
		for range 1000 {
			u.Receive([]byte("in"))
		}
	}()
	wg.Wait()
	assert.Len(t, out.String(), 1000)
}

func TestUARTWriteErrorIsNotFatal(t *testing.T) {
	logs := captureLogs(t)
	u := NewUART(failingWriter{}, nil)
	out8(u, uartTHR, 'a')
	out8(u, uartTHR, 'b')
	assert.Len(t, logs.messages(), 1, "logged once")
	assert.Equal(t, byte(lsrTHRE|lsrTEMT), in8(u, uartLSR))
}

type failingWriter struct{}

func (failingWriter) Write([]byte) (int, error) { return 0, assert.AnError }
