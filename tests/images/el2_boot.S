/*
 * bootemu test image, EL2: entered as the arm64 boot protocol says (x0 = the
 * device tree, MMU off, EL2), it builds boot page tables in C with the MMU
 * off, turns the MMU on from identity-mapped code, jumps to its link address
 * and runs el2_main() there; el2_main switches to runtime tables through
 * switch_ttbr (identity-mapped: MMU off, TLBI, TTBR0_EL2, ISB, MMU on) and
 * returns the exit status, given to semihosting's SYS_EXIT.
 */
#define SCTLR_M (1 << 0)
#define SCTLR_C (1 << 2)
#define SCTLR_I (1 << 12)
/* TCR_EL2: RES1 bits 31 and 23, SH0 inner, ORGN0/IRGN0 write-back, T0SZ 16 (48-bit VA). */
#define TCR_EL2_VALUE ((1 << 31) | (1 << 23) | (3 << 12) | (1 << 10) | (1 << 8) | 16)
#define MAIR_VALUE 0xff4400

	.section .text.head, "ax"
	.globl _head_branch
_head_branch:
	b	primary_entry		/* code0: the branch at offset 0 */
	.long	0			/* code1 */
	.quad	0x200000		/* text_offset: 2 MiB above a 2 MiB-aligned base */
	.quad	_image_size		/* image_size, BSS included */
	.quad	0xa			/* flags: little-endian, 4 KiB pages, anywhere in RAM */
	.quad	0, 0, 0
	.ascii	"ARM\x64"		/* magic */
	.long	0

	.section .text.boot, "ax"
primary_entry:
	mov	x19, x0			/* the device tree's physical address */
	mrs	x0, CurrentEL
	cmp	x0, #(2 << 2)
	b.ne	not_el2
	adrp	x20, _head		/* where we run (physical, MMU off) ... */
	ldr	x21, =_head		/* ... and where we are linked */
	sub	x22, x20, x21		/* x22 = physical - virtual */

	/* The loader does not promise a zeroed BSS: clear it (tables, stack). */
	adrp	x0, __bss_start
	add	x0, x0, :lo12:__bss_start
	adrp	x1, __bss_end
	add	x1, x1, :lo12:__bss_end
1:	stp	xzr, xzr, [x0], #16
	cmp	x0, x1
	b.lo	1b

	adrp	x0, boot_stack_top
	add	x0, x0, :lo12:boot_stack_top
	mov	sp, x0
	mov	x0, x22
	mov	x1, x19
	bl	el2_boot_tables		/* C with the MMU off; returns the root's PA */
	bl	enable_mmu
	ldr	x0, =virtual_entry
	br	x0			/* leave the identity map for the link address */

virtual_entry:
	sub	sp, sp, x22		/* the same stack, by its virtual address */
	mov	x0, x22
	bl	el2_main
	bl	sh_exit

not_el2:
	mov	x0, #2
	bl	sh_exit_early

/* Exit via semihosting with status x0, usable with the MMU off. */
sh_exit_early:
	adr	x1, exit_block
	str	x0, [x1, #8]
	mov	x0, #0x18
	hlt	#0xf000
	b	.
	.balign 8
exit_block:
	.quad	0x20026, 0

/* x0 = the root table's physical address.  Runs identity-mapped (VA == PA). */
enable_mmu:
	ldr	x1, =MAIR_VALUE
	msr	mair_el2, x1
	ldr	x1, =TCR_EL2_VALUE
	mrs	x2, id_aa64mmfr0_el1
	and	x2, x2, #7		/* PARange -> TCR_EL2.PS */
	bfi	x1, x2, #16, #3
	msr	tcr_el2, x1
	msr	ttbr0_el2, x0
	isb
	tlbi	alle2
	dsb	nsh
	isb
	mrs	x1, sctlr_el2
	mov	x2, #(SCTLR_M | SCTLR_C)
	orr	x2, x2, #SCTLR_I
	orr	x1, x1, x2
	msr	sctlr_el2, x1
	isb
	ic	iallu
	dsb	nsh
	isb
	ret
	.ltorg

	.section .idmap.text, "ax"
/*
 * void switch_ttbr(u64 root_pa): called at its physical address, which both
 * the current and the new tables map identically.
 */
	.globl switch_ttbr
switch_ttbr:
	dsb	ish			/* the new tables are written */
	mrs	x1, sctlr_el2
	bic	x2, x1, #SCTLR_M
	msr	sctlr_el2, x2		/* MMU off: we run at VA == PA */
	isb
	tlbi	alle2
	dsb	nsh
	msr	ttbr0_el2, x0
	isb
	ic	iallu
	dsb	nsh
	isb
	msr	sctlr_el2, x1		/* MMU on, through the new tables */
	isb
	ret				/* to the caller's virtual address */

	.bss
	.balign 16
boot_stack:
	.space	0x4000
boot_stack_top:
