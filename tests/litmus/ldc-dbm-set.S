// ldc-dbm-set: the DBM bit set on a live page, then TLBI.
//
// expect: clean
// el: 1
// item: 6 (compliant twin: DBM is among the changes Linux allows live)
//
// Rule: DBM (bit 51) is a permission-management bit, not in the break-before-
// make list of DDI 0487 D8.17.1, R_WHZWS (DBM matters there only for a change
// of output address); Linux pgattr_change_is_safe() allows PTE_WRITE (= DBM)
// changes on live entries. TLBI VAAE1 publishes it (D8.17, R_GPPYH).

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
    ldr     x10, =PAGE
    adr     x9, page_a
    orr     x9, x9, x10
    str     x9, [x3]                    // T1: DVA -> page_a, global

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
    ldr     x5, [x4]                    // DVA -> page_a: cached
    cmp     x5, #0xa1
    b.ne    wrong
    ldr     x11, [x3]
    orr     x12, x11, #(1 << 51)
change:
    str     x12, [x3]
    dsb     ish
    lsr     x13, x4, #12
    tlbi    vaae1, x13                  // every ASID
    dsb     ish
    isb
    ldr     x5, [x4]
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
