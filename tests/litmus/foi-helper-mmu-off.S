// foi-helper-mmu-off: a helper outside the new identity map, called while the
// MMU is off.
//
// Tables A map the image 2 MiB at VA == PA; tables B map only the first
// 4 KiB page (the switch code). From that page: MMU off; ISB; call "helper"
// (next page: not mapped by B); return; TLBI ALLE2; DSB; TTBR0_EL2 = B; ISB;
// MMU on; ISB; "done" (first page).
//
// expect: clean
// item: 7 (compliant twin: fetches made with the MMU off are physical)
//
// Rule: after the ISB that follows the MMU-off write, instruction fetches are
// not translated (DDI 0487 D8.2 "Translation process", stage 1 disabled: flat
// map; D24.1.2.2: the SCTLR write applies after the context synchronization
// event), so the helper needs no mapping at all. Only code fetched while a
// translation may be in force must be identity-mapped: here the first page,
// which A and B both map VA == PA, around both SCTLR writes.

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
    ldr     x0, =SCTLR_OFF
    msr     sctlr_el2, x0               // MMU off
    isb
    bl      helper                      // physical fetches
    tlbi    alle2
    dsb     ish
    adr     x11, l1b
    msr     ttbr0_el2, x11
    isb
    ldr     x0, =SCTLR_ON
    msr     sctlr_el2, x0               // MMU on with tables B
    isb
    cmp     x7, #42
    b.ne    wrong
done:
    b       done
wrong:                                  // the guest saw what the architecture forbids
    b       wrong

    .ltorg

    .balign 4096
helper:                                 // a page tables B do not map
    mov     x7, #42
    ret
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
