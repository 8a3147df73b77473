// report-esr-abort: a data abort taken to the program's own EL2 vector.
//
// With the MMU on and VBAR_EL2 set, the program loads from VA 0x40400000,
// which L2[2] leaves unmapped. The handler records ESR_EL2 and returns past
// the load; the program checks EC = 0x25 (Data Abort without a change of
// Exception level) and DFSC = 0b000110 (Translation fault, level 2).
//
// expect: unexpected-exception
// names: unexpected-exception 0x25
// item: 11 (compliant twin: the finding shows the syndrome of this exception)
//
// Rule: a translation fault is never cached and always reported (DDI 0487
// D8.16, R_XCLRD); the syndrome of a Data Abort (ESR_ELx.EC 0b100101 when
// taken to the same EL, DFSC 0b0001LL for a level LL translation fault) is
// defined in D24.2.46 "ESR_EL2, Exception Syndrome Register (EL2)". Exception
// entry and return are context synchronization events (D24.1.2.2).

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
    adr     x0, vectors
    msr     vbar_el2, x0
    isb
    ldr     x4, =0x40400000
    ldr     x5, [x4]                    // translation fault, level 2
    cmp     x21, #1
    b.ne    wrong
    lsr     x23, x20, #26
    cmp     x23, #0x25
    b.ne    wrong
    and     x23, x20, #0x3f
    cmp     x23, #0x6
    b.ne    wrong
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

    .balign 2048
vectors:                                // VBAR_EL2: only "current EL with SP_ELx, synchronous"
    .space  0x200
    mrs     x20, esr_el2                // the syndrome, for the program to check
    add     x21, x21, #1                // exceptions taken
    mrs     x22, elr_el2
    add     x22, x22, #4                // resume after the faulting instruction
    msr     elr_el2, x22
    eret
