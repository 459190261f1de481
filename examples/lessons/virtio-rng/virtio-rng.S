# virtio-rng.S - lesson 4: a virtio device driven by hand.
#
# virtio is how virtual machines get fast devices: instead of imitating a
# real disk or network card register by register, the hypervisor offers a
# device made for virtualization, and the driver and the device exchange
# buffers through rings in guest memory. This guest is a complete virtio
# driver for the simplest device there is, the entropy source virtio-rng
# (virtio 1.2 §5.4): it finds the device on the PCI bus, initialises it,
# hands it one empty 16-byte buffer and prints the random bytes it gets
# back. Every step is numbered after the specification:
#
#   1. find the PCI function            PCI Local Bus Specification 3.0 §3.2.2.3.2,
#                                       virtio 1.2 §4.1.2 (vendor 1AF4h, device 1044h)
#   2. find the virtio structures       virtio 1.2 §4.1.4 (vendor-specific capabilities)
#   3. read the BARs, enable decoding   PCI 3.0 §6.2.2 (Command), §6.2.5.1 (BARs)
#   4. initialise the device            virtio 1.2 §3.1.1 (driver requirements: device
#                                       initialization), registers from §4.1.4.3
#   5. set up virtqueue 0               virtio 1.2 §2.7 (split virtqueues), §4.1.5.1.3
#   6. post a buffer and notify         virtio 1.2 §2.7.13, §4.1.4.4, §4.1.5.2
#   7. poll the used ring               virtio 1.2 §2.7.8
#
# The device's registers live in a memory BAR that the PCI host bridge maps
# in the 32-bit MMIO hole at C000_0000h and up, out of reach of real mode's
# 20-bit addresses. So the guest first switches to 32-bit protected mode
# with flat 4 GiB segments, exactly as lesson 2 (longmode.S) does, and does
# everything else there, with paging off: linear address = physical.
# ("Unreal mode", loading 4 GiB limits into the segment caches and going
# back to real mode, would also work, but is a trick rather than a lesson.)
#
# Exits: every PCI configuration access is port I/O at CF8h/CFCh and every
# access to the virtio registers is MMIO: KVM_EXIT_IO and KVM_EXIT_MMIO
# exits that govmm handles. The notification (step 6) is the exception:
# govmm registers the notify register with KVM as an ioeventfd, so the
# guest's write only signals an eventfd that govmm's device goroutine waits
# on, and the vCPU does not leave the kernel. govmm offers that register
# twice, as an I/O port and as a memory address, and lists the port first;
# this driver, like Linux's, takes the first. The device then writes the
# buffer and the used ring straight into guest RAM: no exit either.
#
# Build: as --64 -o virtio-rng.o virtio-rng.S
#        ld -m elf_x86_64 -T ../lesson.ld -o virtio-rng.bin virtio-rng.o
# Run:   govmm boot --raw --kernel virtio-rng.bin   (needs a govmm whose
#        machine has a virtio-rng device; see README.md)
#
# GNU as, Intel syntax (destination first, as in the SDM). Plain as input:
# do not run it through the C preprocessor.

.intel_syntax noprefix

# --- Hardware constants -------------------------------------------------

# COM1 and ACPI S5, as in lesson 1 (hello.S).
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

# PCI configuration mechanism #1 (PCI 3.0 §3.2.2.3.2). A 32-bit write to
# CONFIG_ADDRESS selects a register of one function, the next access to
# CONFIG_DATA reads or writes it:
#   bit 31 enable | bits 23:16 bus | 15:11 device | 10:8 function | 7:2 register
# A byte or word access at CFCh + n reaches byte n of the selected dword.
.equ PCI_CONFIG_ADDRESS, 0xCF8
.equ PCI_CONFIG_DATA,    0xCFC
.equ PCI_ENABLE,         1 << 31
.equ PCI_DEVICE_SHIFT,   11
.equ PCI_SLOTS,          32

# The type 0 configuration header (PCI 3.0 §6.1, Figure 6-1).
.equ PCI_ID,             0x00    # vendor ID (15:0), device ID (31:16)
.equ PCI_COMMAND,        0x04    # Command (15:0), Status (31:16)
.equ PCI_BAR0,           0x10    # six Base Address Registers, 10h-24h
.equ PCI_CAP_PTR,        0x34    # Capabilities Pointer (7:0)
.equ PCI_STATUS_CAP_LIST, 1 << (16 + 4)  # Status bit 4, seen in the dword at 04h
.equ PCI_CMD_IO,         1 << 0  # I/O Space: decode the I/O BARs
.equ PCI_CMD_MEMORY,     1 << 1  # Memory Space: decode the memory BARs
.equ PCI_CMD_MASTER,     1 << 2  # Bus Master: the device may access RAM (DMA)
.equ PCI_CMD_INTX_OFF,   1 << 10 # Interrupt Disable: no INTx#, this driver polls
.equ PCI_BAR_IO,         1 << 0  # BAR bit 0: an I/O BAR
.equ PCI_BAR_TYPE,       3 << 1  # BAR bits 2:1: the memory BAR's type
.equ PCI_BAR_64,         2 << 1  # 10b: a 64-bit memory BAR
.equ PCI_BAR_FLAGS,      0xF     # the low 4 bits of a memory BAR are flags
.equ PCI_BAR_IO_FLAGS,   0x3     # the low 2 bits of an I/O BAR are flags
.equ PCI_CAP_ID_VNDR,    0x09    # vendor-specific capability (PCI Code and ID Assignment)

# virtio over PCI (virtio 1.2 §4.1.2): vendor 1AF4h, device 1040h + virtio
# device ID, and 4 is the entropy device (§5.4.1).
.equ VIRTIO_RNG_ID,      (0x1040 + 4) << 16 | 0x1AF4

# struct virtio_pci_cap (§4.1.4): offsets from the capability's start.
.equ CAP_CFG_TYPE,       3
.equ CAP_BAR,            4
.equ CAP_OFFSET,         8
.equ CAP_NOTIFY_MULT,    16      # struct virtio_pci_notify_cap only
.equ VIRTIO_PCI_CAP_COMMON_CFG, 1
.equ VIRTIO_PCI_CAP_NOTIFY_CFG, 2

# struct virtio_pci_common_cfg (§4.1.4.3): register offsets.
.equ DEVICE_FEATURE_SELECT, 0x00     # le32
.equ DEVICE_FEATURE,        0x04     # le32, read-only
.equ DRIVER_FEATURE_SELECT, 0x08     # le32
.equ DRIVER_FEATURE,        0x0C     # le32
.equ DEVICE_STATUS,         0x14     # u8
.equ QUEUE_SELECT,          0x16     # le16
.equ QUEUE_SIZE,            0x18     # le16
.equ QUEUE_ENABLE,          0x1C     # le16
.equ QUEUE_NOTIFY_OFF,      0x1E     # le16, read-only
.equ QUEUE_DESC,            0x20     # le64, written as two le32 halves
.equ QUEUE_DRIVER,          0x28     # le64: the available ring
.equ QUEUE_DEVICE,          0x30     # le64: the used ring

# Device status bits (§2.1).
.equ ACKNOWLEDGE,        1       # the guest noticed the device
.equ DRIVER,             2       # the guest knows how to drive it
.equ DRIVER_OK,          4       # the driver is ready
.equ FEATURES_OK,        8       # feature negotiation is complete
.equ FAILED,             128     # the driver gave up

# VIRTIO_F_VERSION_1 is feature bit 32 (§6): bit 0 of feature word 1.
.equ VERSION_1_WORD,     1
.equ VERSION_1_BIT,      1 << (32 - 32)

# Split virtqueue (§2.7). Queue size 8; the three parts in free low RAM,
# each aligned as the table in §2.7 demands (descriptor table 16, available
# ring 2, used ring 4), then the buffer the device fills.
.equ QUEUE_SIZE_USED,    8
.equ VQ_DESC,            0x1000  # 8 descriptors of 16 bytes
.equ VQ_AVAIL,           0x1100  # flags, idx, ring[8], used_event: 22 bytes
.equ VQ_USED,            0x1200  # flags, idx, ring[8] of {id, len}, avail_event: 70 bytes
.equ BUFFER,             0x1300
.equ BUFFER_LEN,         16
.equ VQ_AREA_DWORDS,     (BUFFER - VQ_DESC) / 4
.equ BUFFER_FILL,        0xAAAAAAAA  # so that an unwritten buffer is obvious

# struct virtq_desc (§2.7.5): le64 addr, le32 len, le16 flags, le16 next.
.equ DESC_ADDR,          0
.equ DESC_LEN,           8
.equ DESC_FLAGS,         12
.equ VIRTQ_DESC_F_WRITE, 2       # the device writes this buffer
# struct virtq_avail (§2.7.6): le16 flags, le16 idx, le16 ring[].
.equ AVAIL_FLAGS,        0
.equ AVAIL_IDX,          2
.equ AVAIL_RING,         4
.equ VIRTQ_AVAIL_F_NO_INTERRUPT, 1
# struct virtq_used (§2.7.8): le16 flags, le16 idx, struct virtq_used_elem
# { le32 id; le32 len; } ring[].
.equ USED_IDX,           2
.equ USED_RING_ID,       4
.equ USED_RING_LEN,      8

# How long to poll the used ring: about a second on hardware, half a
# minute on a software KVM. The device answers in microseconds.
.equ POLL_LIMIT,         0x1000000

# Selectors of the flat GDT below (see longmode.S).
.equ CODE32_SEL,         0x08
.equ DATA_SEL,           0x10
.equ CR0_PE,             1

# ========================================================================
# Real mode: straight to 32-bit protected mode (longmode.S explains each
# step, SDM Vol. 3A §10.9.1).
# ========================================================================
.code16
.section .text
.globl start
start:
    cli
    xor ax, ax
    mov ds, ax
    mov ss, ax
    mov sp, 0x7C00
    lgdt [gdt_pointer]
    mov eax, cr0
    or eax, CR0_PE
    mov cr0, eax
    jmp CODE32_SEL:protected_mode

.code32
protected_mode:
    mov ax, DATA_SEL
    mov ds, ax
    mov es, ax
    mov fs, ax
    mov gs, ax
    mov ss, ax
    mov esp, 0x7C00
    cld
    call uart_init
    mov esi, offset msg_hello
    call puts

# ------------------------------------------------------------------------
# Step 1: scan bus 0 for the entropy device. Each slot's dword 0 holds its
# device and vendor IDs; an empty slot reads all ones, since nobody answers
# the configuration cycle (PCI 3.0 §6.1). Each probe is an OUT and an IN,
# but where KVM can, govmm has the CONFIG_ADDRESS write queued in KVM's
# coalesced ring instead of exiting, and replays it before it handles the
# CONFIG_DATA read: one exit per probe.
# ------------------------------------------------------------------------
    mov ebx, PCI_ENABLE                 # bus 0, device 0, function 0
scan:
    mov eax, ebx
    call pci_read32
    cmp eax, VIRTIO_RNG_ID
    je found
    add ebx, 1 << PCI_DEVICE_SHIFT      # the next slot
    cmp ebx, PCI_ENABLE | (PCI_SLOTS << PCI_DEVICE_SHIFT)
    jb scan
    mov esi, offset err_no_device
    jmp fail

found:                                  # EBX keeps the function's address
    mov esi, offset msg_pci
    call puts
    mov eax, ebx
    shr eax, PCI_DEVICE_SHIFT
    and eax, PCI_SLOTS - 1
    mov ecx, 2
    call print_hex
    mov esi, offset msg_pci_id
    call puts

# ------------------------------------------------------------------------
# Step 2: walk the capability list (PCI 3.0 §6.7). Status bit 4 says there
# is one; the Capabilities Pointer at 34h gives the first entry, each
# entry starts with its ID and the offset of the next (0 ends the list).
# virtio describes where its register blocks are with vendor-specific
# capabilities (ID 09h), struct virtio_pci_cap (§4.1.4):
#   u8 cap_vndr, cap_next, cap_len, cfg_type; u8 bar, id, padding[2];
#   le32 offset, length;   (and le32 notify_off_multiplier for NOTIFY)
# cfg_type 1 is the common configuration, 2 the notification area, 3 the
# ISR, 4 the device-specific configuration (virtio-rng defines no fields
# in it), 5 a window into the BARs through configuration space. "The
# driver SHOULD use the first instance of each virtio structure type they
# can support" (§4.1.4.1), so later ones are skipped.
# ------------------------------------------------------------------------
    lea eax, [ebx + PCI_COMMAND]
    call pci_read32
    test eax, PCI_STATUS_CAP_LIST
    jz no_caps
    lea eax, [ebx + PCI_CAP_PTR]
    call pci_read32
    movzx edi, al                       # EDI = offset of the current capability
    mov ecx, 48                         # the most 4-byte entries that fit in 40h-FFh,
                                        # so a corrupt list cannot loop forever
cap_loop:
    and edi, 0xFC                       # the bottom two bits are reserved
    jz caps_done
    lea eax, [ebx + edi]
    call pci_read32                     # cap_vndr | next << 8 | len << 16 | cfg_type << 24
    mov edx, eax
    cmp al, PCI_CAP_ID_VNDR
    jne cap_next
    shr eax, 24                         # cfg_type
    cmp al, VIRTIO_PCI_CAP_COMMON_CFG
    je cap_common
    cmp al, VIRTIO_PCI_CAP_NOTIFY_CFG
    je cap_notify
    jmp cap_next
cap_common:
    cmp byte ptr [common_bar], 0xFF     # already have one?
    jne cap_next
    lea eax, [ebx + edi + CAP_BAR]
    call pci_read32
    mov [common_bar], al
    lea eax, [ebx + edi + CAP_OFFSET]
    call pci_read32
    mov [common_offset], eax
    jmp cap_next
cap_notify:
    cmp byte ptr [notify_bar], 0xFF
    jne cap_next
    lea eax, [ebx + edi + CAP_BAR]
    call pci_read32
    mov [notify_bar], al
    lea eax, [ebx + edi + CAP_OFFSET]
    call pci_read32
    mov [notify_offset], eax
    lea eax, [ebx + edi + CAP_NOTIFY_MULT]
    call pci_read32
    mov [notify_multiplier], eax
cap_next:
    movzx edi, dh                       # cap_next
    dec ecx
    jnz cap_loop
caps_done:
    cmp byte ptr [common_bar], 5        # a BAR index is 0-5; FFh = not found
    ja no_caps
    cmp byte ptr [notify_bar], 5
    ja no_caps

    mov esi, offset msg_common
    call puts
    mov al, [common_bar]
    call print_bar_name
    mov eax, [common_offset]
    mov ecx, 8
    call print_hex
    mov esi, offset msg_notify
    call puts
    mov al, [notify_bar]
    call print_bar_name
    mov eax, [notify_offset]
    mov ecx, 8
    call print_hex
    mov esi, offset msg_multiplier
    call puts
    mov eax, [notify_multiplier]
    mov ecx, 8
    call print_hex
    mov esi, offset crlf
    call puts

# ------------------------------------------------------------------------
# Step 3: the BARs. Firmware assigns every BAR an address before the OS
# runs (govmm does when it builds the machine); bar_address reads it back.
# A memory BAR decodes only while the Command register's Memory Space bit
# is set, an I/O BAR while its I/O Space bit is: govmm maps them, on its
# MMIO or port bus and as KVM ioeventfds, while the bit is on. Firmware
# usually sets them already; a driver makes sure, and also enables Bus
# Master, without which a device may not read or write RAM.
# ------------------------------------------------------------------------
    movzx eax, byte ptr [common_bar]
    call bar_address
    add eax, [common_offset]
    mov [common_cfg], eax
    movzx eax, byte ptr [notify_bar]
    cmp al, [common_bar]
    je 1f
    call notify_bar_address             # a second BAR: print it too
    jmp 2f
1:  call bar_address_quiet
2:  add eax, [notify_offset]
    mov [notify_base], eax

    lea eax, [ebx + PCI_COMMAND]
    call pci_read32
    or ax, PCI_CMD_IO | PCI_CMD_MEMORY | PCI_CMD_MASTER | PCI_CMD_INTX_OFF
    mov cx, ax
    lea eax, [ebx + PCI_COMMAND]
    call pci_write16                    # only the Command half: Status bits are write-1-to-clear

# ------------------------------------------------------------------------
# Step 4: device initialisation, in the order of §3.1.1. EBP points at the
# common configuration; each access below is one KVM_EXIT_MMIO, handled by
# govmm's virtio-pci transport (virtio/virtiopci). Each register is
# accessed with its own width, as §4.1.3.1 requires.
# ------------------------------------------------------------------------
    mov ebp, [common_cfg]
    # 1. Reset the device, and wait until it says it is reset: "after
    #    writing 0 to device_status, the driver MUST wait for a read of
    #    device_status to return 0" (§4.1.4.3.2).
    mov byte ptr [ebp + DEVICE_STATUS], 0
1:  cmp byte ptr [ebp + DEVICE_STATUS], 0
    jne 1b
    # 2. ACKNOWLEDGE: we have noticed the device.
    mov byte ptr [ebp + DEVICE_STATUS], ACKNOWLEDGE
    # 3. DRIVER: we know how to drive it.
    mov byte ptr [ebp + DEVICE_STATUS], ACKNOWLEDGE | DRIVER
    # 4. Read the device's feature bits, 32 at a time through
    #    device_feature_select, and write the subset we understand. This
    #    driver understands exactly one: VIRTIO_F_VERSION_1 (bit 32), the
    #    modern interface, which a device must offer and a driver must
    #    accept (§6.1, §6.2).
    mov dword ptr [ebp + DEVICE_FEATURE_SELECT], VERSION_1_WORD
    test dword ptr [ebp + DEVICE_FEATURE], VERSION_1_BIT
    jz no_version_1
    mov dword ptr [ebp + DRIVER_FEATURE_SELECT], 0
    mov dword ptr [ebp + DRIVER_FEATURE], 0
    mov dword ptr [ebp + DRIVER_FEATURE_SELECT], VERSION_1_WORD
    mov dword ptr [ebp + DRIVER_FEATURE], VERSION_1_BIT
    # 5. FEATURES_OK: no more feature changes.
    mov byte ptr [ebp + DEVICE_STATUS], ACKNOWLEDGE | DRIVER | FEATURES_OK
    # 6. Read it back: a device that cannot work with our subset clears it.
    test byte ptr [ebp + DEVICE_STATUS], FEATURES_OK
    jz features_refused
    mov esi, offset msg_features
    call puts

# ------------------------------------------------------------------------
# Step 5 (§3.1.1 step 7, "device-specific setup"): virtqueue 0, requestq,
# the entropy device's only queue (§5.4.2). A split virtqueue is three
# areas in guest RAM (§2.7):
#   descriptor table  the buffers: address, length, flags, next
#   available ring    driver -> device: which descriptor chains to use
#   used ring         device -> driver: which chains it is done with
# They are zeroed, then their addresses go to the device (§4.1.5.1.3).
# ------------------------------------------------------------------------
    mov edi, VQ_DESC
    xor eax, eax
    mov ecx, VQ_AREA_DWORDS
    rep stosd                           # zero the three areas
    mov eax, BUFFER_FILL
    mov ecx, BUFFER_LEN / 4
    rep stosd                           # and fill the buffer with AAh

    mov word ptr [ebp + QUEUE_SELECT], 0
    movzx eax, word ptr [ebp + QUEUE_SIZE]  # the device's maximum; 0 = no such queue
    cmp eax, QUEUE_SIZE_USED
    jb bad_queue
    push eax
    mov esi, offset msg_queue
    call puts
    pop eax
    mov ecx, 4
    call print_hex
    mov esi, offset msg_queue_size
    call puts
    mov word ptr [ebp + QUEUE_SIZE], QUEUE_SIZE_USED
    mov dword ptr [ebp + QUEUE_DESC], VQ_DESC
    mov dword ptr [ebp + QUEUE_DESC + 4], 0
    mov dword ptr [ebp + QUEUE_DRIVER], VQ_AVAIL
    mov dword ptr [ebp + QUEUE_DRIVER + 4], 0
    mov dword ptr [ebp + QUEUE_DEVICE], VQ_USED
    mov dword ptr [ebp + QUEUE_DEVICE + 4], 0
    # The queue's notify address (§4.1.4.4):
    #   notify BAR base + cap offset + queue_notify_off * notify_off_multiplier
    movzx eax, word ptr [ebp + QUEUE_NOTIFY_OFF]
    mul dword ptr [notify_multiplier]   # EDX:EAX = EAX * multiplier
    add eax, [notify_base]
    mov [notify_address], eax
    mov word ptr [ebp + QUEUE_ENABLE], 1
    # 8. DRIVER_OK: the device is live.
    mov byte ptr [ebp + DEVICE_STATUS], ACKNOWLEDGE | DRIVER | FEATURES_OK | DRIVER_OK
    mov esi, offset msg_driver_ok
    call puts

# ------------------------------------------------------------------------
# Step 6: give the device a buffer (§2.7.13). Descriptor 0 describes the
# 16 bytes at BUFFER, device-writable; the available ring's entry 0 names
# descriptor 0 as the head of a chain; then avail.idx goes from 0 to 1,
# which is what publishes the entry. The device may read the ring as soon
# as idx changes, so the entry must be visible first: "the driver MUST
# perform a suitable memory barrier" (§2.7.13.3.1). x86 does not reorder a
# store with an earlier store (SDM Vol. 3A §9.2.2 "Memory Ordering in P6
# and More Recent Processor Families"), so program order is the barrier.
# VIRTQ_AVAIL_F_NO_INTERRUPT asks the device not to interrupt: we poll.
# ------------------------------------------------------------------------
    mov dword ptr [VQ_DESC + DESC_ADDR], BUFFER
    mov dword ptr [VQ_DESC + DESC_ADDR + 4], 0
    mov dword ptr [VQ_DESC + DESC_LEN], BUFFER_LEN
    mov word ptr [VQ_DESC + DESC_FLAGS], VIRTQ_DESC_F_WRITE
    mov word ptr [VQ_AVAIL + AVAIL_FLAGS], VIRTQ_AVAIL_F_NO_INTERRUPT
    mov word ptr [VQ_AVAIL + AVAIL_RING + 0 * 2], 0     # ring[0] = descriptor 0
    mov word ptr [VQ_AVAIL + AVAIL_IDX], 1
    # Notify the device: write the queue's index, 16 bits, to its notify
    # register (§4.1.5.2): an OUT if it is a port, a store if it is an
    # address. KVM matches the write against govmm's ioeventfd (for the
    # port, one per queue, each waiting for its queue's index) and
    # signals it without leaving the kernel.
    mov edx, [notify_address]
    xor eax, eax                        # queue 0
    cmp byte ptr [notify_is_port], 0
    je 1f
    out dx, ax
    jmp 2f
1:  mov word ptr [edx], ax
2:

# ------------------------------------------------------------------------
# Step 7: wait for the device to return the buffer: it writes the bytes,
# then a used ring element {id = head descriptor, len = bytes written},
# then increments used.idx (§2.7.8). These are plain memory reads of guest
# RAM, no exits. x86 does not reorder loads with other loads either, so
# after seeing the new idx the element and the buffer are complete.
# ------------------------------------------------------------------------
    mov ecx, POLL_LIMIT
1:  cmp word ptr [VQ_USED + USED_IDX], 0
    jne used
    pause                               # a spin-wait hint (SDM Vol. 2B, PAUSE)
    dec ecx
    jnz 1b
    mov esi, offset err_timeout
    jmp virtio_fail

used:
    mov esi, offset msg_used
    call puts
    mov eax, [VQ_USED + USED_RING_ID]
    mov ecx, 8
    call print_hex
    mov esi, offset msg_used_len
    call puts
    mov eax, [VQ_USED + USED_RING_LEN]
    mov ecx, 8
    call print_hex
    mov esi, offset msg_random
    call puts
    mov edx, [VQ_USED + USED_RING_LEN]  # print the bytes the device wrote,
    cmp edx, BUFFER_LEN                 # at most the buffer's 16
    jbe 1f
    mov edx, BUFFER_LEN
1:  mov esi, BUFFER
2:  test edx, edx
    jz 3f
    mov al, ' '
    call putc
    lodsb
    mov ecx, 2
    call print_hex
    dec edx
    jmp 2b
3:  mov esi, offset crlf
    call puts

    # Done: reset the device (status 0), so it stops using our memory.
    mov byte ptr [ebp + DEVICE_STATUS], 0
    mov esi, offset msg_bye
    call puts
    jmp power_off

# --- Failures -------------------------------------------------------------

no_caps:
    mov esi, offset err_no_caps
    jmp fail
no_version_1:
    mov esi, offset err_version_1
    jmp virtio_fail
features_refused:
    mov esi, offset err_features
    jmp virtio_fail
bad_queue:
    mov esi, offset err_queue
    # fall through
# A driver that gives up sets FAILED (§3.1.1: "If any of these steps go
# irrecoverably wrong, the driver SHOULD set the FAILED status bit").
virtio_fail:
    or byte ptr [ebp + DEVICE_STATUS], FAILED
fail:
    call puts
power_off:
    mov dx, PM1A_CNT                    # ACPI S5 (see hello.S)
    mov ax, S5_SLEEP
    out dx, ax
1:  cli
    hlt
    jmp 1b

# --- Subroutines ----------------------------------------------------------

# pci_read32 reads the configuration dword EAX selects (a CONFIG_ADDRESS
# value) into EAX.
pci_read32:
    push edx
    mov dx, PCI_CONFIG_ADDRESS
    out dx, eax
    mov dx, PCI_CONFIG_DATA
    in eax, dx
    pop edx
    ret

# pci_write16 writes CX to the low word of the dword EAX selects.
pci_write16:
    push edx
    mov dx, PCI_CONFIG_ADDRESS
    out dx, eax
    mov dx, PCI_CONFIG_DATA
    mov ax, cx
    out dx, ax
    pop edx
    ret

# bar_address returns in EAX the memory address of BAR EAX (0-5) of the
# function at EBX, printing it; bar_address_quiet does not print. A memory
# BAR's low 4 bits are flags, the rest the address (PCI 3.0 §6.2.5.1); a
# 64-bit BAR continues in the next BAR with bits 63:32. Firmware assigns
# the addresses before the OS runs (govmm does it when it builds the
# machine), so a BAR of 0 means nobody did. BARs above 4 GiB and I/O BARs
# are not for this 32-bit driver.
bar_address:
    call print_bar
    call bar_address_quiet
    push eax
    mov esi, offset msg_bar_equals
    call puts
    mov eax, [esp]
    mov ecx, 8
    call print_hex
    mov esi, offset crlf
    call puts
    pop eax
    ret

bar_address_quiet:
    push ecx
    push edx
    lea edx, [ebx + PCI_BAR0 + eax * 4]     # EDX = CONFIG_ADDRESS of the BAR
    mov eax, edx
    call pci_read32
    test al, PCI_BAR_IO
    jnz bad_bar
    mov ecx, eax
    and ecx, PCI_BAR_TYPE
    cmp ecx, PCI_BAR_64
    jne 1f
    push eax                            # a 64-bit BAR: check bits 63:32
    lea eax, [edx + 4]
    call pci_read32
    test eax, eax
    pop eax
    jnz bad_bar
1:  and eax, ~PCI_BAR_FLAGS
    jz unassigned_bar
    pop edx
    pop ecx
    ret
bad_bar:
    mov esi, offset err_bar
    jmp fail
unassigned_bar:
    mov esi, offset err_unassigned
    jmp fail

# notify_bar_address is bar_address for the notify structure's BAR, which
# may also be an I/O BAR: then EAX is its first port (bits 1:0 of an I/O
# BAR are flags, PCI 3.0 §6.2.5.1) and notify_is_port is set. An OUT
# exits with the port, width and value already decoded by the CPU (AMD APM
# Vol. 2 §15.10.2, Intel SDM Vol. 3C §28.2.1), where a store to MMIO can
# leave the hypervisor to decode the instruction: that is why a device may
# prefer a port for its busiest register (virtio 1.2 §4.1.4.1).
notify_bar_address:
    push eax
    lea eax, [ebx + PCI_BAR0 + eax * 4]
    call pci_read32
    test al, PCI_BAR_IO
    pop eax
    jz bar_address                      # a memory BAR
    call print_bar
    lea eax, [ebx + PCI_BAR0 + eax * 4]
    call pci_read32
    and eax, ~PCI_BAR_IO_FLAGS
    jz unassigned_bar
    mov byte ptr [notify_is_port], 1
    push eax
    mov esi, offset msg_bar_port
    call puts
    mov eax, [esp]
    mov ecx, 4
    call print_hex
    mov esi, offset crlf
    call puts
    pop eax
    ret

# print_bar_name prints "BARn+0x" for the BAR index in AL.
print_bar_name:
    call print_bar
    mov esi, offset msg_plus
    jmp puts

# print_bar prints "BARn" for the BAR index in AL, keeping EAX.
print_bar:
    push eax
    mov esi, offset msg_bar
    call puts
    mov eax, [esp]
    add al, '0'
    call putc
    pop eax
    ret

# print_hex prints the low ECX (1-8) hexadecimal digits of EAX. The value is
# first shifted so its top wanted digit is in bits 31:28, then ROL brings
# each digit to the bottom in turn.
print_hex:
    pushad
    mov ebx, eax
    mov edx, ecx
    mov ecx, 8
    sub ecx, edx
    shl ecx, 2                          # 32 - 4 * digits
    shl ebx, cl
1:  rol ebx, 4
    mov al, bl
    and al, 0x0F
    add al, '0'
    cmp al, '9'
    jbe 2f
    add al, 'a' - '0' - 10
2:  call putc
    dec edx
    jnz 1b
    popad
    ret

# uart_init, putc and puts: COM1 as in hello.S, here as 32-bit code.
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

putc:
    push edx
    push eax
    mov dx, COM1 + LSR
1:  in al, dx
    test al, LSR_THRE
    jz 1b
    pop eax
    mov dx, COM1 + THR
    out dx, al
    pop edx
    ret

puts:
    lodsb
    test al, al
    jz 1f
    call putc
    jmp puts
1:  ret

# --- Data ---------------------------------------------------------------

common_bar:         .byte 0xFF      # FFh until the capability is found
notify_bar:         .byte 0xFF
notify_is_port:     .byte 0         # 1: notify_address is an I/O port
    .balign 4
common_offset:      .long 0
notify_offset:      .long 0
notify_multiplier:  .long 0
common_cfg:         .long 0         # address of struct virtio_pci_common_cfg
notify_base:        .long 0         # address of the notification area
notify_address:     .long 0         # queue 0's notify register: address or port

msg_hello:      .asciz "virtio-rng lesson, in 32-bit protected mode\r\n"
msg_pci:        .asciz "PCI 00:"
msg_pci_id:     .asciz ".0: 1af4:1044, a virtio entropy device\r\n"
msg_common:     .asciz "COMMON at "
msg_notify:     .asciz ", NOTIFY at "
msg_multiplier: .asciz ", notify_off_multiplier 0x"
msg_bar:        .asciz "BAR"
msg_plus:       .asciz "+0x"
msg_bar_equals: .asciz " = 0x"
msg_bar_port:   .asciz " = port 0x"
msg_features:   .asciz "features: VIRTIO_F_VERSION_1 offered; FEATURES_OK accepted\r\n"
msg_queue:      .asciz "queue 0: max size 0x"
msg_queue_size: .asciz ", using 8"
msg_driver_ok:  .asciz "; DRIVER_OK\r\n"
msg_used:       .asciz "used ring: id 0x"
msg_used_len:   .asciz ", len 0x"
msg_random:     .asciz "\r\nrandom bytes:"
msg_bye:        .asciz "powering off.\r\n"
crlf:           .asciz "\r\n"

err_no_device:  .asciz "no virtio device found: no 1af4:1044 on PCI bus 0\r\n"
err_no_caps:    .asciz "no virtio COMMON and NOTIFY capabilities\r\n"
err_bar:        .asciz ": an I/O BAR or above 4 GiB, not usable from 32-bit code\r\n"
err_unassigned: .asciz ": not assigned (0): no firmware placed it\r\n"
err_version_1:  .asciz "device does not offer VIRTIO_F_VERSION_1\r\n"
err_features:   .asciz "device refused FEATURES_OK\r\n"
err_queue:      .asciz "queue 0 is missing or smaller than 8\r\n"
err_timeout:    .asciz "no used buffer after polling; giving up\r\n"

# The flat GDT (see longmode.S): null, 32-bit code, data; 4 GiB each.
    .balign 8
gdt:
    .quad 0
    .quad 0x00CF9A000000FFFF            # 08h: code, base 0, limit 4 GiB, 32-bit
    .quad 0x00CF92000000FFFF            # 10h: data, base 0, limit 4 GiB
gdt_end:
gdt_pointer:
    .word gdt_end - gdt - 1
    .long gdt
