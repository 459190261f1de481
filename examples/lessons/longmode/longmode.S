# longmode.S - lesson 2: from real mode to protected mode to long mode.
#
# Every x86-64 operating system starts where lesson 1 ran, in 16-bit real
# mode, and climbs to 64-bit long mode in two steps, each of which the Intel
# SDM describes as a recipe:
#
#   real mode --(GDT, CR0.PE, far jump)--> 32-bit protected mode
#     SDM Vol. 3A §10.9.1 "Switching to Protected Mode"
#   protected mode --(CR4.PAE, CR3, EFER.LME, CR0.PG, far jump)--> long mode
#     SDM Vol. 3A §10.8.5 "Initializing IA-32e Mode"
#
# (Section numbers are those of recent SDM editions, as elsewhere in govmm;
# older editions number the same sections §9.9.1 and §9.8.5.)
#
# The guest prints one line from each mode over COM1, and each line shows
# a control bit that the CPU itself reports, read back after the switch:
# if a switch fails the CPU faults, and with no IDT the fault becomes a
# triple fault, which govmm reports as a reset.
#
# Build: as --64 -o longmode.o longmode.S
#        ld -m elf_x86_64 -T ../lesson.ld -o longmode.bin longmode.o
# Run:   govmm boot --raw --kernel longmode.bin
#
# GNU as, Intel syntax (destination first, as in the SDM). Plain as input:
# do not run it through the C preprocessor.

.intel_syntax noprefix

# --- Hardware constants -------------------------------------------------

# COM1 16550 registers (PC16550D datasheet) and PM1a_CNT for the
# ACPI S5 power off, as in lesson 1 (hello.S explains them).
.equ COM1,      0x3F8
.equ THR,       0
.equ DLL,       0
.equ IER,       1
.equ DLM,       1
.equ LCR,       3
.equ LSR,       5
.equ LCR_DLAB,  0x80
.equ LCR_8N1,   0x03
.equ LSR_THRE,  0x20
.equ PM1A_CNT,  0x604
.equ S5_SLEEP,  (5 << 10) | (1 << 13)   # SLP_TYP = 5 (S5), SLP_EN

# Control register bits (SDM Vol. 3A §2.5 "Control Registers", Figure 2-7).
.equ CR0_PE,    1 << 0      # Protection Enable: segments come from descriptors
.equ CR0_PG,    1 << 31     # Paging
.equ CR4_PAE,   1 << 5      # Physical Address Extension: 64-bit page-table entries

# IA32_EFER, the extended feature enable MSR (SDM Vol. 3A §2.2.1
# "Extended Feature Enable Register"; its address C000_0080h is in SDM
# Vol. 4's table "IA-32 Architectural MSRs").
.equ MSR_EFER,  0xC0000080
.equ EFER_LME,  1 << 8      # Long Mode Enable: written by software
.equ EFER_LMA,  1 << 10     # Long Mode Active: set by the CPU when CR0.PG = 1

# Page-table entry bits (SDM Vol. 3A §4.5 "4-Level Paging and 5-Level
# Paging", the tables "Format of a PML4 Entry", "... of a Page-Directory-
# Pointer-Table Entry that References a Page Directory" and "... of a
# Page-Directory Entry that Maps a 2-MByte Page").
.equ PTE_P,     1 << 0      # Present
.equ PTE_RW,    1 << 1      # Read/write
.equ PTE_PS,    1 << 7      # Page Size: this PDE maps a 2 MiB page itself

# Where the page tables go: three 4 KiB-aligned pages of free
# conventional memory, below the image at 7C00h.
.equ PML4_ADDR, 0x1000
.equ PDPT_ADDR, 0x2000
.equ PD_ADDR,   0x3000

# Segment selectors: index into the GDT * 8, table indicator 0 (GDT),
# requested privilege level 0 (SDM Vol. 3A §3.4.2, Figure 3-6).
.equ CODE32_SEL, 0x08
.equ DATA_SEL,   0x10
.equ CODE64_SEL, 0x18

# --- The UART routines, once per code size ------------------------------

# putc sends AL on COM1 once LSR.THRE says THR is empty; puts sends the
# NUL-terminated string at SI (ESI, RSI: LODSB uses the current mode's
# address size). The same source assembles differently in each mode: in
# 16-bit code "mov dx, 0x3FD" is BA FD 03, in 32-bit and 64-bit code it
# needs the 66h operand-size prefix (SDM Vol. 2A §2.1.1 "Instruction
# Prefixes"). So the
# macro is expanded three times, after .code16, .code32 and .code64.
.macro UART_ROUTINES bits
putc\bits:
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
puts\bits:
    lodsb
    test al, al
    jz 2f
    call putc\bits
    jmp puts\bits
2:  ret
.endm

# ========================================================================
# Stage 1: 16-bit real mode.
# ========================================================================
.code16
.section .text
.globl start
start:
    cli                     # no IDT for what follows: no interrupts at all
    xor ax, ax
    mov ds, ax
    mov es, ax
    mov ss, ax
    mov sp, 0x7C00
    cld

    # COM1: 115200 baud 8N1, no interrupts (see hello.S).
    mov dx, COM1 + LCR
    mov al, LCR_DLAB
    out dx, al
    mov dx, COM1 + DLL
    mov al, 1
    out dx, al
    mov dx, COM1 + DLM
    xor al, al
    out dx, al
    mov dx, COM1 + LCR
    mov al, LCR_8N1
    out dx, al
    mov dx, COM1 + IER
    xor al, al
    out dx, al

    # MOV from CR0 works in real mode (CPL is 0). Bit 0, PE, is clear:
    # this is what "real mode" means.
    mov si, offset msg_real
    call puts16
    mov eax, cr0
    and al, CR0_PE
    add al, '0'
    call putc16
    mov si, offset crlf
    call puts16

    # --- Real mode -> protected mode (SDM Vol. 3A §10.9.1) ---
    # 1. Interrupts are already off (CLI above): the real-mode IVT means
    #    nothing once PE is set, and there is no IDT yet.
    # 2. LGDT loads GDTR with the 6-byte pseudo-descriptor below: the GDT's
    #    limit (size - 1) and linear base address (SDM Vol. 3A §3.5.1).
    lgdt [gdt_pointer]
    # 3. Set CR0.PE. From the next instruction on the CPU is in protected
    #    mode, but CS still holds the real-mode segment it had: the segment
    #    registers' hidden parts (base, limit, attributes) change only when
    #    a segment register is loaded (SDM Vol. 3A §3.4.3).
    mov eax, cr0
    or eax, CR0_PE
    mov cr0, eax
    # 4. "Immediately following the MOV CR0 instruction", a far JMP loads CS
    #    from the GDT, here the 32-bit code descriptor, and discards any
    #    instructions the CPU had already fetched and decoded as 16-bit code.
    jmp CODE32_SEL:protected_mode

# ========================================================================
# Stage 2: 32-bit protected mode, paging off.
# ========================================================================
.code32
protected_mode:
    # 5. Load the data segment registers and SS with the flat data
    #    descriptor: base 0, limit 4 GiB, so linear address = offset.
    mov ax, DATA_SEL
    mov ds, ax
    mov es, ax
    mov fs, ax
    mov gs, ax
    mov ss, ax
    mov esp, 0x7C00

    mov esi, offset msg_protected
    call puts32
    mov eax, cr0
    and al, CR0_PE
    add al, '0'
    call putc32
    mov esi, offset crlf
    call puts32

    # --- Page tables (SDM Vol. 3A §4.5 "4-Level Paging and 5-Level Paging") ---
    # A 64-bit linear address is split into 9-bit indexes into the PML4,
    # the page-directory-pointer table (PDPT) and the page directory (PD),
    # then a 21-bit offset when the PD entry maps a 2 MiB page (PS = 1).
    # Each table is a 4 KiB-aligned page of 512 eight-byte entries; an
    # entry holds the physical address of the next level (or of the page)
    # and flags in its low bits. Entry 0 of each level maps linear 0..2 MiB
    # to physical 0..2 MiB: an identity map covering this code, its stack
    # and the tables themselves. First clear the three pages: REP STOSD
    # stores EAX at ES:EDI, ECX times (SDM Vol. 2B, STOS).
    mov edi, PML4_ADDR
    xor eax, eax
    mov ecx, 3 * 4096 / 4
    rep stosd
    # Then one entry per level; the upper halves stay 0 (addresses < 4 GiB).
    mov dword ptr [PML4_ADDR], PDPT_ADDR | PTE_P | PTE_RW
    mov dword ptr [PDPT_ADDR], PD_ADDR | PTE_P | PTE_RW
    mov dword ptr [PD_ADDR], 0 | PTE_P | PTE_RW | PTE_PS    # 2 MiB page at 0

    # --- Protected mode -> IA-32e (long) mode (SDM Vol. 3A §10.8.5) ---
    # 1. Paging must be off: it is (CR0.PG was never set).
    # 2. Set CR4.PAE: long mode translates with 64-bit entries.
    mov eax, cr4
    or eax, CR4_PAE
    mov cr4, eax
    # 3. Load CR3 with the physical address of the top-level table, the
    #    PML4.
    mov eax, PML4_ADDR
    mov cr3, eax
    # 4. Set IA32_EFER.LME with RDMSR/WRMSR: ECX selects the MSR, EDX:EAX
    #    holds its value (SDM Vol. 2B, RDMSR and WRMSR). Under KVM the WRMSR
    #    is an exit that the kernel handles itself; govmm never sees it.
    mov ecx, MSR_EFER
    rdmsr
    or eax, EFER_LME
    wrmsr
    # 5. Set CR0.PG. With LME set, enabling paging activates long mode: the
    #    CPU sets EFER.LMA and runs in compatibility mode, still using this
    #    32-bit code segment. This instruction and the next must be in an
    #    identity-mapped page, because the next one is fetched through the
    #    new page tables (ours identity-map the first 2 MiB).
    mov eax, cr0
    or eax, CR0_PG
    mov cr0, eax
    # 6. A far JMP to a code segment whose descriptor has L = 1 enters
    #    64-bit mode proper.
    jmp CODE64_SEL:long_mode

# ========================================================================
# Stage 3: 64-bit long mode.
# ========================================================================
.code64
long_mode:
    # In 64-bit mode CS, DS, ES and SS bases are treated as 0 and limits are
    # not checked (SDM Vol. 3A §3.2.4); the data selectors loaded in
    # protected mode stay valid. The upper halves of the registers are not
    # defined by the switch, so set the whole of RSP.
    mov rsp, 0x7C00

    mov esi, offset msg_long    # writing ESI zero-extends into RSI
    call puts64
    mov ecx, MSR_EFER
    rdmsr                       # EDX:EAX = EFER
    shl rdx, 32
    or rax, rdx
    call print_hex64
    mov esi, offset msg_efer
    call puts64

    mov esi, offset msg_done
    call puts64
    mov dx, PM1A_CNT            # ACPI S5: KVM_EXIT_IO, govmm powers off
    mov ax, S5_SLEEP
    out dx, ax
1:  cli
    hlt
    jmp 1b

# print_hex64 prints RAX as "0x" and 16 hexadecimal digits: the first
# thing in this guest that needs 64-bit registers. ROL by 4 brings each
# nibble to the bottom, most significant first.
print_hex64:
    push rcx
    push rbx
    mov rbx, rax
    mov al, '0'
    call putc64
    mov al, 'x'
    call putc64
    mov ecx, 16
1:  rol rbx, 4
    mov al, bl
    and al, 0x0F
    add al, '0'
    cmp al, '9'
    jbe 2f
    add al, 'a' - '0' - 10
2:  call putc64
    dec ecx
    jnz 1b
    pop rbx
    pop rcx
    ret

.code16
UART_ROUTINES 16
.code32
UART_ROUTINES 32
.code64
UART_ROUTINES 64

# --- Data ---------------------------------------------------------------

msg_real:
    .asciz "[16-bit] real mode at 0000:7C00, CR0.PE="
msg_protected:
    .asciz "[32-bit] protected mode, flat segments from the GDT, CR0.PE="
msg_long:
    .asciz "[64-bit] long mode, 2 MiB identity-mapped page, EFER="
msg_efer:
    .asciz " (LME=bit 8, LMA=bit 10)\r\n"
msg_done:
    .asciz "Powering off.\r\n"
crlf:
    .asciz "\r\n"

# --- Global Descriptor Table (SDM Vol. 3A §3.4.5, Figure 3-8) -------------
#
# A segment descriptor packs a 32-bit base and a 20-bit limit around an
# access byte and four flags:
#   access: P (present, bit 7), DPL (bits 6:5), S (1 = code/data, bit 4),
#           type (bits 3:0; code: 1010b execute/read, data: 0010b read/write)
#   flags:  G (bit 3, limit in 4 KiB units), D/B (bit 2, 32-bit default
#           operand size), L (bit 1, 64-bit code), AVL (bit 0)
.macro DESCRIPTOR base, limit, access, flags
    .word \limit & 0xFFFF
    .word \base & 0xFFFF
    .byte (\base >> 16) & 0xFF
    .byte \access
    .byte ((\limit >> 16) & 0x0F) | (\flags << 4)
    .byte (\base >> 24) & 0xFF
.endm

    .balign 8
gdt:
    .quad 0                                 # 00h: the null descriptor, never used
    DESCRIPTOR 0, 0xFFFFF, 0x9A, 0b1100     # 08h: 32-bit code, base 0, 4 GiB (G, D)
    DESCRIPTOR 0, 0xFFFFF, 0x92, 0b1100     # 10h: data, base 0, 4 GiB (G, B)
    DESCRIPTOR 0, 0xFFFFF, 0x9A, 0b1010     # 18h: 64-bit code (G, L; D must be 0)
gdt_end:

gdt_pointer:                                # the LGDT operand
    .word gdt_end - gdt - 1                 # limit
    .long gdt                               # base (linear address)
