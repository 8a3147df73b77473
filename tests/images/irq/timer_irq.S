// A timer interrupt taken at EL2 through a GICv2, on QEMU virt's addresses.
//
// Entered at EL2 with the MMU off (x0: device tree, unused).  Arms the EL2
// physical timer (CNTHP, PPI 26) 1 ms ahead, waits in WFI, and in the IRQ
// handler acknowledges the interrupt at the GIC CPU interface, records its
// ID, disarms the timer and ends the interrupt.  Then prints what it saw on
// the PL011 and powers off through PSCI SYSTEM_OFF (SMC).  The same file runs
// under QEMU and under bootemu; their consoles must match.

    .equ GICD, 0x08000000
    .equ GICC, 0x08010000
    .equ UART, 0x09000000
    .equ GICD_CTLR, 0x000
    .equ GICD_ISENABLER0, 0x100
    .equ GICC_CTLR, 0x000
    .equ GICC_PMR, 0x004
    .equ GICC_IAR, 0x00c
    .equ GICC_EOIR, 0x010
    .equ PSCI_SYSTEM_OFF, 0x84000008
    .equ TICKS, 62500               // 1 ms of the 62.5 MHz counter

    .text
    .globl _start
_start:
    // 1. Vectors, a stack, and physical IRQs routed to EL2 (HCR_EL2.IMO: with
    //    IMO clear they would target EL1 and never be taken at EL2).
    mov     x0, #(1 << 4)
    orr     x0, x0, #(1 << 31)
    msr     hcr_el2, x0
    adr     x0, vectors
    msr     vbar_el2, x0
    adr     x0, stack_top
    mov     sp, x0
    isb
    // 2. Distributor on, PPI 26 (EL2 physical timer) enabled.
    ldr     x20, =GICD
    mov     w1, #1
    str     w1, [x20, #GICD_CTLR]
    mov     w1, #(1 << 26)
    str     w1, [x20, #GICD_ISENABLER0]
    // 3. CPU interface on, every priority let through.
    ldr     x21, =GICC
    mov     w1, #0xf0
    str     w1, [x21, #GICC_PMR]
    mov     w1, #1
    str     w1, [x21, #GICC_CTLR]
    adr     x0, msg_armed
    bl      puts
    // 4. Arm the timer, unmask IRQs, wait until the handler has run.
    mrs     x22, cntpct_el0
    ldr     x1, =TICKS
    msr     cnthp_tval_el2, x1
    mov     x1, #1
    msr     cnthp_ctl_el2, x1
    msr     daifclr, #2
1:  wfi
    ldr     w1, seen
    cbz     w1, 1b
    // 5. Report: the interrupt ID, and whether the counter passed 1 ms.
    adr     x0, msg_irq
    bl      puts
    ldr     w0, seen
    bl      puthex
    mrs     x1, cntpct_el0
    sub     x1, x1, x22
    ldr     x2, =TICKS
    adr     x0, msg_late
    cmp     x1, x2
    b.hs    2f
    adr     x0, msg_early
2:  bl      puts
    // 6. Power off.
    ldr     x0, =PSCI_SYSTEM_OFF
    smc     #0
    b       .

// irq_handler: acknowledge (GICC_IAR), record the ID in `seen`, disarm the
// timer, end the interrupt (GICC_EOIR), return.  Clobbers x1, x2.
irq_handler:
    ldr     w1, [x21, #GICC_IAR]
    adr     x2, seen
    str     w1, [x2]
    msr     cnthp_ctl_el2, xzr
    str     w1, [x21, #GICC_EOIR]
    eret

// puts: x0 = NUL-terminated string.  Clobbers x0, x1, x2.
puts:
    ldr     x1, =UART
3:  ldrb    w2, [x0], #1
    cbz     w2, 4f
    str     w2, [x1]
    b       3b
4:  ret

// puthex: w0 = value, printed as 8 hex digits and a newline.  Clobbers x0-x4.
puthex:
    ldr     x1, =UART
    mov     x3, #28
5:  lsr     w2, w0, w3
    and     w2, w2, #0xf
    cmp     w2, #10
    add     w4, w2, #'0'
    add     w2, w2, #('a' - 10)
    csel    w2, w4, w2, lo
    str     w2, [x1]
    subs    x3, x3, #4
    b.ge    5b
    mov     w2, #'\n'
    str     w2, [x1]
    ret

    .balign 8
seen:
    .word   0
    .word   0
msg_armed:  .asciz "timer armed\n"
msg_irq:    .asciz "irq "
msg_late:   .asciz "after 1 ms\n"
msg_early:  .asciz "before 1 ms\n"

    .balign 2048
vectors:
    .rept 5
    .balign 128
    b       .
    .endr
    .balign 128
    b       irq_handler             // 0x280: IRQ, current EL with SP_ELx
    .rept 10
    .balign 128
    b       .
    .endr
    .balign 0x80
    .ltorg
    .balign 16
    .space  4096
stack_top:
