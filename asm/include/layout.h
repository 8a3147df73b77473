/*
 * layout.h - the hypervisor's static virtual memory layout and the codes
 * head.S leaves in x0 when it gives up.
 *
 * Every constant can be overridden with -D NAME=VALUE (each is wrapped in
 * #ifndef).  Values are plain integers without C suffixes (U, UL): they end
 * up in assembler immediates, and assemblers do not accept suffixes.
 *
 * The layout follows Xen's arm64 one after its rework: with a 4 KiB granule
 * and 48-bit VAs, one level-0 entry ("slot") covers 512 GiB.  Slot 0 is kept
 * free so that the boot code can identity-map (VA == PA) itself wherever
 * RAM below 512 GiB it was loaded, and the image sits in slot 1:
 *
 *   slot 0       0x0000000000000000 - 0x0000007fffffffff  free: identity maps
 *   slot 1       0x0000008000000000 - 0x00000080001fffff  unused (2 MiB)
 *                0x0000008000200000 - 0x00000080003fffff  XEN: text, data, bss
 *                0x0000008000400000 - 0x00000080005fffff  FIXMAP
 *                0x0000008040000000 - 0x000000807fffffff  VMAP
 *   slots 2-3                                            free: identity maps
 *   slot 4       0x0000020000000000 - 0x0000027fffffffff  FRAMETABLE
 *   slots 5-255                                          free: identity maps
 *   slots 256-265 0x0000800000000000 - 0x000084ffffffffff DIRECTMAP
 *
 * An image loaded in a slot some static region uses cannot be identity
 * mapped without clashing with that region: head.S refuses to boot there
 * (BOOT_ERR_IDMAP_CLASH).
 */
#ifndef BOOTEMU_LAYOUT_H
#define BOOTEMU_LAYOUT_H

/* The image: text, data and bss, all within one 2 MiB mapping. */
#ifndef XEN_VIRT_START
#define XEN_VIRT_START          0x0000008000200000
#endif
#ifndef XEN_VIRT_SIZE
#define XEN_VIRT_SIZE           0x200000
#endif

/* Fixed mappings (early console, temporary maps of physical pages). */
#ifndef FIXMAP_VIRT_START
#define FIXMAP_VIRT_START       0x0000008000400000
#endif
#ifndef FIXMAP_VIRT_SIZE
#define FIXMAP_VIRT_SIZE        0x200000
#endif

/* Virtually contiguous mappings made at run time (vmap). */
#ifndef VMAP_VIRT_START
#define VMAP_VIRT_START         0x0000008040000000
#endif
#ifndef VMAP_VIRT_SIZE
#define VMAP_VIRT_SIZE          0x40000000
#endif

/* The page frame table: one descriptor per physical page frame. */
#ifndef FRAMETABLE_VIRT_START
#define FRAMETABLE_VIRT_START   0x0000020000000000
#endif
#ifndef FRAMETABLE_VIRT_SIZE
#define FRAMETABLE_VIRT_SIZE    0x8000000000
#endif

/* The direct map of all RAM. */
#ifndef DIRECTMAP_VIRT_START
#define DIRECTMAP_VIRT_START    0x0000800000000000
#endif
#ifndef DIRECTMAP_VIRT_SIZE
#define DIRECTMAP_VIRT_SIZE     0x50000000000
#endif

/*
 * STATIC_REGIONS(X) expands X(start, size) once per static region above, so
 * that a check written once covers every region (head.S uses it for the
 * identity-map clash check).  A region added to the layout must be added
 * here too.
 */
#define STATIC_REGIONS(X)                               \
    X(XEN_VIRT_START, XEN_VIRT_SIZE)                    \
    X(FIXMAP_VIRT_START, FIXMAP_VIRT_SIZE)              \
    X(VMAP_VIRT_START, VMAP_VIRT_SIZE)                  \
    X(FRAMETABLE_VIRT_START, FRAMETABLE_VIRT_SIZE)      \
    X(DIRECTMAP_VIRT_START, DIRECTMAP_VIRT_SIZE)

/*
 * Boot failure codes: head.S calls boot_failure with one of these in x0.
 * Tools read the comment after each value as its meaning, so keep the
 * one-line form "#define BOOT_ERR_NAME  value comment".
 */
#ifndef BOOT_ERR_NOT_EL2
#define BOOT_ERR_NOT_EL2        1 /* entered at an exception level other than EL2 */
#endif
#ifndef BOOT_ERR_MISALIGNED
#define BOOT_ERR_MISALIGNED     2 /* load address not 2 MiB aligned */
#endif
#ifndef BOOT_ERR_PA_RANGE
#define BOOT_ERR_PA_RANGE       3 /* load address beyond the CPU's physical address size */
#endif
#ifndef BOOT_ERR_IDMAP_CLASH
#define BOOT_ERR_IDMAP_CLASH    4 /* the identity map of the load address falls in the level-0 slot of a static region */
#endif

#endif /* BOOTEMU_LAYOUT_H */
