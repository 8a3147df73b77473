// ldc-oa-live: a live page moved to another output address in one store.
//
// expect: live-descriptor-change
// at: live-descriptor-change replace
// item: 6, 11 (flagged, reported once at its own store)
//
// Rule: DDI 0487 D8.17.1 "Using break-before-make when updating translation
// table entries", R_WHZWS: a new
// output address (the old entry is writable) needs break-before-make; the
// page_a entry is cached (D8.16, R_SQBCS). Nothing reads DVA afterwards, so
// no stale use.

#define LINK_ADDRESS 0x40000000         // linked and loaded here: VA == PA with the MMU off
#define SCTLR_OFF 0x30c50830            // SCTLR_EL2 RES1 bits, M=0
#define SCTLR_ON  0x30c50831            // ... M=1
#define MAIR_VAL  0xff4400              // Attr0 Device-nGnRnE, Attr1 Normal NC, Attr2 Normal WB
#define TCR_VAL   0x80823519            // T0SZ=25 (start level 1), WBWA inner-shareable walks, TG0=4K, PS=40 bits
#define TABLE     0x3
#define BLOCK     0x749                 // AF, SH=inner, AP[1] (RES1 at EL2), AttrIndx=2 (Normal WB), block
#define PAGE      0x74b                 // the same attributes, page
#define DVA       0x40200000            // the litmus VA: L2[1] -> l3, L3[0]

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
    adr     x1, l1
    adr     x2, l2
    adr     x3, l3
    orr     x9, x2, #TABLE
    str     x9, [x1, #8]                // L1[1] -> l2 (VA 1 GiB..2 GiB)
    ldr     x9, =0x40000000 | BLOCK
    str     x9, [x2]                    // L2[0]: the image 2 MiB block, VA == PA
    orr     x9, x3, #TABLE
    str     x9, [x2, #8]                // L2[1] -> l3 (VA 0x40200000..)
    adr     x9, page_a
    ldr     x10, =PAGE
    orr     x9, x9, x10
    str     x9, [x3]                    // L3[0]: DVA -> page_a, before the MMU is on
    dsb     ish                         // the table stores are visible to walks
    msr     ttbr0_el2, x1
    tlbi    alle2                       // the TLB is UNKNOWN after reset
    dsb     ish                         // ... and the invalidation is complete
    isb
    ldr     x0, =SCTLR_ON
    msr     sctlr_el2, x0               // MMU on, from identity-mapped code
    isb
    ldr     x4, =DVA
    adr     x8, l3                      // &L3[0], the descriptor of DVA
    ldr     x10, =PAGE
    ldr     x5, [x4]                    // DVA -> page_a: the entry is now cached
    cmp     x5, #0xa1
    b.ne    wrong
    ldr     x11, [x8]                   // the live descriptor

    adr     x9, page_b
    orr     x12, x9, x10
replace:
    str     x12, [x8]                   // valid -> valid, new output address
    dsb     ish
    isb
done:
    b       done
wrong:                                  // the guest saw what the architecture forbids
    b       wrong

    .ltorg
    .balign 4096
l1:     .space 4096
l2:     .space 4096
l3:     .space 4096
page_a: .quad 0xa1
        .balign 4096
page_b: .quad 0xb2
        .balign 4096
page_c: .quad 0xc3
        .balign 4096
