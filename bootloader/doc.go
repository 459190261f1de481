// Package bootloader loads a Linux x86-64 kernel into guest memory the way a
// 64-bit boot loader does, following the Linux/x86 boot protocol
// (Linux Documentation/arch/x86/boot.rst, "64-bit Boot Protocol"):
//
//  1. parse the bzImage's setup header (setupheader.go),
//  2. copy the protected-mode kernel to 1 MiB, the command line and the
//     initrd into guest RAM (load.go),
//  3. fill in the "zero page", struct boot_params, including the E820 memory
//     map (bootparams.go, e820.go),
//  4. build a GDT and identity-mapping page tables so the vCPU can start
//     directly in 64-bit long mode (longmode.go).
//
// No real-mode or BIOS code ever runs: the vCPU begins at the kernel's 64-bit
// entry point (load address + 0x200) with RSI pointing at the zero page. The
// package does not talk to KVM; it returns a CPUState that the machine code
// applies to the boot vCPU with KVM_SET_SREGS and KVM_SET_REGS.
//
// The kernel image and the initrd are untrusted bytes supplied by the user:
// every field read from them is validated, and every guest write goes through
// the bounds-checked accessors of machine/memory.
//
// Guest-physical layout of what this package writes (all of it in the 640 KiB
// of conventional memory below the EBDA, except the kernel and the initrd):
//
//	[0x00000, 0x00500)  real-mode IVT and BIOS data area (left alone)
//	[0x00500, 0x00530)  GDTAddr: null, unused, __BOOT_CS, __BOOT_DS, TSS
//	[0x00600, 0x00668)  TSSAddr: the 64-bit TSS that TR refers to
//	[0x01000, 0x07000)  boot stack (BootStackBottom..BootStackTop, RSP at top)
//	[0x07000, 0x08000)  ZeroPageAddr: struct boot_params
//	[0x09000, 0x0f000)  PML4Addr, PDPTAddr, PDAddr: boot page tables
//	[0x20000, 0x30000)  CmdlineAddr: kernel command line, NUL-terminated
//	[0x9fc00, 0x100000) EBDA, VGA hole, BIOS area (ACPI and MP tables;
//	                    written by bootloader/acpi and bootloader/mptable)
//	0x100000            KernelLoadAddr: the protected-mode kernel
//	high in low RAM     the initrd, page aligned
package bootloader
