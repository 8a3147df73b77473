// el2-enable-identity: the compliant MMU enable every other EL2 program builds on.
//
// Builds a 4 KiB-granule, 39-bit table (start level 1) whose level-2 entry
// maps the image's 2 MiB at VA == PA, invalidates the EL2 TLB, completes the
// invalidation with DSB NSH, turns the MMU on from identity-mapped code, and
// synchronizes with ISB. It then leaves identity-mapped code for a virtual
// alias of the image (VA 0x7fe00000, an L2 block to the same 2 MiB), runs
// there, and comes back.
//
// expect: clean
// item: baseline (compliant twin of items 3, 7, 8)
//
// Rule: the TLB is in an IMPLEMENTATION DEFINED, possibly UNKNOWN state after
// reset (DDI 0487 D8.16.1 "TLB behavior at reset"), so TLBI ALLE2 comes before
// the MMU is turned on; a TLBI is complete only after a DSB that applies to
// loads and stores, NSH being enough for a local TLBI (D8.17.8 "Ordering and
// completion of TLB maintenance instructions", R_PSMWS); the SCTLR_EL2 write
// reaches instruction fetch only after a context synchronization event (ISB)
// (D24.1.2.2 "Synchronization requirements for AArch64 System registers");
// the instructions around the SCTLR write are identity-mapped, so the next
// fetch lands on the same PA with the MMU on or off.

#define LINK_ADDRESS 0x40000000       // where the image is linked (and loaded)
#define SCTLR_OFF 0x30c50830
#define SCTLR_ON  0x30c50831
#define MAIR_VAL  0xff4400              // Attr0 Device-nGnRnE, Attr1 Normal NC, Attr2 Normal WB
#define TCR_VAL   0x80823519            // T0SZ=25, WBWA inner-shareable walks, TG0=4K, PS=40 bits
#define TABLE     0x3
#define BLOCK     0x749                 // AF, SH=inner, AP[1] (RES1 at EL2), AttrIndx=2, block
#define ALIAS     0x7fe00000

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
    orr     x3, x2, #TABLE
    str     x3, [x1, #8]                // L1[1]: VA 1..2 GiB -> l2
    ldr     x3, =0x40000000 | BLOCK
    str     x3, [x2]                    // L2[0]: identity 2 MiB block
    str     x3, [x2, #(ALIAS >> 21 & 0x1ff) * 8]   // L2[511]: alias of the same block
    dsb     sy
    msr     ttbr0_el2, x1
    tlbi    alle2
    dsb     nsh
    isb
    ldr     x0, =SCTLR_ON
    msr     sctlr_el2, x0
    isb
    ldr     x0, =ALIAS - 0x40000000 + virt
    br      x0
virt:
    add     x5, x5, #1                  // runs at the alias
    ldr     x6, =home                   // the link (identity) address
    br      x6
home:
    b       done
done:
    b       done

    .ltorg
    .balign 4096
l1: .space 4096
l2: .space 4096
