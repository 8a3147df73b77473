// l3-make-tlbi-use-replace: l3-make-use-replace with a TLBI between the make
// and the first use.
//
// Same sequence, but after making DVA -> page_a the program runs TLBI ALLE2;
// DSB; ISB before the first load. Architecturally the extra invalidation
// changes nothing: the defect is the later valid->valid replacement.
//
// expect: live-descriptor-change stale-tlb
// at: live-descriptor-change replace
// item: 1 (flagged; the variant bootemu already sees, per the issue)
//
// Rule: as l3-make-use-replace. The load after the TLBI caches DVA -> page_a
// (DDI 0487 D8.16, R_SQBCS); the replacement changes the output address of a valid
// entry without break-before-make (D8.17.1, R_WHZWS, R_DDMVT); the second
// load may use the cached page_a entry (D8.17, R_GPPYH).

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
    adr     x9, page_a
    orr     x11, x9, x10
make:
    str     x11, [x8]                   // invalid -> valid
    dsb     ish
    tlbi    alle2                       // not needed, and harmless
    dsb     ish
    isb
    ldr     x5, [x4]                    // DVA -> page_a
    cmp     x5, #0xa1
    b.ne    wrong
    adr     x9, page_b
    orr     x12, x9, x10
replace:
    str     x12, [x8]                   // valid -> valid, new output address
    dsb     ish
    isb
    ldr     x5, [x4]                    // may use the page_a entry
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
