package devices

import (
	"testing"

	"github.com/stretchr/testify/assert"
)

func TestResetControl(t *testing.T) {
	var power powerLog
	r := NewResetControl(power.handler())
	assert.Equal(t, byte(0x06), ResetControlValue, "the FADT RESET_VALUE Linux also writes")
	assert.Equal(t, byte(0), in8(r, 0))

	// arch/x86/kernel/reboot.c BOOT_CF9_FORCE: request a hard reset, then
	// set RST_CPU.
	cf9 := in8(r, 0) &^ ResetControlValue
	out8(r, 0, cf9|rstCntSysRst)
	assert.Empty(t, power.get())
	assert.Equal(t, byte(rstCntSysRst), in8(r, 0))
	out8(r, 0, cf9|ResetControlValue)
	assert.Equal(t, []powerCall{{Reset, "port 0xCF9 reset"}}, power.get())
	assert.Equal(t, byte(rstCntSysRst), in8(r, 0), "RST_CPU reads 0")

	// A cold reset (0x0E) and a soft one (0x04) are resets too.
	out8(r, 0, 0x0E)
	out8(r, 0, 0x04)
	assert.Len(t, power.get(), 3)

	// Wider accesses: only the low byte is the register.
	r.WritePort(0, []byte{0x00, 0x04, 0x04, 0x04})
	assert.Len(t, power.get(), 3)
	data := []byte{0, 0}
	r.ReadPort(0, data)
	assert.Equal(t, []byte{0x00, 0xFF}, data)

	NewResetControl(nil).WritePort(0, []byte{ResetControlValue}) // no handler: ignored
}
