/*
 * The native block counter's state, shared by the C hooks that need the
 * instruction count (see _blockcount.c; emu/machine/counter.py mirrors it).
 */
#ifndef BOOTEMU_BLOCKCOUNT_H
#define BOOTEMU_BLOCKCOUNT_H

#include <stdint.h>

typedef int (*uc_emu_stop_fn)(void *uc);

struct bootemu_block_counter {
    uint64_t executed;        /* instructions in all blocks entered so far */
    uint64_t block_base;      /* value of executed when the current block began */
    uint64_t block_address;   /* virtual address of the current block */
    uint64_t block_end;       /* address just past the current block */
    uint64_t limit;           /* stop once this many have executed; 0 = none */
    uc_emu_stop_fn emu_stop;  /* uc_emu_stop, handed over from Python */
    uint64_t stopped_at_limit;
    uint64_t deadline;        /* stop in front of the first block entered at or
                               * after this count (a timer due); 0 = none */
    uint64_t stopped_at_deadline;
};

/* Instructions executed before the one at pc: exact inside the current block,
 * because A64 instructions are all 4 bytes. */
static inline uint64_t bootemu_index_at(const struct bootemu_block_counter *counter,
                                        uint64_t pc)
{
    if (counter->block_address <= pc && pc < counter->block_end)
        return counter->block_base + (pc - counter->block_address) / 4;
    return counter->executed;
}

#endif
