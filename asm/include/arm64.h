/*
 * arm64.h - architectural constants used by head.S: exception levels,
 * system register fields and stage-1 translation table descriptors for the
 * EL2 (non-VHE) translation regime with a 4 KiB granule.
 *
 * These are facts of the Arm architecture, not choices of the layout, so
 * unlike layout.h they are not meant to be overridden.  Plain integers and
 * shifts only: the values end up in assembler immediates.
 */
#ifndef BOOTEMU_ARM64_H
#define BOOTEMU_ARM64_H

/* CurrentEL holds the exception level in bits [3:2]. */
#define CURRENTEL_EL2           (2 << 2)

/* Granule and translation levels: 4 KiB pages, 9 bits of VA per level. */
#define PAGE_SHIFT              12
#define PAGE_SIZE               (1 << PAGE_SHIFT)
#define TABLE_INDEX_BITS        9
#define L0_SHIFT                39      /* one level-0 entry covers 512 GiB */
#define L1_SHIFT                30      /* one level-1 entry covers 1 GiB */
#define L2_SHIFT                21      /* one level-2 entry covers 2 MiB */
#define L3_SHIFT                12      /* one level-3 entry covers 4 KiB */
#define SZ_2M                   (1 << L2_SHIFT)

/*
 * Descriptor bits (stage 1, EL2 regime).  Bits [1:0]: 0b11 is a table at
 * levels 0-2 and a page at level 3, 0b01 a block at levels 1-2.
 */
#define PT_VALID                (1 << 0)
#define PT_TABLE                (3 << 0)
#define PT_BLOCK                (1 << 0)
#define PT_PAGE                 (3 << 0)
#define PT_ATTRINDX(n)          ((n) << 2)      /* index into MAIR_EL2 */
#define PT_AP_RW                (0 << 6)        /* AP[2:1] = 00: read/write */
#define PT_SH_INNER             (3 << 8)        /* inner shareable */
#define PT_AF                   (1 << 10)       /* access flag: no fault on first use */

/* MAIR_EL2 attribute indices and encodings. */
#define MT_NORMAL               0       /* normal memory, write-back, read/write-allocate */
#define MT_DEVICE_nGnRE         1
#define MT_NORMAL_NC            2
#define MAIR_ATTR_NORMAL        0xff
#define MAIR_ATTR_DEVICE_nGnRE  0x04
#define MAIR_ATTR_NORMAL_NC     0x44
#define MAIR_EL2_VALUE          ((MAIR_ATTR_NORMAL << (8 * MT_NORMAL)) |            \
                                 (MAIR_ATTR_DEVICE_nGnRE << (8 * MT_DEVICE_nGnRE)) | \
                                 (MAIR_ATTR_NORMAL_NC << (8 * MT_NORMAL_NC)))

/* Leaf descriptors for the image: normal memory, inner shareable, accessed. */
#define PT_MEM_ATTRS            (PT_AF | PT_SH_INNER | PT_AP_RW | PT_ATTRINDX(MT_NORMAL))
#define PT_MEM_BLOCK            (PT_MEM_ATTRS | PT_BLOCK)
#define PT_MEM_PAGE             (PT_MEM_ATTRS | PT_PAGE)

/* TCR_EL2 (non-VHE layout). */
#define TCR_T0SZ(bits)          (64 - (bits))   /* VA size 2^bits */
#define TCR_IRGN0_WBWA          (1 << 8)
#define TCR_ORGN0_WBWA          (1 << 10)
#define TCR_SH0_INNER           (3 << 12)
#define TCR_TG0_4K              (0 << 14)
#define TCR_PS_SHIFT            16              /* PS: physical address size, 3 bits */
#define TCR_EL2_RES1            ((1 << 23) | (1 << 31))
#define TCR_EL2_VALUE           (TCR_T0SZ(48) | TCR_IRGN0_WBWA | TCR_ORGN0_WBWA |  \
                                 TCR_SH0_INNER | TCR_TG0_4K | TCR_EL2_RES1)

/* SCTLR_EL2 (non-VHE layout). */
#define SCTLR_M                 (1 << 0)        /* stage-1 MMU enable */
#define SCTLR_C                 (1 << 2)        /* data cacheability */
#define SCTLR_I                 (1 << 12)       /* instruction cacheability */
#define SCTLR_EL2_RES1          0x30c50830
#define SCTLR_EL2_MMU_ON        (SCTLR_EL2_RES1 | SCTLR_M | SCTLR_C | SCTLR_I)

/*
 * ID_AA64MMFR0_EL1.PARange, bits [3:0]: 0 = 32 bits, 1 = 36, 2 = 40, 3 = 42,
 * 4 = 44, 5 = 48, 6 = 52.  With a 4 KiB granule and no FEAT_LPA2 the tables
 * hold 48-bit output addresses at most, so larger values are used as 48 bits.
 */
#define PARANGE_48              5

#endif /* BOOTEMU_ARM64_H */
