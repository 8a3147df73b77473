/*
 * Instruction counting for checking mode, without a Python call per block.
 *
 * Unicorn calls bootemu_block_hook at the start of every translation block it
 * executes.  The hook keeps a running count of instructions and remembers
 * where the current block started, so Python can recover the exact count at
 * any instruction it stops on: count_before_block + (pc - block_address) / 4.
 * A64 instructions are all 4 bytes, which is what makes the division exact.
 *
 * The file is also a (method-less) CPython extension module so that pip
 * builds it with the package; Python loads it with ctypes.
 */
#include <Python.h>
#include <stdint.h>

#include "_blockcount.h"

void bootemu_block_hook(void *uc, uint64_t address, uint32_t size, void *user_data)
{
    struct bootemu_block_counter *counter = user_data;
    uint64_t instructions = size >> 2;

    /* Stop before a block that would overrun the budget: Python then runs
     * the remainder with an exact count, so budgets stay instruction-exact. */
    if (counter->limit && counter->executed + instructions > counter->limit) {
        counter->block_base = counter->executed;
        counter->block_address = address;
        counter->block_end = address;
        counter->stopped_at_limit = 1;
        counter->emu_stop(uc);
        return;
    }
    /* An interrupt falls due: stop between blocks, at most one block late,
     * which an asynchronous exception may be. */
    if (counter->deadline && counter->executed >= counter->deadline) {
        counter->block_base = counter->executed;
        counter->block_address = address;
        counter->block_end = address;
        counter->stopped_at_deadline = 1;
        counter->emu_stop(uc);
        return;
    }
    counter->block_base = counter->executed;
    counter->block_address = address;
    counter->block_end = address + size;
    counter->executed += instructions;
}

/* Lets Python refuse a stale build whose struct layout differs from its own. */
size_t bootemu_block_counter_size(void)
{
    return sizeof(struct bootemu_block_counter);
}

static struct PyModuleDef blockcount_module = {
    PyModuleDef_HEAD_INIT, "_blockcount",
    "Native Unicorn block hook that counts executed instructions.", -1, NULL,
};

PyMODINIT_FUNC PyInit__blockcount(void)
{
    return PyModule_Create(&blockcount_module);
}
