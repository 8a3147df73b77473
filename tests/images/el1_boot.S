/*
 * bootemu test image, EL1 (non-VHE): entered at EL2 it configures EL2 for a
 * non-VHE EL1 (HCR_EL2.RW, E2H clear, no traps) and drops to EL1 with ERET;
 * entered at EL1 it goes straight on.  At EL1 it builds an identity map for
 * TTBR0_EL1 and the kernel's map for TTBR1_EL1 in C with the MMU off, turns
 * the MMU on, jumps to its link address in TTBR1's half and runs el1_main.
 * el1_main replaces TTBR1 through replace_ttbr1, which runs from the
 * identity map with the MMU on.
 */
#define SCTLR_M (1 << 0)
#define SCTLR_C (1 << 2)
#define SCTLR_I (1 << 12)
#define SCTLR_EL1_RES1 0x30d00800	/* the RES1 bits; MMU, caches, alignment off */
#define HCR_EL2_RW (1 << 31)
#define SPSR_EL1H_MASKED 0x3c5
/* TCR_EL1: T0SZ = T1SZ = 16, both halves inner-shareable write-back, TG1 4 KiB. */
#define TCR_EL1_VALUE 0xb5103510
#define MAIR_VALUE 0xff4400

	.section .text.head, "ax"
	b	primary_entry
	.long	0
	.quad	0x200000
	.quad	_image_size
	.quad	0xa
	.quad	0, 0, 0
	.ascii	"ARM\x64"
	.long	0

	.section .text.boot, "ax"
primary_entry:
	mov	x19, x0
	mrs	x0, CurrentEL
	cmp	x0, #(1 << 2)
	b.eq	el1_entry
	cmp	x0, #(2 << 2)
	b.ne	bad_el

	/* EL2 -> EL1, non-VHE: EL1 is AArch64, nothing traps to EL2. */
	mov	x0, #HCR_EL2_RW
	msr	hcr_el2, x0
	mov	x0, #3			/* CNTHCTL_EL2.EL1PCTEN | EL1PCEN */
	msr	cnthctl_el2, x0
	msr	cntvoff_el2, xzr
	mov	x0, #0x33ff		/* CPTR_EL2: RES1 bits, no FP/SIMD trap */
	msr	cptr_el2, x0
	msr	vttbr_el2, xzr
	ldr	x0, =SCTLR_EL1_RES1
	msr	sctlr_el1, x0
	mov	x0, #SPSR_EL1H_MASKED
	msr	spsr_el2, x0
	adr	x0, el1_entry
	msr	elr_el2, x0
	eret

el1_entry:
	adrp	x20, _head
	ldr	x21, =_head
	sub	x22, x20, x21		/* physical - virtual */
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
	bl	el1_boot_tables		/* returns TTBR0 in x0, TTBR1 in x1 */
	bl	enable_mmu_el1
	ldr	x0, =virtual_entry
	br	x0

virtual_entry:
	sub	sp, sp, x22
	mov	x0, x22
	bl	el1_main
	bl	sh_exit

bad_el:
	adr	x1, exit_block
	mov	x0, #0x18
	hlt	#0xf000
	b	.
	.balign 8
exit_block:
	.quad	0x20026, 2

enable_mmu_el1:
	ldr	x2, =MAIR_VALUE
	msr	mair_el1, x2
	ldr	x2, =TCR_EL1_VALUE
	mrs	x3, id_aa64mmfr0_el1
	and	x3, x3, #7		/* PARange -> TCR_EL1.IPS */
	bfi	x2, x3, #32, #3
	msr	tcr_el1, x2
	msr	ttbr0_el1, x0
	msr	ttbr1_el1, x1
	isb
	tlbi	vmalle1
	dsb	nsh
	isb
	mrs	x2, sctlr_el1
	mov	x3, #(SCTLR_M | SCTLR_C)
	orr	x3, x3, #SCTLR_I
	orr	x2, x2, x3
	msr	sctlr_el1, x2
	isb
	ic	iallu
	dsb	nsh
	isb
	ret
	.ltorg

	.section .idmap.text, "ax"
/*
 * void replace_ttbr1(u64 new_ttbr1, u64 reserved_ttbr1): called at its
 * physical address, which TTBR0's identity map covers, with the MMU on.
 * Break-before-make for a whole table: first the reserved (empty) table,
 * then TLB invalidation, then the new tables.  With LIVE_SWAP it swaps the
 * live tables for the new ones directly, which the architecture forbids.
 */
	.globl replace_ttbr1
replace_ttbr1:
	dsb	ishst			/* the new tables are written */
#ifdef LIVE_SWAP
	msr	ttbr1_el1, x0		/* live tables -> live tables */
	isb
	tlbi	vmalle1
	dsb	nsh
	isb
#else
	msr	ttbr1_el1, x1		/* live tables -> the reserved, empty table */
	isb
	tlbi	vmalle1			/* nothing translates through TTBR1 now */
	dsb	nsh
	isb
	msr	ttbr1_el1, x0		/* empty -> the new tables */
	isb
#endif
	ret

	.bss
	.balign 16
boot_stack:
	.space	0x4000
boot_stack_top:
