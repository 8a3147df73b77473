// ttbr1-replace-via-reserved: the kernel tables in TTBR1_EL1 replaced through
// the reserved table, Linux's idmap_cpu_replace_ttbr1.
//
// Running from the identity map (TTBR0), the program reads page_a through its
// kernel address, installs the reserved table in TTBR1_EL1, invalidates the
// TLB, installs the new kernel tables and reads page_a through them.
//
// expect: clean
// el: 1
// item: 5 (compliant: switch via a reserved empty table), TTBR1 coverage
//
// Rule: the two kernel tables map KOFF + page_a with different block sizes,
// which must never be in the TLB together (DDI 0487 D8.17.1, R_WHZWS;
// D8.17.2). Linux arch/arm64/mm/proc.S idmap_cpu_replace_ttbr1 /
// __idmap_cpu_set_reserved_ttbr1: from TTBR0 (identity) code, TTBR1 =
// reserved; ISB; TLBI VMALLE1; DSB NSH; ISB; TTBR1 = new; ISB. The TLBI is
// complete (DSB NSH suffices for a local TLBI, D8.17.8 R_PSMWS) before the
// new table can be walked.

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
    adr     x11, kl1b                   // new kernel tables: the same addresses,
    adr     x12, kl2b                   // mapped by one 2 MiB block instead of
    orr     x9, x12, #TABLE             // the 1 GiB block
    str     x9, [x11, #8]
    ldr     x9, =0x40000000 | BLOCK
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
    ldr     x6, =KOFF
    adr     x7, page_a
    add     x6, x6, x7                  // page_a at its kernel address
    ldr     x5, [x6]
    cmp     x5, #0xa1
    b.ne    wrong
    ldr     x9, =reserved
    msr     ttbr1_el1, x9               // __idmap_cpu_set_reserved_ttbr1
    isb
    tlbi    vmalle1
    dsb     nsh
    isb
    ldr     x9, =kl1b
    msr     ttbr1_el1, x9               // the new kernel tables
    isb
    ldr     x5, [x6]
    cmp     x5, #0xa1
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
