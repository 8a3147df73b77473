// An idle loop woken by a periodic timer tick, the shape of an idle kernel.
//
// Entered at EL2 with the MMU off, on QEMU virt's addresses (GICv2 distributor
// at 0x08000000, CPU interface at 0x08010000, IHI 0048B section 4).  The EL2
// physical timer (CNTHP, PPI 26) ticks every TICK counter cycles.  The main
// loop only waits: `1: wfi; (done?) b.lo 1b`.  Each tick's handler
//   1. acknowledges the interrupt (GICC_IAR),
//   2. counts the tick in x19,
//   3. does WORK iterations of a two-instruction loop (the tick's work),
//   4. re-arms the timer TICK cycles ahead (CNTHP_TVAL_EL2), or turns it
//      off after the last tick,
//   5. ends the interrupt (GICC_EOIR) and returns to the WFI loop (ERET).
// After TICKS ticks the guest powers off (PSCI SYSTEM_OFF through SMC), so
// that QEMU and bootemu run exactly the same work.  WORK, TICK and TICKS
// come from the assembler's -D (defaults below).

    .ifndef WORK
    .equ WORK, 1000
    .endif
    .ifndef TICK
    .equ TICK, 250000              // 4 ms of the 62.5 MHz counter (HZ=250)
    .endif
    .ifndef TICKS
    .equ TICKS, 50000              // 200 s of guest time, ~100 M instructions
    .endif
    .equ PSCI_SYSTEM_OFF, 0x84000008
    .equ GICD, 0x08000000
    .equ GICC, 0x08010000
    .equ GICD_CTLR, 0x000
    .equ GICD_ISENABLER0, 0x100
    .equ GICC_CTLR, 0x000
    .equ GICC_PMR, 0x004
    .equ GICC_IAR, 0x00c
    .equ GICC_EOIR, 0x010

    .text
    .globl _start
_start:
    // Vectors, and physical IRQs routed to EL2 (HCR_EL2.IMO, RW).
    mov     x0, #(1 << 4)
    orr     x0, x0, #(1 << 31)
    msr     hcr_el2, x0
    adr     x0, vectors
    msr     vbar_el2, x0
    isb
    // Distributor on, PPI 26 enabled; CPU interface on, all priorities.
    ldr     x20, =GICD
    mov     w1, #1
    str     w1, [x20, #GICD_CTLR]
    mov     w1, #(1 << 26)
    str     w1, [x20, #GICD_ISENABLER0]
    ldr     x21, =GICC
    mov     w1, #0xf0
    str     w1, [x21, #GICC_PMR]
    mov     w1, #1
    str     w1, [x21, #GICC_CTLR]
    // First tick, IRQs unmasked, then idle for ever.
    ldr     x22, =TICK
    msr     cnthp_tval_el2, x22
    mov     x1, #1
    msr     cnthp_ctl_el2, x1
    mov     x19, #0
    ldr     x23, =TICKS
    msr     daifclr, #2
idle:
    wfi
    cmp     x19, x23
    b.lo    idle
    ldr     x0, =PSCI_SYSTEM_OFF
    smc     #0
    b       .

// tick: the IRQ handler (register contract: x19 ticks so far, x21 GICC,
// x22 TICK, x23 TICKS; clobbers x1, x2).
tick:
    ldr     w1, [x21, #GICC_IAR]
    add     x19, x19, #1
    ldr     x2, =WORK
1:  subs    x2, x2, #1
    b.ne    1b
    cmp     x19, x23
    b.hs    2f
    msr     cnthp_tval_el2, x22
    b       3f
2:  msr     cnthp_ctl_el2, xzr      // the last tick: the timer off
3:
    str     w1, [x21, #GICC_EOIR]
    eret

    .ltorg
    .balign 2048
vectors:
    .rept 5
    .balign 128
    b       .
    .endr
    .balign 128
    b       tick                    // 0x280: IRQ, current EL with SP_ELx
    .rept 10
    .balign 128
    b       .
    .endr
