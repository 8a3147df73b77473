// g64-el2-bbm: break-before-make on a 64 KiB page, EL2, 64 KiB granule.
//
// TCR_EL2.TG0 = 64K, T0SZ = 22: the walk starts at level 2 (512 MiB per
// entry) and level-3 pages are 64 KiB. DVA -> page_a is live; it is remapped
// to page_b with invalid entry, DSB, TLBI VAE2, DSB, new entry, DSB, ISB,
// and must then read page_b.
//
// expect: clean
// item: granule coverage (64K), compliant twin of items 1, 2, 6
//
// Rule: DDI 0487 D8.17.1 "Using break-before-make when updating translation
// table entries", R_DDMVT; D8.17.8, R_LXHLD, R_BLDZX. The granule changes the
// table geometry (D8.2 "Translation process"), not the rules.

#define LINK_ADDRESS 0x40000000
#define SCTLR_OFF 0x30c50830
#define SCTLR_ON  0x30c50831
#define MAIR_VAL  0xff4400              // Attr0 Device-nGnRnE, Attr1 Normal NC, Attr2 Normal WB
#define TCR_VAL   0x80827516            // T0SZ=22 (42-bit VA, start level 2), TG0=64K, WBWA inner-shareable walks, PS=40 bits
#define TABLE     0x3
#define PAGE      0x74b                 // AF, SH=inner, AP[1] (RES1 at EL2), AttrIndx=2, page (64 KiB)
#define DVA       0x40200000            // the litmus VA: L3[0x20]

    .text
    .global _start
_start:
    ldr     x0, =SCTLR_OFF
    msr     sctlr_el2, x0
    isb
    ldr     x0, =MAIR_VAL
    msr     mair_el2, x0
    ldr     x0, =TCR_VAL
    msr     tcr_el2, x0
    adr     x1, l2
    adr     x3, l3
    orr     x9, x3, #TABLE
    str     x9, [x1, #2 * 8]            // L2[2]: VA 1 GiB..1.5 GiB -> l3
    ldr     x9, =0x40000000 | PAGE      // L3[0..7]: the image, 64 KiB pages, VA == PA
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
    msr     ttbr0_el2, x1
    tlbi    alle2
    dsb     ish
    isb
    ldr     x0, =SCTLR_ON
    msr     sctlr_el2, x0
    isb
    ldr     x4, =DVA
    add     x8, x3, #0x20 * 8           // &L3[0x20]
    ldr     x5, [x4]                    // DVA -> page_a: cached
    cmp     x5, #0xa1
    b.ne    wrong
    adr     x9, page_b
    orr     x12, x9, x10
    str     xzr, [x8]                   // break
    dsb     ish
    lsr     x13, x4, #12
    tlbi    vae2, x13
    dsb     ish
    str     x12, [x8]                   // make
    dsb     ish
    isb
    ldr     x5, [x4]
    cmp     x5, #0xb2
    b.ne    wrong

done:
    b       done
wrong:
    b       wrong

    .ltorg
    .balign 65536
l2:     .space 65536
l3:     .space 65536
page_a: .quad 0xa1
        .balign 65536
page_b: .quad 0xb2
        .balign 65536
