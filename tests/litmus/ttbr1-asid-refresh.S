// ttbr1-asid-refresh: Linux's context switch with TCR_EL1.A1 = 1: reserved
// TTBR0, the new ASID written into TTBR1_EL1 over the same kernel tables, then
// the new TTBR0.
//
// EL1&0, TCR_EL1.A1 = 1 (the ASID is TTBR1_EL1.ASID), code in TTBR1. Process
// 1 (T1, ASID 1) reads DVA -> page_a. Then, as cpu_switch_mm() /
// cpu_do_switch_mm() do: TTBR0_EL1 = reserved; ISB; TTBR1_EL1 = same kernel
// table with ASID 2; ISB; TTBR0_EL1 = T2; ISB. DVA must read page_b.
//
// expect: clean
// el: 1
// item: 5 (compliant: ASID-only TTBR1 change over identical tables, switches from the reserved table)
//
// Rule: Linux arch/arm64/include/asm/mmu_context.h cpu_switch_mm()
// (cpu_set_reserved_ttbr0(), then cpu_do_switch_mm()) and arch/arm64/mm/proc.S
// cpu_do_switch_mm ("bfi x2, x1, #48, #16 // set the ASID; msr ttbr1_el1, x2
// // in TTBR1 (since TCR.A1 is set); isb; msr ttbr0_el1, x3; isb"). The TTBR1
// write changes only the ASID over identical tables: every kernel translation
// is unchanged and global (DDI 0487 D8.16.3.1, R_SCBSR: A1 selects the ASID;
// R_XXNPZ). With TTBR0 reserved no ASID 1 user entry can be used under ASID 2,
// and the TTBR0 writes are to and from an empty table.

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
    ldr     x0, =TCR_VAL | TCR_A1
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
    orr     x14, x14, #(1 << 48)          // ASID 1, in TTBR1 (TCR_EL1.A1 = 1)
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
    ldr     x5, [x4]                    // process 1
    cmp     x5, #0xa1
    b.ne    wrong
    ldr     x9, =reserved
    msr     ttbr0_el1, x9               // cpu_set_reserved_ttbr0()
    isb
    mrs     x9, ttbr1_el1
    mov     x13, #2
    bfi     x9, x13, #48, #16           // the new ASID ...
asid:
    msr     ttbr1_el1, x9               // ... in TTBR1 (TCR.A1 is set)
    isb
    ldr     x9, =t2_l1
    msr     ttbr0_el1, x9               // now update TTBR0
    isb
    ldr     x5, [x4]                    // process 2
    cmp     x5, #0xb2
    b.ne    wrong

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
