// el1-eret-g64: EL2 drops to EL1 with ERET; EL1&0 runs with the 64 KiB
// granule in both VA ranges and remaps a page with break-before-make.
//
// At EL2: HCR_EL2.RW = 1 (EL1 is AArch64), ISB, SPSR_EL2 = EL1h with DAIF
// masked, ELR_EL2 = el1_entry, ERET. At EL1: TCR_EL1 with TG0 = TG1 = 64K,
// T0SZ = T1SZ = 22 (42-bit ranges, walks start at level 2). TTBR0 and TTBR1
// share one level-3 table mapping the image (identity for TTBR0, at
// KVA = 0xfffffc0000000000 + PA for TTBR1) and DVA -> page_a. The program
// turns the MMU on, continues at its TTBR1 address, remaps DVA to page_b with
// break-before-make (TLBI VAAE1IS), checks it reads page_b, and returns to
// the identity address.
//
// expect: clean
// item: EL2 -> EL1 entry, 64K granule at EL1&0, TTBR1; compliant twin of items 1, 2, 6
//
// Rule: ERET is a context synchronization event, and HCR_EL2 changes need an
// ISB before the ERET that uses them (DDI 0487 D24.1.2.2 "Synchronization
// requirements for AArch64 System registers"). TCR_EL1.TG1 encodes 64K as
// 0b11 and TG0 as 0b01 (D24 "TCR_EL1"). Break-before-make as in D8.17.1,
// R_DDMVT; after the completed TLBI and ISB the read returns page_b
// (D8.17.8, R_LXHLD).

#define LINK_ADDRESS 0x40000000
#define SCTLR_OFF 0x30d00800            // SCTLR_EL1 RES1 bits, M=0
#define SCTLR_ON  0x30d00801
#define MAIR_VAL  0xff4400
#define TCR_VAL   0x2f5167516           // T0SZ=T1SZ=22, TG0=64K (01), TG1=64K (11), WBWA inner-shareable walks, IPS=40 bits
#define TABLE     0x3
#define PAGE      0x70b                 // AF, SH=inner, AttrIndx=2, page (64 KiB), global
#define DVA       0x40200000            // L3[0x20], through TTBR0
#define KOFF      0xfffffc0000000000    // TTBR1 range base (T1SZ = 22)

    .text
    .global _start
_start:                                 // EL2
    mov     x0, #(1 << 31)              // HCR_EL2.RW
    msr     hcr_el2, x0
    isb
    mov     x0, #0x3c5                  // EL1h, DAIF masked
    msr     spsr_el2, x0
    adr     x0, el1_entry
    msr     elr_el2, x0
    eret
el1_entry:                              // EL1, MMU off
    ldr     x0, =SCTLR_OFF
    msr     sctlr_el1, x0
    isb
    ldr     x0, =MAIR_VAL
    msr     mair_el1, x0
    ldr     x0, =TCR_VAL
    msr     tcr_el1, x0
    adr     x1, t0_l2
    adr     x2, k_l2
    adr     x3, l3
    orr     x9, x3, #TABLE
    str     x9, [x1, #2 * 8]            // TTBR0 L2[2]: VA 1 GiB.. -> l3
    str     x9, [x2, #2 * 8]            // TTBR1 L2[2]: KOFF + 1 GiB.. -> l3
    ldr     x9, =0x40000000 | PAGE      // L3[0..7]: the image, 64 KiB pages
    mov     x11, x3
    mov     x12, #8
1:  str     x9, [x11], #8
    add     x9, x9, #0x10000
    subs    x12, x12, #1
    b.ne    1b
    ldr     x10, =PAGE
    adr     x9, page_a
    orr     x9, x9, x10
    str     x9, [x3, #0x20 * 8]         // L3[0x20]: DVA -> page_a
    dsb     ish
    msr     ttbr0_el1, x1
    msr     ttbr1_el1, x2
    tlbi    vmalle1
    dsb     ish
    isb
    ldr     x0, =SCTLR_ON
    msr     sctlr_el1, x0
    isb
    ldr     x0, =KOFF
    adr     x9, kernel
    add     x0, x0, x9
    br      x0
kernel:                                 // running through TTBR1
    adr     x8, l3
    add     x8, x8, #0x20 * 8           // &L3[0x20], at its kernel address
    ldr     x4, =DVA
    ldr     x5, [x4]
    cmp     x5, #0xa1
    b.ne    wrong
    adr     x9, page_b
    ldr     x13, =KOFF
    sub     x9, x9, x13                 // the PA of page_b
    orr     x12, x9, x10
    str     xzr, [x8]                   // break
    dsb     ish
    lsr     x13, x4, #12
    tlbi    vaae1is, x13
    dsb     ish
    str     x12, [x8]                   // make: DVA -> page_b
    dsb     ish
    isb
    ldr     x5, [x4]
    cmp     x5, #0xb2
    b.ne    wrong
    ldr     x0, =done
    br      x0
done:
    b       done
wrong:
    b       wrong

    .ltorg
    .balign 65536
t0_l2:  .space 65536
k_l2:   .space 65536
l3:     .space 65536
page_a: .quad 0xa1
        .balign 65536
page_b: .quad 0xb2
        .balign 65536
