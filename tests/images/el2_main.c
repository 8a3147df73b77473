/*
 * The C half of the EL2 test image: boot tables (run with the MMU off, at
 * physical addresses) and el2_main (run at the link address).
 */
#include "lib.h"

#define UART_VA 0x8040000000UL  /* where the runtime tables put the UART */
#define POOL_PAGES 32

extern char _head[], _end[], __idmap_start[];
extern void switch_ttbr(u64 root_pa);

static u64 table_pool[POOL_PAGES][512] __attribute__((aligned(4096)));
static struct board board;
static u64 workspace[1024];

/* MMU off: every address is physical.  Map the image at its link address,
 * RAM and the UART identity.  Returns the root table's physical address. */
u64 el2_boot_tables(long phys_offset, const void *fdt)
{
	struct tables t = { table_pool, 0, POOL_PAGES, 0 };
	u64 *root = table_new(&t);
	u64 image_pa = (u64)_head, image_size = (u64)(_end - _head);

	board_from_fdt(&board, fdt);
	map_range(&t, root, image_pa - (u64)phys_offset, image_pa, image_size, PTE_NORMAL);
	map_range(&t, root, board.ram_base, board.ram_base, board.ram_size, PTE_NORMAL);
	if (board.uart)
		map_range(&t, root, board.uart, board.uart, PAGE_SIZE, PTE_DEVICE);
	uart_regs = (volatile u32 *)board.uart;
	return table_phys(&t, root);
}

static u64 current_el(void)
{
	u64 el;
	__asm__ volatile("mrs %0, CurrentEL" : "=r"(el));
	return (el >> 2) & 3;
}

/* Loads and stores over a small workspace; the checksum proves it ran. */
static u64 spin(u64 rounds)
{
	u64 acc = 0x9e3779b97f4a7c15UL;
	for (u64 i = 0; i < rounds; i++) {
		u64 *slot = &workspace[(i * 7) & 1023];
		*slot += acc ^ i;
		acc = (acc << 5) + (acc >> 3) + *slot;
	}
	return acc;
}

long el2_main(long phys_offset)
{
	char line[160], *p;

	p = append(line, "hello from C at EL");
	p = fmt_dec(p, current_el());
	p = append(p, ", el2_main at VA ");
	p = fmt_hex(p, (u64)el2_main);
	append(p, "\n");
	say(line);
	p = append(line, "bootargs: ");
	p = append(p, board.bootargs);
	p = append(p, "\nRAM: ");
	p = fmt_hex(p, board.ram_base);
	p = append(p, "+");
	p = fmt_hex(p, board.ram_size);
	append(p, "\n");
	say(line);

	/* Runtime tables: the image, the UART at a fixed VA, and an identity map
	 * of only the page holding switch_ttbr. */
	struct tables t = { table_pool, 0, POOL_PAGES, phys_offset };
	t.used = POOL_PAGES / 2;  /* the boot tables are live: leave their pages alone */
	u64 *root = table_new(&t);
	u64 image_pa = (u64)_head + (u64)phys_offset;
	u64 idmap_pa = (u64)__idmap_start + (u64)phys_offset;
	map_range(&t, root, (u64)_head, image_pa, (u64)(_end - _head), PTE_NORMAL);
	map_range(&t, root, idmap_pa, idmap_pa, PAGE_SIZE, PTE_NORMAL);
	if (board.uart)
		map_range(&t, root, UART_VA, board.uart, PAGE_SIZE, PTE_DEVICE);

	void (*switch_at_pa)(u64) = (void (*)(u64))((u64)switch_ttbr + (u64)phys_offset);
	switch_at_pa(table_phys(&t, root));
	uart_regs = board.uart ? (volatile u32 *)UART_VA : 0;

	say("switched to the runtime tables\n");
	sh_write("written with SYS_WRITE\n", 23);
	sh_putc('!');
	sh_putc('\n');

	u64 rounds = bootarg_number(board.bootargs, "spin", 1000);
	p = append(line, "spin ");
	p = fmt_dec(p, rounds);
	p = append(p, ": ");
	p = fmt_hex(p, spin(rounds));
	append(p, "\n");
	say(line);
	say("bye\n");
	return (long)bootarg_number(board.bootargs, "status", 0);
}
