/*
 * head.S - bootemu's own arm64 hypervisor entry code.
 *
 * Laid out like Xen's after its 2022 arm64 layout rework: the image is linked
 * at XEN_VIRT_START, in level-0 slot 1 (512 GiB + 2 MiB), so that the identity
 * map of wherever it was loaded (slot 0 for RAM below 512 GiB) never shares a
 * level-0 entry with the image's own mapping.
 *
 * The boot path, in order:
 *   1. _start                      check EL2, find the load address, clear the BSS
 *   2. create_boot_page_tables     image at its link address + identity map of it
 *   3. enable_mmu                  MMU on (identity-mapped), jump to the link address
 *   4. create_runtime_page_tables  the tables used from now on; they identity-map
 *                                  only the page of switch_ttbr_id
 *   5. switch_ttbr_id              boot tables -> runtime tables, break-before-make:
 *                                  MMU off, TLB flush, TTBR0_EL2 write, MMU on,
 *                                  all from an identity-mapped page
 *   6. remove_identity_mapping     then on to start_c
 *
 * Entry, as in the Linux arm64 Image boot protocol: EL2, MMU and D-cache off,
 * x0 = physical address of the device tree.  Any 2 MiB aligned load address
 * below the CPU's physical address size works, except one in a level-0 slot a
 * static region of layout.h uses (then boot_failure, BOOT_ERR_IDMAP_CLASH).
 *
 * Registers kept for the whole boot path (no routine below clobbers them):
 *   x19  physical address of _start, i.e. the load address
 *   x20  phys_offset = load address - link address: PA = VA + x20 for any
 *        byte of the image
 *   x21  physical address of the device tree
 *
 * Written for keystone (through emu.assembler) as much as for GNU as: one
 * section only, no :lo12: relocations (keystone aborts on them).  Addresses
 * come from adr, which is PC-relative (physical while the MMU is off, virtual
 * once running at the link address), and from literal pools (ldr xN, =sym),
 * which always hold link addresses.
 */

#include "arm64.h"
#include "layout.h"

/* The image is linked where the layout puts it (emu.assembler reads this). */
#define LINK_ADDRESS XEN_VIRT_START

/* ------------------------------------------------------------------------
 * Macros
 */

/*
 * set_table_entry: point the entry of table \tbl that translates \va at the
 * next-level table whose physical address is in \next_pa.
 *   in:  \tbl      address the table is written through
 *        \next_pa  physical address of the next-level table (page aligned)
 *        \va       virtual address being mapped
 *        \shift    L0_SHIFT, L1_SHIFT or L2_SHIFT: the level of \tbl
 *   clobbers: \tmp1, \tmp2
 */
.macro set_table_entry, tbl, next_pa, va, shift, tmp1, tmp2
    ubfx    \tmp1, \va, #\shift, #TABLE_INDEX_BITS
    orr     \tmp2, \next_pa, #PT_TABLE
    str     \tmp2, [\tbl, \tmp1, lsl #3]
.endm

/*
 * set_leaf_entry: map \va to \pa with a block (levels 1-2) or page (level 3)
 * descriptor in table \tbl.
 *   in:  \tbl, \va, \shift as for set_table_entry
 *        \pa     physical address, aligned down to the entry's size here
 *        \attrs  descriptor bits (PT_MEM_BLOCK or PT_MEM_PAGE)
 *   clobbers: \tmp1, \tmp2
 */
.macro set_leaf_entry, tbl, pa, va, shift, attrs, tmp1, tmp2
    ubfx    \tmp1, \va, #\shift, #TABLE_INDEX_BITS
    lsr     \tmp2, \pa, #\shift
    lsl     \tmp2, \tmp2, #\shift
    /* The low bits are clear, so add works as orr, and takes any 12-bit value. */
    add     \tmp2, \tmp2, #\attrs
    str     \tmp2, [\tbl, \tmp1, lsl #3]
.endm

/*
 * check_idmap_slot: branch to idmap_clash if level-0 slot \xslot is one of
 * the slots the region [\start, \start + \size) covers.
 *   clobbers: \xtmp
 */
.macro check_idmap_slot, xslot, xtmp, start, size
    /* Unsigned range check: slot - first <= last - first. */
    sub     \xtmp, \xslot, #((\start) >> L0_SHIFT)
    cmp     \xtmp, #((((\start) + (\size) - 1) >> L0_SHIFT) - ((\start) >> L0_SHIFT))
    b.ls    idmap_clash
.endm

/* One check_idmap_slot per static region, through layout.h's list. */
#define CHECK_IDMAP_SLOT(start, size) check_idmap_slot x0, x1, (start), (size) ;

/*
 * read_pa_range: \xd = ID_AA64MMFR0_EL1.PARange, limited to PARANGE_48 (the
 * most a 4 KiB-granule descriptor can address).
 *   clobbers: \xtmp
 */
.macro read_pa_range, xd, xtmp
    mrs     \xd, ID_AA64MMFR0_EL1
    ubfx    \xd, \xd, #0, #4
    mov     \xtmp, #PARANGE_48
    cmp     \xd, \xtmp
    csel    \xd, \xd, \xtmp, ls
.endm

/* ------------------------------------------------------------------------
 * Text
 */

/*
 * _start: entry point.
 *   in:  EL2, MMU and D-cache off, x0 = physical address of the device tree
 *   out: does not return; sets x19, x20, x21 for the rest of the boot path
 */
_start:
    mov     x21, x0                         /* keep the device tree address */

    /* 1. Only EL2 is supported: check before touching any EL2 register. */
    mrs     x0, CurrentEL
    cmp     x0, #CURRENTEL_EL2
    b.eq    1f
    mov     x0, #BOOT_ERR_NOT_EL2
    b       boot_failure
1:
    /* 2. Load address (adr is PC-relative, and PC is physical) and phys_offset. */
    adr     x19, _start
    ldr     x0, =_start                     /* link address */
    sub     x20, x19, x0

    /* 3. The boot tables map the image with 2 MiB blocks. */
    tst     x19, #(SZ_2M - 1)
    b.eq    2f
    mov     x0, #BOOT_ERR_MISALIGNED
    b       boot_failure
2:
    /* 4. The page tables live in the BSS, which the loader leaves as it is. */
    bl      zero_bss

    /* 5. Tables to turn the MMU on with (may refuse the load address). */
    bl      create_boot_page_tables

    /* 6. MMU on; does not return: goes on at primary_switched, at its link address. */
    b       enable_mmu

/*
 * zero_bss: clear __bss_start .. __bss_end (16-byte aligned bounds).
 *   in:  MMU off (adr gives physical addresses)
 *   clobbers: x0, x1
 */
zero_bss:
    adr     x0, __bss_start
    adr     x1, __bss_end
1:  cmp     x0, x1
    b.hs    2f
    stp     xzr, xzr, [x0], #16
    b       1b
2:  ret

/*
 * create_boot_page_tables: the tables enable_mmu turns the MMU on with.
 *   - the image's 2 MiB at its link address -> load address, one block:
 *       boot_pgtable -> boot_first -> boot_second[block]
 *   - the same 2 MiB identity-mapped (VA == PA), in the load address's own
 *     level-0 slot with tables of its own:
 *       boot_pgtable -> boot_first_id -> boot_second_id[block]
 * Before writing anything, fails if the image is beyond the CPU's physical
 * address size (BOOT_ERR_PA_RANGE), or if the load address's level-0 slot is
 * one a static region uses (BOOT_ERR_IDMAP_CLASH): the two would then share
 * a level-1 table, and the identity map could overlap the region.
 *   in:  x19; MMU off (adr gives physical addresses), BSS clear
 *   clobbers: x0-x5
 */
create_boot_page_tables:
    /* 1. The whole image must lie below the physical address size. */
    read_pa_range x0, x1
    adr     x1, pa_range_bits
    ldrb    w1, [x1, x0]                    /* PA size in bits */
    adr     x2, _end
    sub     x2, x2, #1                      /* last byte of the image */
    lsr     x2, x2, x1
    cbz     x2, 1f
    mov     x0, #BOOT_ERR_PA_RANGE
    b       boot_failure
1:
    /* 2. The identity map needs a level-0 slot no static region uses. */
    lsr     x0, x19, #L0_SHIFT
    STATIC_REGIONS(CHECK_IDMAP_SLOT)

    /* 3. The image at its link address. */
    sub     x3, x19, x20                    /* link address of _start */
    adr     x0, boot_pgtable
    adr     x1, boot_first
    set_table_entry x0, x1, x3, L0_SHIFT, x4, x5
    adr     x0, boot_first
    adr     x1, boot_second
    set_table_entry x0, x1, x3, L1_SHIFT, x4, x5
    set_leaf_entry x1, x19, x3, L2_SHIFT, PT_MEM_BLOCK, x4, x5

    /* 4. The identity map: VA = PA = load address. */
    adr     x0, boot_pgtable
    adr     x1, boot_first_id
    set_table_entry x0, x1, x19, L0_SHIFT, x4, x5
    adr     x0, boot_first_id
    adr     x1, boot_second_id
    set_table_entry x0, x1, x19, L1_SHIFT, x4, x5
    set_leaf_entry x1, x19, x19, L2_SHIFT, PT_MEM_BLOCK, x4, x5
    ret

/* Reached from check_idmap_slot. */
idmap_clash:
    mov     x0, #BOOT_ERR_IDMAP_CLASH
    b       boot_failure

/*
 * enable_mmu: turn the MMU on with the boot tables, then go on at the link
 * (virtual) address of primary_switched.
 *   in:  x19, x20; MMU off, running at the load address (PC == PA);
 *        boot tables built
 *   out: does not return
 *   clobbers: x0-x2
 * From the msr SCTLR_EL2 on, up to the br, every fetch goes through the
 * boot tables' identity map, which is why this code runs at its PA.
 */
enable_mmu:
    /* 1. Memory attributes, translation control, tables. */
    ldr     x0, =MAIR_EL2_VALUE
    msr     MAIR_EL2, x0
    read_pa_range x1, x2
    ldr     x0, =TCR_EL2_VALUE
    bfi     x0, x1, #TCR_PS_SHIFT, #3       /* PS = the CPU's PA size */
    msr     TCR_EL2, x0
    adr     x0, boot_pgtable
    msr     TTBR0_EL2, x0
    isb

    /* 2. No translation cached from before may survive into the MMU-on world. */
    tlbi    alle2
    dsb     nsh

    /* 3. MMU and caches on. */
    ldr     x0, =SCTLR_EL2_MMU_ON
    msr     SCTLR_EL2, x0
    isb

    /* 4. To the link address: the literal pool holds it. */
    ldr     x0, =primary_switched
    br      x0

/*
 * primary_switched: the first code run at the link address.
 *   in:  x19, x20, x21; MMU on with the boot tables
 *   out: does not return; start_c gets x0 = device tree address
 */
primary_switched:
    /* 1. The tables to run on from now on. */
    bl      create_runtime_page_tables

    /*
     * 2. Switch to the runtime tables.  switch_ttbr_id turns the MMU off, so
     * it is called through its identity alias (link address + phys_offset);
     * blr leaves the virtual return address in lr.
     */
    adr     x0, runtime_pgtable
    add     x0, x0, x20                     /* PA of the runtime level-0 table */
    adr     x1, switch_ttbr_id
    add     x1, x1, x20                     /* identity alias: VA == PA */
    blr     x1

    /* 3. The identity map is no longer needed. */
    bl      remove_identity_mapping

    /* 4. On to the C entry point with the device tree address. */
    mov     x0, x21
    b       start_c

/*
 * create_runtime_page_tables: the tables used once boot is over, separate
 * from the boot tables.
 *   - the image at its link address with 4 KiB pages, _start .. _end:
 *       runtime_pgtable -> runtime_first -> runtime_second -> runtime_third[pages]
 *   - the identity map of only the page that holds switch_ttbr_id, in its
 *     own level-0 slot with tables of its own:
 *       runtime_pgtable -> runtime_first_id -> runtime_second_id
 *                       -> runtime_third_id[page]
 * The tables are written through their link addresses (the boot tables map
 * the image); descriptors hold physical addresses (VA + x20).
 *   in:  x20; MMU on with the boot tables
 *   clobbers: x0-x5
 */
create_runtime_page_tables:
    /* 1. The image: levels 0 to 2. */
    adr     x2, _start                      /* VA being mapped */
    adr     x0, runtime_pgtable
    adr     x1, runtime_first
    add     x1, x1, x20
    set_table_entry x0, x1, x2, L0_SHIFT, x4, x5
    adr     x0, runtime_first
    adr     x1, runtime_second
    add     x1, x1, x20
    set_table_entry x0, x1, x2, L1_SHIFT, x4, x5
    adr     x0, runtime_second
    adr     x1, runtime_third
    add     x1, x1, x20
    set_table_entry x0, x1, x2, L2_SHIFT, x4, x5

    /* 2. The image: one level-3 page per 4 KiB of _start .. _end. */
    adr     x0, runtime_third
    adr     x3, _end
1:  add     x1, x2, x20                     /* PA of the page */
    set_leaf_entry x0, x1, x2, L3_SHIFT, PT_MEM_PAGE, x4, x5
    add     x2, x2, #PAGE_SIZE
    cmp     x2, x3
    b.lo    1b

    /* 3. The identity map of switch_ttbr_id's page: VA = PA. */
    adr     x2, switch_ttbr_id
    add     x2, x2, x20                     /* its PA, also the VA mapped */
    adr     x0, runtime_pgtable
    adr     x1, runtime_first_id
    add     x1, x1, x20
    set_table_entry x0, x1, x2, L0_SHIFT, x4, x5
    adr     x0, runtime_first_id
    adr     x1, runtime_second_id
    add     x1, x1, x20
    set_table_entry x0, x1, x2, L1_SHIFT, x4, x5
    adr     x0, runtime_second_id
    adr     x1, runtime_third_id
    add     x1, x1, x20
    set_table_entry x0, x1, x2, L2_SHIFT, x4, x5
    adr     x0, runtime_third_id
    set_leaf_entry x0, x2, x2, L3_SHIFT, PT_MEM_PAGE, x4, x5

    /* 4. The table walker must see the descriptors before they are used. */
    dsb     ishst
    ret

/*
 * remove_identity_mapping: take the identity map of switch_ttbr_id out of
 * the runtime tables (clear its level-0 entry), then flush the TLB.
 *   in:  x20; MMU on with the runtime tables
 *   clobbers: x0, x1
 */
remove_identity_mapping:
    /* 1. Level-0 index of the identity alias. */
    adr     x0, switch_ttbr_id
    add     x0, x0, x20
    ubfx    x0, x0, #L0_SHIFT, #TABLE_INDEX_BITS
    /* 2. Invalidate the entry, through the table's link address. */
    adr     x1, runtime_pgtable
    str     xzr, [x1, x0, lsl #3]
    /* 3. Store visible to the walker, then no cached copy of the old entry. */
    dsb     ishst
    tlbi    alle2
    dsb     ish
    isb
    ret

/*
 * start_c: where the C entry point would be called.  This image has no C
 * part: the CPU waits here, and this is where a boot run ends.
 *   in:  x0 = device tree address; MMU on with the runtime tables
 */
start_c:
    wfe
    b       start_c

/*
 * boot_failure: park the CPU after an unrecoverable boot error.
 *   in:  x0 = failure code (BOOT_ERR_* in layout.h), left there for a debugger
 *   out: does not return
 *   clobbers: nothing
 */
boot_failure:
    wfe
    b       boot_failure

/* PA size in bits for each ID_AA64MMFR0_EL1.PARange value up to PARANGE_48. */
pa_range_bits:
    .byte   32, 36, 40, 42, 44, 48
    .align  2

/*
 * The literal pool of everything above, inside the loaded image.  Aligned
 * explicitly: keystone and GNU as pad an .ltorg differently (nop / zeros).
 */
    .align  3
    .ltorg

/*
 * switch_ttbr_id: replace the tables in TTBR0_EL2, break-before-make.
 *
 * Called through its identity alias (VA == PA): it turns the MMU off, and
 * with the MMU off fetches are physical, so the PC must already be a
 * physical address.  When the MMU comes back on, the next fetch goes through
 * the new tables, which must identity-map this page too.  Nothing else
 * shares the page (aligned before, padded after), so that identity map
 * exposes this routine only.
 *   in:  x0 = physical address of the new level-0 table
 *        lr = virtual return address (mapped by the new tables)
 *   out: TTBR0_EL2 = x0, MMU on
 *   clobbers: x1
 */
    .align  PAGE_SHIFT
switch_ttbr_id:
    /* 1. Table writes and earlier accesses complete before the MMU goes off. */
    dsb     sy
    isb

    /* 2. MMU off: from the next instruction on, fetches are physical. */
    mrs     x1, SCTLR_EL2
    bic     x1, x1, #SCTLR_M
    msr     SCTLR_EL2, x1
    isb

    /* 3. Drop every translation cached from the old tables. */
    tlbi    alle2
    dsb     nsh
    isb

    /* 4. The new tables. */
    msr     TTBR0_EL2, x0
    isb

    /* 5. Instructions may have been cached under the old translations. */
    ic      iallu
    dsb     nsh
    isb

    /* 6. MMU on: the next fetch goes through the new tables' identity map. */
    orr     x1, x1, #SCTLR_M
    msr     SCTLR_EL2, x1
    isb

    /* 7. Back to the caller, at its virtual address. */
    ret

    /* Pad to the end of the page: nothing else may share it. */
    .align  PAGE_SHIFT

/* ------------------------------------------------------------------------
 * BSS: not in the loaded file, cleared by zero_bss.  Page tables only, one
 * 4 KiB page each.
 */
    .align  PAGE_SHIFT
__bss_start:
boot_pgtable:           .space  PAGE_SIZE   /* boot, level 0 */
boot_first:             .space  PAGE_SIZE   /* boot, level 1, image */
boot_second:            .space  PAGE_SIZE   /* boot, level 2, image */
boot_first_id:          .space  PAGE_SIZE   /* boot, level 1, identity map */
boot_second_id:         .space  PAGE_SIZE   /* boot, level 2, identity map */
runtime_pgtable:        .space  PAGE_SIZE   /* runtime, level 0 */
runtime_first:          .space  PAGE_SIZE   /* runtime, level 1, image */
runtime_second:         .space  PAGE_SIZE   /* runtime, level 2, image */
runtime_third:          .space  PAGE_SIZE   /* runtime, level 3, image */
runtime_first_id:       .space  PAGE_SIZE   /* runtime, level 1, identity map */
runtime_second_id:      .space  PAGE_SIZE   /* runtime, level 2, identity map */
runtime_third_id:       .space  PAGE_SIZE   /* runtime, level 3, identity map */
__bss_end:
_end:

/*
 * Build-time check: the boot tables map the image with one 2 MiB block.
 * (That the image fits in 2 MiB is checked by the tests: keystone takes any
 * .if on a difference of labels as true.)
 */
    .if (XEN_VIRT_START) & (SZ_2M - 1)
    .error "XEN_VIRT_START must be 2 MiB aligned"
    .endif
