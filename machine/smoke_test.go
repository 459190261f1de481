package machine

import (
	"fmt"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/govmm/govmm/devices/devicetest"
	"github.com/govmm/govmm/internal/tinykernel"
	"github.com/govmm/govmm/kvm"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// These KVM smoke tests run tiny hand-assembled guests on the local
// /dev/kvm. A few thousand instructions each, they run even on a software
// KVM such as kvm_pvm, which emulates guest kernel mode slowly.

// smokeTimeout bounds a smoke test guest; they finish in well under a second.
const smokeTimeout = 60 * time.Second

func needKVM(t *testing.T) {
	t.Helper()
	if _, err := os.Stat(kvm.DevicePath); err != nil {
		t.Skipf("KVM smoke test needs %s: %v", kvm.DevicePath, err)
	}
}

// runGuest builds and runs a machine, failing the test if it does not end
// within smokeTimeout.
func runGuest(t *testing.T, cfg Config) (Result, string) {
	t.Helper()
	needKVM(t)
	var out devicetest.Buffer
	cfg.Console = &out
	if cfg.MemSize == 0 {
		cfg.MemSize = 64 << 20
	}
	if cfg.CPUs == 0 {
		cfg.CPUs = 1
	}
	m, err := New(cfg)
	require.NoError(t, err)
	defer m.Close()
	done := make(chan Result, 1)
	go func() { done <- m.Run() }()
	select {
	case r := <-done:
		return r, out.String()
	case <-time.After(smokeTimeout):
		m.Stop("test timeout")
		<-done
		t.Fatalf("guest did not finish within %v; console so far: %q", smokeTimeout, out.String())
	}
	return Result{}, ""
}

// realModeUARTPITReset is a real-mode program: it prints "HI" on COM1,
// runs PIT channel 2 in mode 0 (the way Linux calibrates the TSC) and waits
// for its OUT pin on port 0x61 bit 5, prints "P", then resets the machine
// through the keyboard controller.
var realModeUARTPITReset = []byte{
	0xBA, 0xF8, 0x03, //       mov dx, 0x3f8       ; COM1 THR
	0xB0, 'H', //              mov al, 'H'
	0xEE,      //             out dx, al
	0xB0, 'I', //              mov al, 'I'
	0xEE,       //             out dx, al
	0xE4, 0x61, //             in al, 0x61          ; port B
	0x24, 0xFC, //             and al, 0xFC         ; speaker off
	0x0C, 0x01, //             or al, 0x01          ; channel 2 gate on
	0xE6, 0x61, //             out 0x61, al
	0xB0, 0xB0, //             mov al, 0xB0         ; ch 2, lo/hi byte, mode 0
	0xE6, 0x43, //             out 0x43, al
	0xB0, 0x00, //             mov al, 0x00         ; count 0x0100: ~215 us
	0xE6, 0x42, //             out 0x42, al
	0xB0, 0x01, //             mov al, 0x01
	0xE6, 0x42, //             out 0x42, al
	0xE4, 0x61, // wait:       in al, 0x61
	0xA8, 0x20, //             test al, 0x20        ; OUT2 high yet?
	0x74, 0xFA, //             jz wait
	0xB0, 'P', //              mov al, 'P'
	0xEE,       //             out dx, al
	0xB0, 0xFE, //             mov al, 0xFE         ; pulse the reset line
	0xE6, 0x64, //             out 0x64, al
	0xF4, //                   hlt
}

func TestSmokeRealModeUARTPITReset(t *testing.T) {
	r, out := runGuest(t, Config{Kernel: realModeUARTPITReset, RealMode: true})
	require.NoError(t, r.Err)
	assert.Equal(t, Reset, r.Reason)
	assert.Contains(t, r.Detail, "i8042")
	assert.Equal(t, "HIP", out)
}

// TestSmokeHaltWithInterruptsOff: "cli; hlt" can never resume, which the
// halt watchdog must notice.
func TestSmokeHaltWithInterruptsOff(t *testing.T) {
	r, out := runGuest(t, Config{Kernel: []byte{
		0xBA, 0xF8, 0x03, // mov dx, 0x3f8
		0xB0, '!', //        mov al, '!'
		0xEE,       //             out dx, al
		0xFA,       //             cli
		0xF4,       //             hlt
		0xEB, 0xFD, //       jmp $-1 (back to hlt)
	}, RealMode: true})
	require.NoError(t, r.Err)
	assert.Equal(t, Halted, r.Reason)
	assert.Equal(t, "!", out)
}

// TestSmokeTripleFault: with an empty IDT the first exception cannot be
// delivered, nor can the #DF that follows, so the CPU shuts down: a triple
// fault, which a PC turns into a reset (Intel SDM Vol. 3A §6.15, interrupt
// 8). Linux's reboot=t uses exactly this.
func TestSmokeTripleFault(t *testing.T) {
	r, _ := runGuest(t, Config{Kernel: bzImage([]byte{
		0x0F, 0x01, 0x1D, 0x03, 0x00, 0x00, 0x00, // lidt [rip+3]  ; the zeros below
		0x0F, 0x0B, //                               ud2            ; #UD → #DF → shutdown
		0xF4,                         //                                     hlt
		0, 0, 0, 0, 0, 0, 0, 0, 0, 0, //             IDTR: limit 0, base 0
	})})
	require.NoError(t, r.Err)
	assert.Equal(t, Reset, r.Reason)
	assert.Contains(t, r.Detail, "triple fault")
}

// TestSmokeStop: a spinning guest stops on request, and Run returns.
func TestSmokeStop(t *testing.T) {
	needKVM(t)
	m, err := New(Config{Kernel: []byte{0xEB, 0xFE}, RealMode: true, MemSize: 64 << 20, CPUs: 2})
	require.NoError(t, err)
	defer m.Close()
	done := make(chan Result, 1)
	go func() { done <- m.Run() }()
	time.Sleep(100 * time.Millisecond)
	m.Stop("test")
	select {
	case r := <-done:
		assert.Equal(t, Stopped, r.Reason)
	case <-time.After(smokeTimeout):
		t.Fatal("Stop did not end Run")
	}
}

// bzImage and printCmdlineAndPowerOff are the tiny kernel of
// internal/tinykernel.
var (
	bzImage                 = tinykernel.BzImage
	printCmdlineAndPowerOff = tinykernel.PrintCmdlineAndPowerOff
)

// TestSmokeLongModeBoot checks the whole 64-bit boot path on a tiny
// kernel: long mode with govmm's page tables and GDT, RSI → boot_params,
// the command line, and ACPI S5 power-off.
func TestSmokeLongModeBoot(t *testing.T) {
	r, out := runGuest(t, Config{Kernel: bzImage(printCmdlineAndPowerOff), Cmdline: "hello from the zero page"})
	require.NoError(t, r.Err)
	assert.Equal(t, PowerOff, r.Reason)
	assert.Equal(t, "ACPI S5", r.Detail)
	assert.Equal(t, "hello from the zero page\r\n", out)
}

// TestSmokeLongModeBootAboveHole boots the same tiny kernel with RAM above
// the 32-bit MMIO hole, so there are two memory slots.
func TestSmokeLongModeBootAboveHole(t *testing.T) {
	r, out := runGuest(t, Config{Kernel: bzImage(printCmdlineAndPowerOff), Cmdline: "x", MemSize: 4 << 30, CPUs: 4})
	require.NoError(t, r.Err)
	assert.Equal(t, PowerOff, r.Reason)
	assert.Equal(t, "x\r\n", out)
}

func TestConfigValidation(t *testing.T) {
	ok := Config{Kernel: bzImage(nil), MemSize: 64 << 20, CPUs: 1}
	require.NoError(t, ValidateConfig(&ok))
	for name, mutate := range map[string]func(*Config){
		"zero CPUs":      func(c *Config) { c.CPUs = 0 },
		"65 CPUs":        func(c *Config) { c.CPUs = 65 },
		"too little RAM": func(c *Config) { c.MemSize = 16 << 20 },
		"unaligned RAM":  func(c *Config) { c.MemSize = 64<<20 + 1 },
		"no kernel":      func(c *Config) { c.Kernel = nil },
		"not a bzImage":  func(c *Config) { c.Kernel = make([]byte, 8192) },
		"huge real mode": func(c *Config) { c.RealMode = true; c.Kernel = make([]byte, 1<<20) },
	} {
		c := ok
		mutate(&c)
		assert.Error(t, ValidateConfig(&c), name)
	}
}

// realModeEcho echoes COM1 input back to COM1, polling LSR.DR, until it
// reads 'q'; then it resets the machine through the i8042.
var realModeEcho = []byte{
	0xBA, 0xFD, 0x03, // start: mov dx, 0x3fd   ; LSR
	0xEC,       // wait:  in al, dx
	0xA8, 0x01, //              test al, 1      ; DR: a byte is waiting
	0x74, 0xFB, //              jz wait
	0xBA, 0xF8, 0x03, //        mov dx, 0x3f8   ; RBR/THR
	0xEC,      //              in al, dx
	0xEE,      //              out dx, al
	0x3C, 'q', //               cmp al, 'q'
	0x75, 0xEF, //              jne start
	0xB0, 0xFE, //              mov al, 0xFE
	0xE6, 0x64, //              out 0x64, al    ; reset
	0xF4, //                    hlt
}

// TestSmokeStdinReachesTheUART feeds the guest's serial input from a pipe,
// as when govmm runs under CI with stdin redirected.
func TestSmokeStdinReachesTheUART(t *testing.T) {
	r, w, err := os.Pipe()
	require.NoError(t, err)
	defer r.Close()
	input := "hello, guest\nq"
	go func() {
		w.WriteString(input)
		w.Close()
	}()
	res, out := runGuest(t, Config{Kernel: realModeEcho, RealMode: true, Stdin: r})
	require.NoError(t, res.Err)
	assert.Equal(t, Reset, res.Reason)
	assert.Equal(t, input, out)
}

// TestSmokeSixtyFourVCPUs builds the largest machine govmm supports; the
// application processors wait for INIT/SIPI, which this guest never sends.
func TestSmokeSixtyFourVCPUs(t *testing.T) {
	res, out := runGuest(t, Config{Kernel: realModeUARTPITReset, RealMode: true, CPUs: MaxCPUs})
	require.NoError(t, res.Err)
	assert.Equal(t, Reset, res.Reason)
	assert.Equal(t, "HIP", out)
}

// TestSmokeCoalescedResetRegister: port 0xCF9 lies in the coalesced
// CONFIG_ADDRESS zone, so its write does not exit. The reset must still
// happen: here the guest halts for good right after, and the write is
// replayed when the halt watchdog kicks the vCPU.
func TestSmokeCoalescedResetRegister(t *testing.T) {
	r, _ := runGuest(t, Config{Kernel: []byte{
		0xBA, 0xF9, 0x0C, // mov dx, 0xcf9
		0xB0, 0x06, //       mov al, 6        ; SYS_RST | RST_CPU
		0xEE, //             out dx, al
		0xFA, //             cli
		0xF4, //             hlt
	}, RealMode: true})
	require.NoError(t, r.Err)
	assert.Equal(t, Reset, r.Reason)
	assert.Contains(t, r.Detail, "0xCF9")
}

// TestNewFailsCleanlyLate: an error in the last step of New (here an
// initrd larger than RAM) is returned, with everything before released.
func TestNewFailsCleanlyLate(t *testing.T) {
	needKVM(t)
	m, err := New(Config{
		Kernel:  bzImage([]byte{0xF4}),
		Initrd:  make([]byte, 80<<20),
		MemSize: 64 << 20,
		CPUs:    1,
	})
	assert.Nil(t, m)
	assert.ErrorContains(t, err, "initrd")
}

// TestSmokeInspectVCPUs: a machine whose boot CPU spins in "cli; jmp $"
// and whose second CPU was never started describes both: the boot CPU
// runnable at the loop with interrupts off, the other still waiting for
// INIT, each with its registers and local APIC.
func TestSmokeInspectVCPUs(t *testing.T) {
	needKVM(t)
	m, err := New(Config{Kernel: []byte{
		0xFA,       // cli
		0xEB, 0xFE, // jmp $
	}, RealMode: true, MemSize: 64 << 20, CPUs: 2})
	require.NoError(t, err)
	defer m.Close()
	done := make(chan Result, 1)
	go func() { done <- m.Run() }()
	defer func() {
		m.Stop("test")
		<-done
	}()
	// Wait until the boot CPU is in its loop, one byte past the load address.
	loop := fmt.Sprintf("RIP=%016x", RealModeLoadAddr+1)
	var out string
	for deadline := time.Now().Add(smokeTimeout); time.Now().Before(deadline); time.Sleep(10 * time.Millisecond) {
		var b strings.Builder
		m.InspectVCPUs(&b, smokeTimeout)
		if out = b.String(); strings.Contains(out, loop) {
			break
		}
	}
	t.Log(out)
	assert.Contains(t, out, "vCPU 0: runnable, interrupts disabled\n  "+loop)
	assert.Contains(t, out, "vCPU 1: uninitialized, interrupts")
	assert.Equal(t, 2, strings.Count(out, "  local APIC: TPR=00 in service [], requested []\n"), "both local APICs idle")
	assert.NotContains(t, out, "no answer")
}
