# hello.S - lesson 1: "hello" from real mode over the serial port.
#
# The smallest useful guest: 16-bit code that govmm loads at 0000:7C00,
# the address where a PC BIOS has always loaded and started a boot
# sector. It sends a greeting out of the first serial port (COM1, a 16550A
# UART) by polling the Line Status Register, exactly as a BIOS or a boot
# loader does, and then switches the machine off through ACPI.
#
# Build and run (see README.md; package lessons does the same):
#
#   as --64 -o hello.o hello.S
#   ld -m elf_x86_64 -T ../lesson.ld -o hello.bin hello.o
#   govmm boot --raw --kernel hello.bin
#
# Syntax: GNU as in Intel syntax (".intel_syntax noprefix"): destination
# first, as in the Intel SDM's instruction reference, so every line reads
# like the manual it cites. Comments start with '#'. The file is plain GNU
# as input: assemble it with as directly, not through the C preprocessor.
#
# Sources: Intel 64 and IA-32 Architectures Software Developer's Manual
# ("SDM"); the National Semiconductor / TI PC16550D UART datasheet (register
# names RBR, THR, IER, IIR, FCR, LCR, MCR, LSR, MSR, DLL, DLM); the IBM PC AT
# Technical Reference (I/O address map: COM1 at 3F8h, the 8042 at 60h/64h);
# the ACPI 6.5 specification (Table 4.13, the PM1 control register bits;
# the \_S5 object of "\_Sx (System States)").

.intel_syntax noprefix

# --- Hardware constants -------------------------------------------------

# COM1, the first serial port, decodes the eight I/O ports 3F8h-3FFh (PC AT
# Technical Reference, I/O address map). The 16550 register that answers at
# each offset (PC16550D datasheet, "Register Addresses"):
.equ COM1,      0x3F8
.equ THR,       0       # Transmitter Holding Register (write; RBR on read)
.equ DLL,       0       # Divisor Latch LSB (while LCR.DLAB = 1)
.equ IER,       1       # Interrupt Enable Register
.equ DLM,       1       # Divisor Latch MSB (while LCR.DLAB = 1)
.equ LCR,       3       # Line Control Register
.equ LSR,       5       # Line Status Register

.equ LCR_DLAB,  0x80    # bit 7: Divisor Latch Access Bit
.equ LCR_8N1,   0x03    # bits 1:0 = 11b: 8 data bits; bit 2 = 0: 1 stop bit; no parity
.equ LSR_THRE,  0x20    # bit 5: Transmitter Holding Register Empty

# ACPI fixed hardware: PM1a_CNT, the PM1a control register. govmm's FADT
# (and machine/platform.go) put it at I/O port 604h. Writing SLP_TYPx
# (bits 12:10) together with SLP_EN (bit 13) puts the machine in that sleep
# state (ACPI 6.5, Table 4.13); govmm's DSDT \_S5 object says that
# S5, "soft off", is SLP_TYP 5.
.equ PM1A_CNT,  0x604
.equ SLP_TYP_S5, 5 << 10
.equ SLP_EN,    1 << 13

# The 8042 keyboard controller's command port (PC AT Technical Reference):
# command FEh pulses output port bit 0, which is wired to the CPU's RESET
# line. It is how PCs without ACPI reboot, and Linux's "reboot=k".
.equ KBC_CMD,   0x64
.equ KBC_PULSE_RESET, 0xFE

# --- Code ---------------------------------------------------------------

# After reset an x86 CPU runs in real-address mode: 16-bit code, segment:
# offset addresses (linear = segment * 16 + offset), no protection, no
# paging (SDM Vol. 3A §21.1 "Real-Address Mode"; the register state is in
# §10.1.1's table "IA-32 and Intel 64 Processor States Following Power-up,
# Reset, or INIT"). ".code16" tells the assembler to encode for it.
.code16
.section .text
.globl start
start:
    # govmm enters with CS:IP = 0000:7C00 and SP = 7C00h (machine/
    # realmode.go); a BIOS might have used 07C0:0000 instead, so a careful
    # boot sector sets every segment register itself. CLI first: with no
    # interrupt handlers of our own, we want no interrupts.
    cli
    xor ax, ax
    mov ds, ax
    mov es, ax
    mov ss, ax              # MOV to SS blocks interrupts for one instruction,
    mov sp, 0x7C00          # so SS:SP is never half-changed (SDM Vol. 2B, MOV)
    cld                     # LODSB walks forwards (EFLAGS.DF = 0)

    call uart_init

    mov si, offset greeting
    call puts
    mov si, offset goodbye
    call puts

    # Power off: one 16-bit OUT of SLP_TYP=5 | SLP_EN to PM1a_CNT. The OUT
    # makes the CPU leave the guest (SDM Vol. 3C, "Instructions That Cause
    # VM Exits Conditionally"), KVM hands it to govmm as KVM_EXIT_IO (port
    # 604h, write, 2 bytes), and govmm's ACPI PM device (devices/pm.go)
    # sees SLP_EN with the S5 type and ends the run: Result "power off",
    # detail "ACPI S5", and `govmm boot` exits with status 0.
    mov dx, PM1A_CNT
    mov ax, SLP_TYP_S5 | SLP_EN
    out dx, ax

    # Only reached on a machine without ACPI PM1a at 604h. The 8042 reset
    # is another KVM_EXIT_IO (port 64h, value FEh), which govmm's i8042
    # (devices/i8042.go) turns into Result "reset": a reboot also ends a
    # govmm run, with status 0.
    mov si, offset no_acpi
    call puts
    mov al, KBC_PULSE_RESET
    out KBC_CMD, al

    # Still here? Stop for good: with interrupts off, HLT never resumes.
    # KVM keeps a halted vCPU inside the kernel (the in-kernel irqchip
    # handles HLT), and govmm's halt watchdog ends the run as "halted".
halt:
    cli
    hlt
    jmp halt

# uart_init programs COM1 for 115200 baud, 8 data bits, no parity, one stop
# bit (8N1), no interrupts: what a BIOS leaves behind. The 16550 divides its
# 1.8432 MHz clock by 16 and by the divisor latch, so divisor 1 is
# 1843200 / 16 = 115200 baud (16550D datasheet, "Programmable Baud
# Generator"). govmm's UART is virtual and does not care about the speed,
# but a real 16550 does, and the registers are worth knowing. Each OUT is
# one KVM_EXIT_IO handled by devices/uart.go.
uart_init:
    mov dx, COM1 + LCR
    mov al, LCR_DLAB        # DLAB = 1: offsets 0 and 1 now reach the divisor
    out dx, al
    mov dx, COM1 + DLL
    mov al, 1               # divisor = 0001h
    out dx, al
    mov dx, COM1 + DLM
    xor al, al
    out dx, al
    mov dx, COM1 + LCR
    mov al, LCR_8N1         # DLAB = 0 again, 8N1
    out dx, al
    mov dx, COM1 + IER
    xor al, al              # no UART interrupts: this guest polls
    out dx, al
    ret

# putc sends the byte in AL. A 16550 accepts a byte in THR only when
# LSR.THRE says the holding register is empty; a real one at 115200 baud
# takes about 87 microseconds per byte, so a driver that polls must wait
# (16550D datasheet, LSR bit 5). govmm's transmitter is never busy, so the
# loop runs once: one KVM_EXIT_IO for the IN from LSR and one for the OUT
# to THR, two exits per character.
putc:
    push dx
    push ax
    mov dx, COM1 + LSR
1:  in al, dx
    test al, LSR_THRE
    jz 1b
    pop ax
    mov dx, COM1 + THR
    out dx, al
    pop dx
    ret

# puts sends the NUL-terminated string at DS:SI. LODSB loads AL from DS:SI
# and advances SI (SDM Vol. 2A, LODS).
puts:
    lodsb
    test al, al
    jz 1f
    call putc
    jmp puts
1:  ret

# --- Data ---------------------------------------------------------------

# A serial terminal wants CR LF at the end of each line.
greeting:
    .asciz "Hello from a real-mode guest at 0000:7C00!\r\n"
goodbye:
    .asciz "Powering off through ACPI: SLP_TYP=5|SLP_EN to PM1a_CNT (port 0x604).\r\n"
no_acpi:
    .asciz "Still running: no ACPI here. Resetting through the 8042.\r\n"
