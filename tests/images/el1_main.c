/*
 * The C half of the EL1 test image: the boot maps (TTBR0: identity of RAM
 * and the UART; TTBR1: the kernel at its link address), built with the MMU
 * off, and el1_main, which replaces TTBR1's tables with new ones.
 */
#include "lib.h"

#define UART_VA 0xffff800040000000UL  /* the UART in the new TTBR1 tables */
#define POOL_PAGES 32

extern char _head[], _end[], __idmap_start[];
extern void replace_ttbr1(u64 new_ttbr1, u64 reserved_ttbr1);

static u64 table_pool[POOL_PAGES][512] __attribute__((aligned(4096)));
static u64 reserved_pg_dir[512] __attribute__((aligned(4096)));
static struct board board;

struct roots {
	u64 ttbr0, ttbr1;
};

struct roots el1_boot_tables(long phys_offset, const void *fdt)
{
	struct tables t = { table_pool, 0, POOL_PAGES, 0 };
	u64 *idmap = table_new(&t), *kernel = table_new(&t);
	u64 image_pa = (u64)_head, image_size = (u64)(_end - _head);

	board_from_fdt(&board, fdt);
	map_range(&t, idmap, board.ram_base, board.ram_base, board.ram_size, PTE_NORMAL);
	if (board.uart)
		map_range(&t, idmap, board.uart, board.uart, PAGE_SIZE, PTE_DEVICE);
	map_range(&t, kernel, image_pa - (u64)phys_offset, image_pa, image_size, PTE_NORMAL);
	uart_regs = (volatile u32 *)board.uart;
	return (struct roots){ table_phys(&t, idmap), table_phys(&t, kernel) };
}

static u64 current_el(void)
{
	u64 el;
	__asm__ volatile("mrs %0, CurrentEL" : "=r"(el));
	return (el >> 2) & 3;
}

long el1_main(long phys_offset)
{
	char line[120], *p;

	p = append(line, "hello from C at EL");
	p = fmt_dec(p, current_el());
	p = append(p, ", el1_main at VA ");
	p = fmt_hex(p, (u64)el1_main);
	append(p, "\n");
	say(line);

	struct tables t = { table_pool, POOL_PAGES / 2, POOL_PAGES, phys_offset };
	u64 *kernel = table_new(&t);
	map_range(&t, kernel, (u64)_head, (u64)_head + (u64)phys_offset, (u64)(_end - _head),
		  PTE_NORMAL);
	if (board.uart)
		map_range(&t, kernel, UART_VA, board.uart, PAGE_SIZE, PTE_DEVICE);

	void (*replace_at_pa)(u64, u64) =
		(void (*)(u64, u64))((u64)replace_ttbr1 + (u64)phys_offset);
	replace_at_pa(table_phys(&t, kernel), (u64)reserved_pg_dir + (u64)phys_offset);
	if (board.uart)
		uart_regs = (volatile u32 *)UART_VA;

	say("TTBR1 replaced\n");
	return 0;
}
