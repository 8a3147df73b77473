// table-store-no-dsb-mmu-on: the last table store is not completed by a DSB
// before the MMU is turned on.
//
// The invalidation is done and completed first; then the program stores the
// L2 block descriptor that identity-maps its own code, and turns the MMU on
// right away: nothing orders that store before the translation table walks
// of the instructions that follow the MMU-on.
//
// expect: missing-dsb
// item: 3 (flagged: a table store needs a DSB before the walk that uses it)
//
// Rule: the walker is a separate observer; a translation table update is
// only guaranteed visible to walks after a DSB (DDI 0487 K11.5.3.1 "Ensuring
// the visibility of updates to translation tables for a uniprocessor":
// "STR ... DSB ISH ; ensures visibility of the update to translation table
// walks"; D8.17.1 R_DDMVT step 6 "Execute a DSB instruction to ensure the new
// entry is visible").

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
    str     xzr, [x2]                   // L2[0] stays invalid until after the TLBI
    dsb     ish
    msr     ttbr0_el2, x1
    tlbi    alle2
    dsb     ish
    isb
    ldr     x9, =0x40000000 | BLOCK
    str     x9, [x2]                    // L2[0]: the identity map of this code
    ldr     x0, =SCTLR_ON
    msr     sctlr_el2, x0               // no DSB since that store
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
