// ldc-block-split-live: a live 2 MiB block replaced by a table of pages that
// map the same addresses.
//
// L2[1] maps DVA..DVA+2M as one block to 0x40000000.. (an alias of the image)
// and DVA is read. The program fills l3 with the 512 equivalent 4 KiB pages,
// then overwrites L2[1] with a table descriptor -> l3 (same output addresses,
// same attributes), then TLBI, DSB, ISB.
//
// expect: live-descriptor-change
// at: live-descriptor-change split
// names: live-descriptor-change size
// item: 6 (flagged, and the finding names the field)
//
// Rule: DDI 0487 D8.17.1, R_WHZWS: without FEAT_BBML1/FEAT_BBML2 ("Support
// levels for changing table or block size", D8.17.2, R_KFLJB), "changing
// from a larger size to a smaller size, such as when a level 2 Block
// descriptor is replaced with a Table descriptor" needs break-before-make;
// the block entry and page entries may otherwise coexist (TLB conflict).

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
    ldr     x9, =0x40000000 | BLOCK
    str     x9, [x2, #8]                // L2[1]: DVA.. -> 0x40000000.., a 2 MiB block
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
    ldr     x5, [x4]                    // the block entry is cached
    ldr     x9, =0x40000000 | PAGE
    mov     x11, x8
    mov     x12, #512
1:  str     x9, [x11], #8               // l3: the same 2 MiB in pages (not yet reachable)
    add     x9, x9, #0x1000
    subs    x12, x12, #1
    b.ne    1b
    dsb     ish
    adr     x9, l3
    orr     x9, x9, #TABLE
    adr     x11, l2
split:
    str     x9, [x11, #8]               // L2[1]: block -> table
    dsb     ish
    tlbi    alle2
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
