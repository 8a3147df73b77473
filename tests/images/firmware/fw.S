/*
 * bootemu's test firmware: a boot ROM for QEMU's virt board, loaded into the
 * flash at 0x0 the way QEMU's -bios loads it.
 *
 * It says hello on the PL011, looks for the device tree QEMU leaves at the
 * start of RAM, reads the RAM size and the PSCI conduit from it, copies itself
 * to the top of RAM, runs on from there and powers the machine off with PSCI
 * SYSTEM_OFF.  Everything it prints starts with "fw: ", one line a step, so an
 * emulator's console can be compared line by line with QEMU's.
 *
 * Entry contract (QEMU virt, -bios, no -kernel):
 *   PC = 0x0 (flash), MMU and caches off; at EL2 with virtualization=on,
 *   EL1 without it (EL3 with secure=on); general registers UNKNOWN.
 *   The device tree blob is at RAM_BASE (0x40000000) when the machine put one
 *   there; nothing is passed in registers.
 *
 * Register use in the main sequence (the helpers below leave x8-x30 alone
 * unless they say otherwise, and use no stack: there is none):
 *   x19 = the exception level entered at (CurrentEL.EL)
 *   x20 = the device tree's address, or 0 when there is none
 *   x21 = RAM base          (from /memory's reg, else RAM_BASE)
 *   x22 = RAM size          (from /memory's reg, else DEFAULT_RAM_SIZE)
 *   x23 = PSCI conduit      (CONDUIT_*, from /psci's method, else SMC)
 *   x24 = where the firmware runs after the copy (top of RAM, 4 KiB aligned)
 *   x25 = the firmware's size in bytes (_start to _end)
 *   x26 = where the firmware was entered (the flash, 0x0)
 *
 * MMU off: every data access is Device-nGnRnE, so each load and store is
 * naturally aligned (device tree words are 4-byte aligned, the copy moves
 * 16 bytes at a time between 16-byte aligned addresses).
 */

#define PL011_BASE		0x09000000
#define PL011_DR		0x00	/* data register */
#define PL011_FR		0x18	/* flag register */
#define PL011_FR_TXFF		5	/* bit: transmit FIFO full */

#define RAM_BASE		0x40000000
#define DEFAULT_RAM_SIZE	(128 << 20)	/* QEMU virt's default -m */
#define FDT_MAGIC		0xd00dfeed	/* big-endian in the blob */
#define FDT_BEGIN_NODE		1
#define FDT_END_NODE		2
#define FDT_PROP		3
#define FDT_NOP			4
#define FDT_END			9

#define PSCI_SYSTEM_OFF		0x84000008
#define CONDUIT_NONE		0
#define CONDUIT_SMC		1
#define CONDUIT_HVC		2

#define NODE_OTHER		0
#define NODE_MEMORY		1
#define NODE_PSCI		2

/* Send the byte in \reg (a w register) to the PL011 at x7; clobbers w6. */
	.macro	putc, reg
9:	ldr	w6, [x7, #PL011_FR]
	tbnz	w6, #PL011_FR_TXFF, 9b
	str	\reg, [x7, #PL011_DR]
	.endm

/* Load a 64-bit constant without a literal pool. */
	.macro	mov64, reg, value
	movz	\reg, #((\value) >> 48) & 0xffff, lsl #48
	movk	\reg, #((\value) >> 32) & 0xffff, lsl #32
	movk	\reg, #((\value) >> 16) & 0xffff, lsl #16
	movk	\reg, #(\value) & 0xffff
	.endm

/* Print the string at label \msg. */
	.macro	say, msg
	adr	x0, \msg
	bl	uart_puts
	.endm

	.section .text.head, "ax"
	.globl	_start
_start:
	/*
	 * 1. Where and at which exception level we were entered; install
	 *    the vectors for that level, then say hello.
	 */
	adr	x26, _start			/* x26 = entry address (0x0) */
	mrs	x19, CurrentEL
	ubfx	x19, x19, #2, #2		/* x19 = EL */
	adr	x0, vectors
	bl	set_vbar
	say	msg_hello
	add	w0, w19, #'0'
	bl	uart_putc
	say	msg_newline

	/*
	 * 2. The device tree: QEMU puts it at the start of RAM for firmware.
	 *    Its header starts with the magic 0xd00dfeed, big-endian.
	 */
	mov64	x20, RAM_BASE
	ldr	w0, [x20]
	rev	w0, w0
	mov64	x1, FDT_MAGIC
	cmp	x0, x1
	b.eq	1f
	mov	x20, #0				/* x20 = 0: no device tree */
	say	msg_no_dtb
	mov64	x0, RAM_BASE
	bl	uart_puthex
	say	msg_newline
	b	2f
1:	say	msg_dtb
	mov	x0, x20
	bl	uart_puthex
	say	msg_newline
2:
	/*
	 * 3. RAM and PSCI from the device tree (/memory's reg, /psci's
	 *    method), or QEMU virt's defaults without one.
	 */
	mov64	x21, RAM_BASE
	mov64	x22, DEFAULT_RAM_SIZE
	mov	x23, #CONDUIT_SMC
	adr	x27, msg_default		/* x27 = where the values came from */
	cbz	x20, 3f
	mov	x0, x20
	bl	fdt_scan			/* x0 = base, x1 = size, x2 = conduit */
	mov	x23, x2
	cbz	x1, 3f				/* no /memory: keep the default RAM */
	mov	x21, x0
	mov	x22, x1
	adr	x27, msg_from_dt
3:	say	msg_memory
	mov	x0, x21
	bl	uart_puthex
	say	msg_size
	mov	x0, x22
	bl	uart_puthex
	mov	x0, x27
	bl	uart_puts
	say	msg_psci
	adr	x0, str_none
	cmp	x23, #CONDUIT_SMC
	b.ne	4f
	adr	x0, str_smc
4:	cmp	x23, #CONDUIT_HVC
	b.ne	5f
	adr	x0, str_hvc
5:	bl	uart_puts
	say	msg_newline

	/*
	 * 4. Copy the firmware to the top of RAM (4 KiB aligned), make the
	 *    instruction side see the new code, and jump to the copy.
	 */
	adr	x0, _start
	adr	x1, _end
	sub	x25, x1, x0			/* x25 = size, a multiple of 16 */
	add	x24, x21, x22
	sub	x24, x24, x25
	and	x24, x24, #~0xfff		/* x24 = destination */
	mov	x0, x26				/* from */
	mov	x1, x24				/* to */
	mov	x2, x25				/* bytes left */
6:	ldp	x3, x4, [x0], #16
	stp	x3, x4, [x1], #16
	subs	x2, x2, #16
	b.hi	6b
	dsb	sy
	ic	iallu
	dsb	sy
	isb
	adr	x0, in_ram
	sub	x0, x0, x26
	add	x0, x0, x24
	br	x0

in_ram:
	/*
	 * 5. Running from RAM: move the vectors along and say where we are.
	 */
	adr	x0, vectors
	bl	set_vbar
	say	msg_in_ram
	adr	x0, _start
	bl	uart_puthex
	say	msg_newline

	/*
	 * 6. Power off: PSCI SYSTEM_OFF through the conduit the device tree
	 *    named.  It does not return; if it does, say so and wait.
	 */
	cmp	x23, #CONDUIT_NONE
	b.eq	no_psci
	say	msg_off
	mov64	x0, PSCI_SYSTEM_OFF
	mov	x1, #0
	mov	x2, #0
	mov	x3, #0
	cmp	x23, #CONDUIT_HVC
	b.eq	7f
	smc	#0
	b	8f
7:	hvc	#0
8:	mov	x19, x0
	say	msg_off_returned
	mov	x0, x19
	bl	uart_puthex
	say	msg_newline
	b	halt

no_psci:
	say	msg_no_psci
halt:
	wfe
	b	halt

/*
 * fdt_scan: read the RAM and the PSCI conduit from a flattened device tree.
 *   In:  x0 = the blob (its magic already checked)
 *   Out: x0 = RAM base, x1 = RAM size (0: no /memory node with a reg),
 *        x2 = PSCI conduit (CONDUIT_*; NONE without /psci or its method)
 *   Clobbers x3-x18 (x18 holds the return address: the scan calls its own
 *   helpers).  The first reg entry of the first /memory node counts, in the
 *   root's #address-cells and #size-cells (default 2 and 1).
 */
fdt_scan:
	mov	x18, x30
	ldr	w3, [x0, #8]			/* off_dt_struct */
	rev	w3, w3
	ldr	w4, [x0, #12]			/* off_dt_strings */
	rev	w4, w4
	ldr	w5, [x0, #36]			/* size_dt_struct */
	rev	w5, w5
	add	x3, x0, x3			/* x3 = cursor in the structure block */
	add	x4, x0, x4			/* x4 = strings block */
	add	x5, x3, x5			/* x5 = end of the structure block */
	mov	x6, #0				/* x6 = depth (root = 1) */
	mov	x7, #NODE_OTHER			/* x7 = kind of the depth-2 node */
	mov	x8, #2				/* x8 = root's #address-cells */
	mov	x9, #1				/* x9 = root's #size-cells */
	mov	x10, #0				/* x10 = RAM base */
	mov	x11, #0				/* x11 = RAM size */
	mov	x12, #CONDUIT_NONE		/* x12 = conduit */
.Lnext_token:
	cmp	x3, x5
	b.hs	.Lscan_done
	ldr	w13, [x3], #4
	rev	w13, w13
	cmp	w13, #FDT_BEGIN_NODE
	b.eq	.Lbegin_node
	cmp	w13, #FDT_END_NODE
	b.eq	.Lend_node
	cmp	w13, #FDT_PROP
	b.eq	.Lprop
	cmp	w13, #FDT_NOP
	b.eq	.Lnext_token
	b	.Lscan_done			/* FDT_END, or not a token */

.Lbegin_node:
	add	x6, x6, #1
	cmp	x6, #2
	b.ne	.Lskip_name
	mov	x7, #NODE_MEMORY
	mov	x14, x3
	adr	x15, str_memory
	bl	.Lnode_is
	cbnz	x16, .Lskip_name
	mov	x7, #NODE_PSCI
	mov	x14, x3
	adr	x15, str_psci
	bl	.Lnode_is
	cbnz	x16, .Lskip_name
	mov	x7, #NODE_OTHER
.Lskip_name:					/* past the NUL, to a 4-byte boundary */
	ldrb	w13, [x3], #1
	cbnz	w13, .Lskip_name
	add	x3, x3, #3
	and	x3, x3, #~3
	b	.Lnext_token

.Lend_node:
	cmp	x6, #2
	b.ne	1f
	mov	x7, #NODE_OTHER
1:	subs	x6, x6, #1
	b.ne	.Lnext_token
	b	.Lscan_done			/* the root node ended */

.Lprop:
	ldr	w13, [x3], #4			/* w13 = value length */
	rev	w13, w13
	ldr	w14, [x3], #4			/* w14 = name offset */
	rev	w14, w14
	add	x17, x4, x14			/* x17 = property name */
	mov	x15, x3				/* x15 = value */
	add	x3, x3, x13
	add	x3, x3, #3
	and	x3, x3, #~3
	cmp	x6, #1
	b.eq	.Lroot_prop
	cmp	x6, #2
	b.ne	.Lnext_token
	cmp	x7, #NODE_MEMORY
	b.eq	.Lmemory_prop
	cmp	x7, #NODE_PSCI
	b.eq	.Lpsci_prop
	b	.Lnext_token

.Lroot_prop:					/* #address-cells, #size-cells */
	mov	x14, x17
	adr	x16, str_address_cells
	bl	.Lstr_eq
	cbz	x13, 1f
	ldr	w8, [x15]
	rev	w8, w8
	b	.Lnext_token
1:	mov	x14, x17
	adr	x16, str_size_cells
	bl	.Lstr_eq
	cbz	x13, .Lnext_token
	ldr	w9, [x15]
	rev	w9, w9
	b	.Lnext_token

.Lmemory_prop:					/* reg: base, size */
	cbnz	x11, .Lnext_token		/* only the first one */
	mov	x14, x17
	adr	x16, str_reg
	bl	.Lstr_eq
	cbz	x13, .Lnext_token
	mov	x13, x8
1:	cbz	x13, 2f
	ldr	w14, [x15], #4
	rev	w14, w14
	orr	x10, x14, x10, lsl #32
	sub	x13, x13, #1
	b	1b
2:	mov	x13, x9
3:	cbz	x13, .Lnext_token
	ldr	w14, [x15], #4
	rev	w14, w14
	orr	x11, x14, x11, lsl #32
	sub	x13, x13, #1
	b	3b

.Lpsci_prop:					/* method: "smc" or "hvc" */
	mov	x14, x17
	adr	x16, str_method
	bl	.Lstr_eq
	cbz	x13, .Lnext_token
	mov	x17, x15
	mov	x14, x17
	adr	x16, str_smc
	bl	.Lstr_eq
	cbz	x13, 1f
	mov	x12, #CONDUIT_SMC
	b	.Lnext_token
1:	mov	x14, x17
	adr	x16, str_hvc
	bl	.Lstr_eq
	cbz	x13, .Lnext_token
	mov	x12, #CONDUIT_HVC
	b	.Lnext_token

.Lscan_done:
	mov	x0, x10
	mov	x1, x11
	mov	x2, x12
	ret	x18

/*
 * fdt_scan's own helpers (it no longer needs x0-x2 once it has read the
 * header):
 * .Lstr_eq: x13 = 1 if the strings at x14 and x16 are equal, else 0.
 *           Clobbers x14, x16, x0, x1.
 * .Lnode_is: x16 = 1 if the node name at x14 is the string at x15, alone or
 *           followed by "@unit-address", else 0.  Clobbers x14, x15, x0, x1.
 */
.Lstr_eq:
	mov	x13, #0
1:	ldrb	w0, [x14], #1
	ldrb	w1, [x16], #1
	cmp	w0, w1
	b.ne	2f
	cbnz	w0, 1b
	mov	x13, #1
2:	ret

.Lnode_is:
	mov	x16, #0
1:	ldrb	w1, [x15], #1
	ldrb	w0, [x14], #1
	cbz	w1, 2f
	cmp	w0, w1
	b.eq	1b
	ret
2:	cmp	w0, #'@'
	ccmp	w0, #0, #4, ne			/* Z: '@' or NUL */
	b.ne	3f
	mov	x16, #1
3:	ret

/*
 * set_vbar: x0 = vector table; written to the VBAR of the current EL.
 * Clobbers x1.
 */
set_vbar:
	mrs	x1, CurrentEL
	ubfx	x1, x1, #2, #2
	cmp	x1, #3
	b.eq	3f
	cmp	x1, #2
	b.eq	2f
	msr	vbar_el1, x0
	b	9f
2:	msr	vbar_el2, x0
	b	9f
3:	msr	vbar_el3, x0
9:	isb
	ret

/*
 * uart_puts: print the NUL-terminated string at x0.  Clobbers x0-x7.
 * uart_putc: print the byte in w0.  Clobbers x6, x7.
 * uart_puthex: print x0 as 0x followed by its hex digits, without leading
 *   zeros.  Clobbers x0-x7.
 */
uart_puts:
	mov	x1, x0
	mov64	x7, PL011_BASE
1:	ldrb	w2, [x1], #1
	cbz	w2, 2f
	putc	w2
	b	1b
2:	ret

uart_putc:
	mov64	x7, PL011_BASE
	putc	w0
	ret

uart_puthex:
	mov	x1, x0
	mov64	x7, PL011_BASE
	mov	w2, #'0'
	putc	w2
	mov	w2, #'x'
	putc	w2
	mov	x3, #60				/* x3 = shift of the digit */
1:	cbz	x3, 2f				/* skip leading zero digits */
	lsr	x4, x1, x3
	cbnz	x4, 2f
	sub	x3, x3, #4
	b	1b
2:	lsr	x4, x1, x3
	and	x4, x4, #0xf
	add	w2, w4, #'0'
	cmp	x4, #10
	b.lo	3f
	add	w2, w4, #('a' - 10)
3:	putc	w2
	subs	x3, x3, #4
	b.ge	2b
	ret

/*
 * The vectors: any exception is unexpected.  Print its syndrome and the
 * address it was taken from, then stop.
 */
	.balign	2048
vectors:
	.rept	16
	.balign	128
	b	unexpected
	.endr

unexpected:
	mrs	x19, CurrentEL
	ubfx	x19, x19, #2, #2
	cmp	x19, #3
	b.eq	3f
	cmp	x19, #2
	b.eq	2f
	mrs	x20, esr_el1
	mrs	x21, elr_el1
	b	4f
2:	mrs	x20, esr_el2
	mrs	x21, elr_el2
	b	4f
3:	mrs	x20, esr_el3
	mrs	x21, elr_el3
4:	say	msg_exception
	mov	x0, x20
	bl	uart_puthex
	say	msg_at
	mov	x0, x21
	bl	uart_puthex
	say	msg_newline
	b	halt

	.section .rodata, "a"
msg_hello:		.asciz	"fw: hello from flash at EL"
msg_newline:		.asciz	"\n"
msg_dtb:		.asciz	"fw: dtb at "
msg_no_dtb:		.asciz	"fw: no dtb at "
msg_memory:		.asciz	"fw: memory "
msg_size:		.asciz	" size "
msg_from_dt:		.asciz	" (from /memory)\n"
msg_default:		.asciz	" (default)\n"
msg_psci:		.asciz	"fw: psci method "
msg_in_ram:		.asciz	"fw: running from RAM at "
msg_off:		.asciz	"fw: PSCI SYSTEM_OFF\n"
msg_off_returned:	.asciz	"fw: SYSTEM_OFF returned "
msg_no_psci:		.asciz	"fw: no PSCI method: stopping here\n"
msg_exception:		.asciz	"fw: unexpected exception, ESR "
msg_at:			.asciz	" at "
str_memory:		.asciz	"memory"
str_psci:		.asciz	"psci"
str_address_cells:	.asciz	"#address-cells"
str_size_cells:		.asciz	"#size-cells"
str_reg:		.asciz	"reg"
str_method:		.asciz	"method"
str_smc:		.asciz	"smc"
str_hvc:		.asciz	"hvc"
str_none:		.asciz	"none"
