/* See lib.h.  Freestanding: no libc, no floating point, no SIMD. */
#include "lib.h"

#define SYS_OPEN 0x01
#define SYS_WRITEC 0x03
#define SYS_WRITE0 0x04
#define SYS_WRITE 0x05
#define SYS_EXIT 0x18
#define ADP_STOPPED_APPLICATION_EXIT 0x20026UL

#define UARTDR 0
#define UARTFR (0x18 / 4)
#define UARTFR_TXFF (1U << 5)

volatile u32 *uart_regs;

void *memset(void *dst, int c, unsigned long n)
{
	u8 *p = dst;
	while (n--)
		*p++ = (u8)c;
	return dst;
}

void *memcpy(void *dst, const void *src, unsigned long n)
{
	u8 *d = dst;
	const u8 *s = src;
	while (n--)
		*d++ = *s++;
	return dst;
}

long semihosting(long op, const void *arg)
{
	register long x0 __asm__("x0") = op;
	register const void *x1 __asm__("x1") = arg;
	__asm__ volatile("hlt #0xf000" : "+r"(x0) : "r"(x1) : "memory");
	return x0;
}

void sh_puts(const char *s) { semihosting(SYS_WRITE0, s); }
void sh_putc(char c) { semihosting(SYS_WRITEC, &c); }

void sh_write(const char *s, u64 len)
{
	static long handle = -1;
	if (handle < 0) {
		u64 open_args[3] = { (u64)":tt", 4 /* "w" */, 3 };
		handle = semihosting(SYS_OPEN, open_args);
	}
	u64 args[3] = { (u64)handle, (u64)s, len };
	semihosting(SYS_WRITE, args);
}

void sh_exit(long status)
{
	u64 args[2] = { ADP_STOPPED_APPLICATION_EXIT, (u64)status };
	for (;;)
		semihosting(SYS_EXIT, args);
}

void uart_puts(const char *s)
{
	if (!uart_regs)
		return;
	for (; *s; s++) {
		while (uart_regs[UARTFR] & UARTFR_TXFF)
			;
		uart_regs[UARTDR] = (u8)*s;
	}
}

void say(const char *s)
{
	sh_puts(s);
	uart_puts(s);
}

char *append(char *out, const char *s)
{
	while (*s)
		*out++ = *s++;
	*out = 0;
	return out;
}

char *fmt_hex(char *out, u64 value)
{
	*out++ = '0';
	*out++ = 'x';
	int shift = 60;
	while (shift > 0 && !(value >> shift))
		shift -= 4;
	for (; shift >= 0; shift -= 4)
		*out++ = "0123456789abcdef"[(value >> shift) & 0xf];
	*out = 0;
	return out;
}

char *fmt_dec(char *out, u64 value)
{
	char digits[24];
	int n = 0;
	do {
		digits[n++] = (char)('0' + value % 10);
		value /= 10;
	} while (value);
	while (n)
		*out++ = digits[--n];
	*out = 0;
	return out;
}

/* -- device tree ---------------------------------------------------------- */

#define FDT_BEGIN_NODE 1
#define FDT_END_NODE 2
#define FDT_PROP 3
#define FDT_NOP 4
#define FDT_MAGIC 0xd00dfeedU

static u32 be32(const void *p)
{
	const u8 *b = p;
	return ((u32)b[0] << 24) | ((u32)b[1] << 16) | ((u32)b[2] << 8) | b[3];
}

static u64 cells(const u8 *p, u32 count)
{
	u64 value = 0;
	for (u32 i = 0; i < count; i++)
		value = (value << 32) | be32(p + 4 * i);
	return value;
}

static int streq(const char *a, const char *b)
{
	while (*a && *a == *b)
		a++, b++;
	return *a == *b;
}

static int has_string(const char *list, u32 len, const char *want)
{
	for (u32 i = 0; i < len; ) {
		if (streq(list + i, want))
			return 1;
		while (i < len && list[i])
			i++;
		i++;
	}
	return 0;
}

static int name_is(const char *name, const char *want)
{
	while (*want && *name == *want)
		name++, want++;
	return !*want && (!*name || *name == '@');
}

void board_from_fdt(struct board *board, const void *fdt)
{
	const u8 *base = fdt;
	memset(board, 0, sizeof(*board));
	if (!fdt || be32(base) != FDT_MAGIC)
		return;
	const u8 *p = base + be32(base + 8);
	const char *strings = (const char *)base + be32(base + 12);
	u32 address_cells = 2, size_cells = 1;
	int depth = 0, in_memory = 0, in_chosen = 0;
	int memory_type = 0, pl011 = 0;
	u64 reg_base = 0, reg_size = 0;

	for (;;) {
		u32 token = be32(p);
		p += 4;
		if (token == FDT_BEGIN_NODE) {
			const char *name = (const char *)p;
			depth++;
			in_memory = depth == 2 && name_is(name, "memory");
			in_chosen = depth == 2 && name_is(name, "chosen");
			memory_type = pl011 = 0;
			reg_base = reg_size = 0;
			while (*p)
				p++;
			p = (const u8 *)(((u64)p + 4) & ~3UL);
		} else if (token == FDT_PROP) {
			u32 len = be32(p), name_offset = be32(p + 4);
			const u8 *value = p + 8;
			const char *name = strings + name_offset;
			p = (const u8 *)(((u64)value + len + 3) & ~3UL);
			if (depth == 1 && streq(name, "#address-cells"))
				address_cells = be32(value);
			else if (depth == 1 && streq(name, "#size-cells"))
				size_cells = be32(value);
			else if (in_chosen && streq(name, "bootargs")) {
				u32 n = len < sizeof(board->bootargs) ? len : sizeof(board->bootargs) - 1;
				memcpy(board->bootargs, value, n);
				board->bootargs[n] = 0;
			} else if (depth == 2 && streq(name, "device_type"))
				memory_type = streq((const char *)value, "memory");
			else if (depth == 2 && streq(name, "compatible"))
				pl011 = has_string((const char *)value, len, "arm,pl011");
			else if (depth == 2 && streq(name, "reg") && len >= 4 * (address_cells + size_cells)) {
				reg_base = cells(value, address_cells);
				reg_size = cells(value + 4 * address_cells, size_cells);
			}
		} else if (token == FDT_END_NODE) {
			if (depth == 2 && (in_memory || memory_type) && !board->ram_size) {
				board->ram_base = reg_base;
				board->ram_size = reg_size;
			}
			if (depth == 2 && pl011 && !board->uart)
				board->uart = reg_base;
			depth--;
			in_memory = in_chosen = 0;
			if (depth == 0)
				return;
		} else if (token != FDT_NOP) {
			return;
		}
	}
}

u64 bootarg_number(const char *args, const char *key, u64 fallback)
{
	for (const char *p = args; *p; p++) {
		if (p != args && p[-1] != ' ')
			continue;
		const char *k = key, *q = p;
		while (*k && *q == *k)
			k++, q++;
		if (*k || *q != '=')
			continue;
		u64 value = 0;
		for (q++; *q >= '0' && *q <= '9'; q++)
			value = value * 10 + (u64)(*q - '0');
		return value;
	}
	return fallback;
}

/* -- page tables ------------------------------------------------------------ */

#define DESC_VALID 1UL
#define DESC_TABLE 3UL  /* table at levels 0-2, page at level 3 */
#define DESC_ADDRESS 0x0000fffffffff000UL

u64 *table_new(struct tables *t)
{
	if (t->used >= t->size)
		sh_exit(3);  /* out of tables: a bug in the test image */
	u64 *table = t->pool[t->used++];
	for (int i = 0; i < 512; i++)
		table[i] = 0;
	return table;
}

u64 table_phys(const struct tables *t, const u64 *table)
{
	return (u64)table + (u64)t->offset;
}

static u64 *table_at(const struct tables *t, u64 descriptor)
{
	return (u64 *)((descriptor & DESC_ADDRESS) - (u64)t->offset);
}

static void map_one(struct tables *t, u64 *root, u64 va, u64 pa, int level, u64 attrs)
{
	u64 *table = root;
	for (int current = 0; current < level; current++) {
		u64 *slot = &table[(va >> (39 - 9 * current)) & 511];
		if (!(*slot & DESC_VALID))
			*slot = table_phys(t, table_new(t)) | DESC_TABLE;
		table = table_at(t, *slot);
	}
	table[(va >> (39 - 9 * level)) & 511] = pa | attrs | (level == 3 ? DESC_TABLE : DESC_VALID);
}

void map_range(struct tables *t, u64 *root, u64 va, u64 pa, u64 size, u64 attrs)
{
	u64 end = va + size;
	va &= ~(PAGE_SIZE - 1);
	pa &= ~(PAGE_SIZE - 1);
	while (va < end) {
		u64 left = end - va;
		if (!((va | pa) & (BLOCK_1G - 1)) && left >= BLOCK_1G) {
			map_one(t, root, va, pa, 1, attrs);
			va += BLOCK_1G, pa += BLOCK_1G;
		} else if (!((va | pa) & (BLOCK_2M - 1)) && left >= BLOCK_2M) {
			map_one(t, root, va, pa, 2, attrs);
			va += BLOCK_2M, pa += BLOCK_2M;
		} else {
			map_one(t, root, va, pa, 3, attrs);
			va += PAGE_SIZE, pa += PAGE_SIZE;
		}
	}
}
