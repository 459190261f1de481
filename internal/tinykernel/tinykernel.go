// Package tinykernel builds the smallest "Linux kernels" govmm boots: a
// bzImage of a few hundred bytes whose setup header passes govmm's checks
// and whose 64-bit entry point runs a handful of hand-assembled
// instructions. The KVM smoke tests boot them, and docs/tour.md uses one
// (go run ./docs/tinykernel) so that the real `govmm boot --kernel` path —
// setup header, zero page, command line, boot page tables and GDT, 64-bit
// entry with RSI pointing at boot_params — can be followed on any
// /dev/kvm, including a software KVM that cannot boot Linux.
package tinykernel

import "encoding/binary"

// Header fields, from Linux Documentation/arch/x86/boot.rst, "The Real-Mode
// Kernel Header" (file offsets; the zero page has the same layout).
const (
	sectorSize  = 512
	setupSects  = 1      // 0x1f1: one setup sector after the boot sector
	entry64Off  = 0x200  // "64-bit Boot Protocol": entry = load address + 0x200
	version     = 0x020F // 0x206: boot protocol 2.15
	loadedHigh  = 0x01   // 0x211 loadflags: LOADED_HIGH, a bzImage
	xlfKernel64 = 0x01   // 0x236 xloadflags: XLF_KERNEL_64, has the 64-bit entry
	paragraph   = 16     // syssize counts 16-byte paragraphs
)

// BzImage builds a bzImage around code64: a boot sector holding the setup
// header, one (empty) setup sector, and the protected-mode part, which the
// loader copies to 1 MiB; code64 sits at its 64-bit entry point, 0x200
// bytes in.
func BzImage(code64 []byte) []byte {
	payload := make([]byte, entry64Off+len(code64))
	copy(payload[entry64Off:], code64)
	for len(payload)%paragraph != 0 {
		payload = append(payload, 0)
	}
	img := make([]byte, (setupSects+1)*sectorSize, (setupSects+1)*sectorSize+len(payload))
	le := binary.LittleEndian
	img[0x1F1] = setupSects
	le.PutUint32(img[0x1F4:], uint32(len(payload)/paragraph)) // syssize
	le.PutUint16(img[0x1FE:], 0xAA55)                         // boot_flag
	img[0x200], img[0x201] = 0xEB, 0x66                       // jmp over the header; 0x202+0x66 is its end
	copy(img[0x202:], "HdrS")                                 // header magic
	le.PutUint16(img[0x206:], version)
	img[0x211] = loadedHigh
	le.PutUint32(img[0x22C:], 0x7FFFFFFF) // initrd_addr_max
	le.PutUint32(img[0x230:], 0x200000)   // kernel_alignment
	img[0x234] = 1                        // relocatable_kernel
	le.PutUint16(img[0x236:], xlfKernel64)
	le.PutUint32(img[0x238:], 2048)      // cmdline_size
	le.PutUint64(img[0x258:], 0x1000000) // pref_address
	le.PutUint32(img[0x260:], 0x100000)  // init_size
	return append(img, payload...)
}

// PrintCmdlineAndPowerOff is 64-bit code for BzImage. It runs in long mode
// on govmm's boot page tables with RSI = the address of struct boot_params
// (boot.rst, "64-bit Boot Protocol"), prints the NUL-terminated string at
// cmd_line_ptr (boot_params offset 0x228) on COM1, one OUT per byte, and
// powers off through ACPI: SLP_TYP=5 | SLP_EN written to PM1a_CNT (ACPI 6.5
// §4.8.3.2.1, PM1 Control Registers; govmm's FADT puts PM1a_CNT at port
// 0x604).
var PrintCmdlineAndPowerOff = []byte{
	0x8B, 0x86, 0x28, 0x02, 0x00, 0x00, //       mov eax, [rsi+0x228]  ; cmd_line_ptr
	0x48, 0x89, 0xC3, //                         mov rbx, rax
	0x66, 0xBA, 0xF8, 0x03, //                   mov dx, 0x3f8         ; COM1 THR
	0x8A, 0x03, //                         loop: mov al, [rbx]
	0x84, 0xC0, //                               test al, al
	0x74, 0x06, //                               jz done
	0xEE,             //                         out dx, al            ; KVM_EXIT_IO
	0x48, 0xFF, 0xC3, //                         inc rbx
	0xEB, 0xF4, //                               jmp loop
	0xB0, 0x0D, 0xEE, //                   done: mov al, 13; out dx, al
	0xB0, 0x0A, 0xEE, //                         mov al, 10; out dx, al
	0x66, 0xBA, 0x04, 0x06, //                   mov dx, 0x604         ; PM1a_CNT
	0x66, 0xB8, 0x00, 0x34, //                   mov ax, 5<<10 | 1<<13 ; SLP_TYP=5, SLP_EN
	0x66, 0xEF, //                               out dx, ax            ; power off
	0xF4, //                                     hlt
}
