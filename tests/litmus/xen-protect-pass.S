// xen-protect-pass: a Xen-style "protect Xen" pass over live page tables:
// text made read-only, everything else execute-never, one TLB flush at the end.
//
// The image is mapped with 4 KiB pages (L2[0] -> lx), all read/write/execute.
// With the MMU on, a loop rewrites each page descriptor in place: pages below
// "etext" get AP[2] (read-only, executable), the others XN (read/write, no
// execute). Then DSB; TLBI ALLE2; DSB; ISB, and a data page is written and
// read back. The loop runs from the text it is protecting and stores only to
// lx, which stays writable.
//
// Modelled on Xen's setup_pagetables() loop "Break up the Xen mapping into 4k
// pages and protect them separately" (xen/arch/arm/mm.c: pte.pt.ro = 1 for
// text and rodata, pte.pt.xn for the rest), applied to the tables in use the
// way Linux tightens live kernel mappings (pgattr_change_is_safe() allows
// PTE_RDONLY / PTE_PXN changes, then a TLB flush).
//
// expect: clean
// item: 6, 9 (compliant: the permission-tightening loop)
//
// Rule: permission changes are not in the break-before-make list (DDI 0487
// D8.17.1, R_WHZWS); they need TLB maintenance (D8.17, R_GPPYH), done once
// at the end. Until then every access the loop makes (fetches from text,
// stores to lx) is allowed by both the old and the new permissions, so no
// access depends on a stale entry.

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
    adr     x11, lx
    orr     x9, x11, #TABLE
    str     x9, [x2]                    // L2[0] -> lx: the image in 4 KiB pages
    ldr     x9, =0x40000000 | PAGE
    mov     x12, #512
1:  str     x9, [x11], #8
    add     x9, x9, #0x1000
    subs    x12, x12, #1
    b.ne    1b
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
    adr     x11, lx                     // the descriptor of page 0
    ldr     x12, =0x40000000
    ldr     x13, =etext
    ldr     x14, =image_end
protect:
    ldr     x9, [x11]
    cmp     x12, x13
    b.hs    2f
    orr     x9, x9, #0x80               // text: AP[2], read-only
    b       3f
2:  orr     x9, x9, #(1 << 54)          // data: XN
3:  str     x9, [x11], #8
    add     x12, x12, #0x1000
    cmp     x12, x14
    b.lo    protect
    dsb     ish
    tlbi    alle2
    dsb     ish
    isb
    adr     x9, page_c
    mov     x5, #0x77
    str     x5, [x9]                    // data stays writable
    ldr     x6, [x9]
    cmp     x6, #0x77
    b.ne    wrong
done:
    b       done
wrong:                                  // the guest saw what the architecture forbids
    b       wrong

    .ltorg
    .balign 4096
etext:                                  // end of text: data and tables follow
l1:     .space 4096
l2:     .space 4096
l3:     .space 4096
lx:     .space 4096
page_a: .quad 0xa1
        .balign 4096
page_b: .quad 0xb2
        .balign 4096
page_c: .quad 0xc3
        .balign 4096
image_end:
