# pit-irq.S - lesson 3: a timer interrupt from the PIT through the PIC.
#
# The guest programs the two chips behind every PC's timer interrupt, the
# Intel 8259A programmable interrupt controllers (PICs) and the Intel 8254
# programmable interval timer (PIT), points real-mode interrupt vector 20h
# at a handler of its own, enables interrupts and halts. Each time the PIT
# fires, the CPU wakes up, runs the handler (which prints a dot and counts)
# and halts again; after five ticks, about 50 ms, the guest powers off.
#
# Who does what under govmm: the PIT is emulated in govmm (devices/pit.go),
# so programming it causes KVM_EXIT_IO exits; the PICs, the I/O APIC and
# the local APIC are emulated inside the kernel by KVM (KVM_CREATE_IRQCHIP),
# so programming the PICs, acknowledging interrupts and halting never
# leave the kernel. When the PIT's output pulses, govmm tells KVM with the
# KVM_IRQ_LINE ioctl (GSI 0); KVM's PIC raises INTR, and KVM wakes the
# halted vCPU and injects vector 20h on its next entry into the guest. The
# interrupt itself is not an exit at all. README.md counts the exits.
#
# Build: as --64 -o pit-irq.o pit-irq.S
#        ld -m elf_x86_64 -T ../lesson.ld -o pit-irq.bin pit-irq.o
# Run:   govmm boot --raw --kernel pit-irq.bin
#
# Sources: the Intel 8259A datasheet (ICW1-ICW4, OCW1-OCW3); the Intel 8254
# datasheet (control word, mode 2 "rate generator"); the IBM PC AT
# Technical Reference (the PICs at 20h/A0h with the slave on IR2 of the
# master, the PIT at 40h-43h with counter 0 on IRQ 0, its 1.193182 MHz
# clock); the Intel SDM Vol. 3A §21.1.4 "Interrupt and Exception Handling"
# in real-address mode.
#
# GNU as, Intel syntax (destination first, as in the SDM). Plain as input:
# do not run it through the C preprocessor.

.intel_syntax noprefix

# --- Hardware constants -------------------------------------------------

# COM1 16550 registers and the ACPI S5 power off (see hello.S).
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
.equ S5_SLEEP,  (5 << 10) | (1 << 13)

# The two 8259As of a PC AT: the master at 20h/21h takes IRQ 0-7, the slave
# at A0h/A1h takes IRQ 8-15 and is cascaded into the master's input 2.
# The even port takes ICW1 and OCW2/OCW3, the odd port ICW2-ICW4 and OCW1
# (the interrupt mask register).
.equ PIC1_CMD,  0x20
.equ PIC1_DATA, 0x21
.equ PIC2_CMD,  0xA0
.equ PIC2_DATA, 0xA1
.equ ICW1_INIT, 0x10        # bit 4: this is ICW1, start initialisation
.equ ICW1_ICW4, 0x01        # bit 0: ICW4 follows; bit 1 = 0: cascade; bit 3 = 0: edge
.equ ICW4_8086, 0x01        # bit 0: 8086/8088 mode (vector = base + IR)
.equ OCW2_EOI,  0x20        # non-specific end of interrupt
.equ PIC1_BASE, 0x20        # master: IR0-7 -> vectors 20h-27h
.equ PIC2_BASE, 0x28        # slave:  IR0-7 -> vectors 28h-2Fh

# The 8254. Counter 0 drives IRQ 0; its clock runs at 1.193182 MHz on every
# PC (14.31818 MHz / 12). The control word at 43h selects the counter
# (bits 7:6), how the count is written (bits 5:4, 11b = low byte then high
# byte), the mode (bits 3:1) and binary or BCD counting (bit 0).
.equ PIT_CH0,   0x40
.equ PIT_CTRL,  0x43
.equ PIT_CH0_LOHI_MODE2, (0 << 6) | (3 << 4) | (2 << 1) | 0     # 34h
.equ PIT_HZ,    1193182
.equ TICK_HZ,   100
.equ PIT_COUNT, (PIT_HZ + TICK_HZ / 2) / TICK_HZ                 # 11932: 99.998 Hz

# The lesson's own choices.
.equ TIMER_VECTOR, PIC1_BASE + 0    # IRQ 0 after the remap
.equ TICKS,     5

# --- Code ---------------------------------------------------------------

.code16
.section .text
.globl start
start:
    cli                     # nothing may interrupt us before the IVT entry exists
    xor ax, ax
    mov ds, ax
    mov es, ax
    mov ss, ax
    mov sp, 0x7C00
    cld
    call uart_init

    # --- 1. The interrupt vector table ---
    # In real mode the CPU finds the handler of vector n in the IVT, at
    # linear address IDTR.base + 4n (the base is 0 after reset): a 16-bit
    # offset, then a 16-bit segment. On an interrupt it pushes FLAGS, CS and
    # IP, clears IF, TF and AC, and jumps there; IRET pops them back (SDM
    # Vol. 3A §21.1.4 "Interrupt and Exception Handling", in real-address
    # mode).
    mov word ptr [TIMER_VECTOR * 4], offset timer_isr
    mov word ptr [TIMER_VECTOR * 4 + 2], 0

    # --- 2. Initialise both PICs (8259A datasheet, "Initialization Command
    # Words") ---
    # A BIOS leaves the master at vectors 08h-0Fh, which in protected mode
    # are CPU exceptions (08h is the double fault); every OS remaps it, and
    # so does this lesson, to 20h-2Fh. Each sequence is ICW1 on the even
    # port, then ICW2 (vector base), ICW3 (cascade wiring) and ICW4 (mode)
    # on the odd port. Under KVM these OUTs are exits handled in the kernel
    # by its 8259 model (arch/x86/kvm/i8259.c): govmm never sees them. (Old
    # PCs needed an I/O delay between the writes; a virtual PIC does not.)
    mov al, ICW1_INIT | ICW1_ICW4
    out PIC1_CMD, al
    out PIC2_CMD, al
    mov al, PIC1_BASE       # ICW2: vector of IR0; the low 3 bits are the IR number
    out PIC1_DATA, al
    mov al, PIC2_BASE
    out PIC2_DATA, al
    mov al, 1 << 2          # ICW3 (master): a slave hangs off input 2
    out PIC1_DATA, al
    mov al, 2               # ICW3 (slave): my cascade identity is 2
    out PIC2_DATA, al
    mov al, ICW4_8086
    out PIC1_DATA, al
    out PIC2_DATA, al
    # OCW1, the interrupt mask: a 1 bit masks that input. Only IRQ 0, the
    # timer, gets through.
    mov al, 0xFF & ~(1 << 0)
    out PIC1_DATA, al
    mov al, 0xFF
    out PIC2_DATA, al

    # --- 3. Start PIT counter 0 in mode 2, the rate generator (8254
    # datasheet, "Mode 2"): OUT stays high and goes low for one clock every
    # PIT_COUNT clocks, a periodic edge on IRQ 0. Writing the control word
    # and the two count bytes are three KVM_EXIT_IO exits, handled by
    # govmm's PIT, which from then on raises GSI 0 with KVM_IRQ_LINE every
    # 10 ms from a host timer. ---
    mov al, PIT_CH0_LOHI_MODE2
    out PIT_CTRL, al
    mov ax, PIT_COUNT
    out PIT_CH0, al         # low byte first,
    mov al, ah
    out PIT_CH0, al         # then high byte: the counter starts

    mov si, offset msg_start
    call puts

    # --- 4. Enable interrupts and wait for them ---
    # HLT stops the CPU until an interrupt arrives (SDM Vol. 2A, HLT).
    # With KVM's in-kernel irqchip a halted vCPU sleeps in the kernel and is
    # woken by the interrupt; no exit reaches govmm. STI takes effect after
    # the next instruction, so "sti; hlt" cannot lose an interrupt that was
    # already pending.
    sti
wait:
    hlt                     # sleep until the next tick...
    cmp word ptr [ticks], TICKS
    jb wait                 # ...and go back to sleep until there were enough
    cli

    # --- 5. Tidy up and power off ---
    mov al, 0xFF            # mask every input again (OCW1)
    out PIC1_DATA, al
    mov si, offset msg_count
    call puts
    mov al, [ticks]
    add al, '0'
    call putc
    mov si, offset msg_end
    call puts
    mov dx, PM1A_CNT        # ACPI S5
    mov ax, S5_SLEEP
    out dx, ax
1:  cli
    hlt
    jmp 1b

# timer_isr runs on each IRQ 0, with interrupts disabled by the CPU. It
# must preserve every register it uses, since it interrupts arbitrary code
# (here the HLT loop, whose DS is 0, which the handler relies on).
timer_isr:
    push ax
    inc word ptr [ticks]
    mov al, '.'
    call putc               # two KVM_EXIT_IO exits: LSR, then THR
    # Tell the master PIC the interrupt is handled (OCW2, non-specific
    # EOI): until then it delivers nothing of equal or lower priority.
    # KVM's PIC handles it in the kernel.
    mov al, OCW2_EOI
    out PIC1_CMD, al
    pop ax
    iret                    # pops IP, CS and FLAGS: IF is set again

# uart_init: COM1 at 115200 baud 8N1, no UART interrupts (see hello.S).
uart_init:
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
    ret

# putc sends AL on COM1 once LSR.THRE is set; puts sends the NUL-terminated
# string at DS:SI (see hello.S).
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

puts:
    lodsb
    test al, al
    jz 1f
    call putc
    jmp puts
1:  ret

# --- Data ---------------------------------------------------------------

ticks:
    .word 0
msg_start:
    .asciz "PIC remapped to vectors 0x20-0x2F; PIT channel 0 at 100 Hz\r\nticks: "
msg_count:
    .asciz "\r\n"
msg_end:
    .asciz " timer interrupts through IVT entry 0x20; powering off.\r\n"
