/*
 * Shared by bootemu's test images: printing (semihosting and a PL011),
 * reading the device tree the loader passes in x0, and building stage-1
 * page tables (4 KiB granule, 48-bit VA).
 *
 * Everything here also runs before the MMU is on, at physical addresses:
 * it is compiled without PIC and with -mcmodel=small, so every reference to
 * a global is PC-relative (ADRP) and works wherever the image runs.
 */
#ifndef BOOTEMU_TEST_LIB_H
#define BOOTEMU_TEST_LIB_H

typedef unsigned long u64;
typedef unsigned int u32;
typedef unsigned char u8;

#define PAGE_SIZE 0x1000UL
#define BLOCK_2M 0x200000UL
#define BLOCK_1G 0x40000000UL

/* MAIR attribute indexes: 0 Device-nGnRnE, 1 Normal non-cacheable, 2 Normal write-back. */
#define MAIR_VALUE 0xff4400UL
#define ATTR_DEVICE (0UL << 2)
#define ATTR_NORMAL (2UL << 2)
#define PTE_SH_INNER (3UL << 8)
#define PTE_AF (1UL << 10)
#define PTE_XN (3UL << 53) /* UXN/PXN at EL1&0, XN at EL2 */
#define PTE_NORMAL (ATTR_NORMAL | PTE_SH_INNER | PTE_AF)
#define PTE_DEVICE (ATTR_DEVICE | PTE_AF | PTE_XN)

/* What the test images learn from the device tree. */
struct board {
	u64 ram_base, ram_size;
	u64 uart;                 /* PL011 physical address, 0 if none */
	char bootargs[256];
};

/* A page-table builder: tables come from a pool; "offset" is physical minus
 * current address of the pool (0 with the MMU off). */
struct tables {
	u64 (*pool)[512];
	unsigned int used, size;
	long offset;
};

void board_from_fdt(struct board *board, const void *fdt);
u64 bootarg_number(const char *bootargs, const char *key, u64 fallback);

u64 *table_new(struct tables *t);
u64 table_phys(const struct tables *t, const u64 *table);
void map_range(struct tables *t, u64 *root, u64 va, u64 pa, u64 size, u64 attrs);

/* Output: semihosting (SYS_WRITE0, SYS_WRITEC, SYS_WRITE) and the UART. */
extern volatile u32 *uart_regs;
long semihosting(long op, const void *arg);
void sh_puts(const char *s);
void sh_putc(char c);
void sh_write(const char *s, u64 len);
void uart_puts(const char *s);
void say(const char *s);          /* to both */
char *fmt_hex(char *out, u64 value);
char *fmt_dec(char *out, u64 value);
char *append(char *out, const char *s);
void sh_exit(long status) __attribute__((noreturn));

void *memset(void *dst, int c, unsigned long n);
void *memcpy(void *dst, const void *src, unsigned long n);

#endif
