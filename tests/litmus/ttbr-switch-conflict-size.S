// ttbr-switch-conflict-size: TTBR0_EL2 switched with the MMU on to tables
// that map the same addresses with a different block size.
//
// Tables A map DVA..DVA+2M with 512 4 KiB pages of 0x40000000..; tables B map
// the same range, to the same PAs, with one 2 MiB block.
//
// expect: ttbr-switch-conflict ttbr-switch-live
// at: ttbr-switch-conflict switch
// item: 5 (conflict by block size)
//
// Rule: DDI 0487 D8.16, R_SQBCS: with the MMU on, any valid entry of tables A
// may be in the TLB (speculative walks included) when TTBR0_EL2 changes, and
// entries of tables B may join it before the TLBI that follows. A page
// entry and a block entry for the same VA may then coexist: a change of block
// size needs break-before-make unless FEAT_BBML1/2 is used (D8.17.1, R_WHZWS;
// D8.17.2 "Support levels for changing table or block size"): a conflict,
// and (catalogue) a live switch.

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
    ldr     x9, =0x40000000 | PAGE      // tables A: DVA.. -> 512 pages of 0x40000000..
    mov     x11, x3
    mov     x12, #512
1:  str     x9, [x11], #8
    add     x9, x9, #0x1000
    subs    x12, x12, #1
    b.ne    1b
    adr     x11, l1b                    // tables B: the same, but one 2 MiB block
    adr     x12, l2b
    orr     x9, x12, #TABLE
    str     x9, [x11, #8]
    ldr     x9, =0x40000000 | BLOCK
    str     x9, [x12]
    str     x9, [x12, #8]               // L2b[1]: DVA.. -> 0x40000000.. as a block
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
    ldr     x5, [x4]                    // DVA used through tables A
    tlbi    alle2                       // Xen 4.17 switch_ttbr: flush, switch, flush
    dsb     ish
    isb
    adr     x11, l1b
switch:
    msr     ttbr0_el2, x11              // with the MMU on
    isb
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
l1b:    .space 4096
l2b:    .space 4096
l3b:    .space 4096
page_a: .quad 0xa1
        .balign 4096
page_b: .quad 0xb2
        .balign 4096
page_c: .quad 0xc3
        .balign 4096
