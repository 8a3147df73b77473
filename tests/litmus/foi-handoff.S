// foi-handoff: the MMU turned off for good, and control handed to the next
// stage with translation disabled.
//
// Tables B (the only tables ever used) map just the first 4 KiB page. After
// running with them, the program turns the MMU off from that page (ISB) and
// branches to "next_stage" in the next page, which B does not map, where it
// stays with the MMU off ("done" is there too).
//
// expect: clean
// item: 7 (compliant twin: a hand-off is not judged against tables it no longer uses)
//
// Rule: after the ISB the MMU-off write is in force (DDI 0487 D24.1.2.2) and
// every fetch is physical (stage 1 disabled); nothing will ever translate
// through tables B again, so their contents cannot make a fetch go elsewhere.
// The SCTLR write itself is in identity-mapped code (same PA before and after).

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
    adr     x11, l1b                    // tables B map only the first 4 KiB
    adr     x12, l2b                    // page of the image, VA == PA
    adr     x13, l3b
    orr     x9, x12, #TABLE
    str     x9, [x11, #8]
    orr     x9, x13, #TABLE
    str     x9, [x12]
    ldr     x9, =0x40000000 | PAGE
    str     x9, [x13]
    dsb     ish
    adr     x11, l1b
    msr     ttbr0_el2, x11
    tlbi    alle2
    dsb     ish
    isb
    ldr     x0, =SCTLR_ON
    msr     sctlr_el2, x0
    isb
    add     x6, x6, #1                  // some work with the MMU on
    ldr     x0, =SCTLR_OFF
    msr     sctlr_el2, x0               // MMU off, for good
    isb
    ldr     x0, =next_stage
    br      x0
wrong:                                  // the guest saw what the architecture forbids
    b       wrong

    .ltorg

    .balign 4096
next_stage:                             // the next boot stage: runs with the MMU off
    mov     x7, #42
    b       done
done:
    b       done
    .balign 4096
l1:     .space 4096
l2:     .space 4096
l3:     .space 4096
l1b:    .space 4096
l2b:    .space 4096
l3b:    .space 4096
page_a: .quad 0xa1
        .balign 4096
page_b: .quad 0xb2
        .balign 4096
page_c: .quad 0xc3
        .balign 4096
