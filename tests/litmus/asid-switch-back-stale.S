// asid-switch-back-stale: tables of an ASID changed while another ASID runs,
// then that ASID resumed without invalidating it.
//
// EL1&0, code in TTBR1. ASID 1 (tables T1) reads DVA -> page_a (non-global).
// Through the reserved table, ASID 2 (tables T2) reads DVA -> page_b. T1 is
// then changed (DVA -> page_c) while unused; back through the reserved table
// to T1 with ASID 1, with no TLBI for ASID 1, and DVA is read.
//
// expect: missing-tlbi stale-tlb
// at: missing-tlbi back
// at: stale-tlb use
// el: 1
// item: 4 (flagged: entries of the same VA under two ASIDs must not replace each other)
//
// Rule: DDI 0487 D8.16.3.1 "Global and process-specific translation table
// entries": R_XXNPZ "A TLB entry associated with a specific ASID value ... can
// only be used to translate a VA in a context that is associated with the
// same ASID value"; R_QGKGF: nG = 1 makes the entry non-global. Switching
// TTBR0_EL1 through the empty reserved table is Linux's cpu_switch_mm()
// (cpu_set_reserved_ttbr0() before cpu_do_switch_mm()), so no TTBR write
// replaces one non-empty table by another. The code runs at its TTBR1 address
// meanwhile. The ASID 1 entry DVA -> page_a
// is never invalidated, and ASID 2's own entry for DVA cannot remove it. When
// ASID 1 returns, the TLB may hold what T1 no longer gives: the TTBR write at
// "back" needs a prior TLBI (D8.17 "TLB maintenance", R_GPPYH), and the read
// may use the page_a entry. Changing T1 while no TTBR points at it is no
// live change (no thread uses those tables).

#define LINK_ADDRESS 0x40000000         // linked and loaded here: VA == PA with the MMU off
#define SCTLR_OFF 0x30d00800            // SCTLR_EL1 RES1 bits, M=0
#define SCTLR_ON  0x30d00801            // ... M=1
#define MAIR_VAL  0xff4400              // Attr0 Device-nGnRnE, Attr1 Normal NC, Attr2 Normal WB
#define TCR_VAL   0x2b5193519           // T0SZ=T1SZ=25 (39-bit VAs, start level 1), TG0=TG1=4K, WBWA inner-shareable walks, IPS=40 bits, A1=0, 8-bit ASIDs
#define TCR_A1    (1 << 22)             // TCR_EL1.A1: the ASID comes from TTBR1_EL1
#define TABLE     0x3
#define BLOCK     0x709                 // AF, SH=inner, AttrIndx=2 (Normal WB), block, global
#define PAGE      0x70b                 // the same attributes, page, global
#define NG        0x800                 // nG: non-global (tagged with the current ASID)
#define DVA       0x80000000            // the litmus VA, in the TTBR0 range: L1[2] -> L2[0] -> L3[0]
#define KOFF      0xffffff8000000000    // TTBR1 range: kernel VA = KOFF + PA (KL1[1], a 1 GiB block)

    .text
    .global _start
_start:
    ldr     x0, =SCTLR_OFF
    msr     sctlr_el1, x0
    isb
    ldr     x0, =MAIR_VAL
    msr     mair_el1, x0
    ldr     x0, =TCR_VAL
    msr     tcr_el1, x0
    adr     x1, t1_l1
    adr     x14, kl1
    ldr     x9, =0x40000000 | BLOCK
    str     x9, [x1, #8]                // tables T1: VA 1..2 GiB identity, global
    str     x9, [x14, #8]               // KL1: KOFF + 0x40000000.. -> 0x40000000.., global
    adr     x2, t1_l2
    adr     x3, t1_l3
    orr     x9, x2, #TABLE
    str     x9, [x1, #16]               // T1 L1[2] -> t1_l2
    orr     x9, x3, #TABLE
    str     x9, [x2]                    // T1 L2[0] -> t1_l3
    adr     x11, t2_l1                  // tables T2: the same layout
    adr     x12, t2_l2
    adr     x13, t2_l3
    ldr     x9, =0x40000000 | BLOCK
    str     x9, [x11, #8]
    orr     x9, x12, #TABLE
    str     x9, [x11, #16]
    orr     x9, x13, #TABLE
    str     x9, [x12]
    ldr     x10, =PAGE | NG
    adr     x9, page_a
    orr     x9, x9, x10
    str     x9, [x3]                    // T1: DVA -> page_a, non-global
    adr     x9, page_b
    orr     x9, x9, x10
    str     x9, [x13]                   // T2: DVA -> page_b, non-global

    dsb     ish
    msr     ttbr1_el1, x14
    orr     x9, x1, #(1 << 48)          // T1, ASID 1
    msr     ttbr0_el1, x9
    tlbi    vmalle1                     // the TLB is UNKNOWN after reset
    dsb     ish
    isb
    ldr     x0, =SCTLR_ON
    msr     sctlr_el1, x0               // MMU on, from identity-mapped code
    isb
    ldr     x4, =DVA

    ldr     x0, =KOFF
    adr     x9, kernel
    add     x0, x0, x9
    br      x0                          // continue at the kernel (TTBR1) address
kernel:
    ldr     x5, [x4]                    // ASID 1: DVA -> page_a
    cmp     x5, #0xa1
    b.ne    wrong
    ldr     x9, =reserved
    msr     ttbr0_el1, x9               // reserved table, ASID 0
    isb
    ldr     x9, =t2_l1
    orr     x9, x9, #(2 << 48)
    msr     ttbr0_el1, x9               // T2, ASID 2
    isb
    ldr     x5, [x4]                    // ASID 2: DVA -> page_b
    cmp     x5, #0xb2
    b.ne    wrong
    adr     x8, t1_l3                   // T1 L3, through its kernel address
    ldr     x9, =page_c
    ldr     x10, =PAGE | NG
    orr     x9, x9, x10
    str     x9, [x8]                    // T1: DVA -> page_c, T1 not in use
    dsb     ish
    ldr     x9, =reserved
    msr     ttbr0_el1, x9
    isb
    ldr     x9, =t1_l1
    orr     x9, x9, #(1 << 48)
back:
    msr     ttbr0_el1, x9               // T1, ASID 1: never invalidated
    isb
use:
    ldr     x5, [x4]                    // may still read page_a

    ldr     x0, =done
    br      x0                          // back to the identity address
done:
    b       done
wrong:
    b       wrong

    .ltorg
    .balign 4096
t1_l1:  .space 4096
t1_l2:  .space 4096
t1_l3:  .space 4096
t2_l1:  .space 4096
t2_l2:  .space 4096
t2_l3:  .space 4096
kl1:    .space 4096
kl1b:   .space 4096
kl2b:   .space 4096
reserved: .space 4096                   // an empty table: no translation through it
page_a: .quad 0xa1
        .balign 4096
page_b: .quad 0xb2
        .balign 4096
page_c: .quad 0xc3
        .balign 4096
