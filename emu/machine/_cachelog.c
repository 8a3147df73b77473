/*
 * Cache maintenance (IC and DC instructions) logged without a Python call
 * per instruction.
 *
 * Boot code cleans and zeroes memory in loops of hundreds of thousands of
 * DC instructions (Xen 4.17 zeroes 28 MiB with DC ZVA, one per 64 bytes).
 * Each is only an event for the timeline: no rule acts on it.  So this is
 * the machine's one UC_HOOK_INSN hook for SYS instructions (Unicorn calls
 * only one per instruction type): IC and DC operations are appended to a
 * log that Python reads back in order when it next needs the event stream;
 * every other SYS operation (TLBI, AT, ...) is handed to the Python hook.
 *
 * A record holds what the event needs from the moment the instruction ran:
 * its instruction count, PC, exception level and operand.  When the log is
 * full, the Python drain is called to empty it.
 *
 * Like _blockcount.c, a method-less CPython extension module loaded with ctypes.
 */
#include <Python.h>
#include <stdint.h>

#include "_blockcount.h"

#define BOOTEMU_CACHE_LOG_CAPACITY 4096
/* The (op1, CRm, op2) of a SYS operation with CRn = 7, as one index. */
#define BOOTEMU_CRN7_OPERATIONS 1024

typedef int (*uc_reg_read_fn)(void *uc, int regid, void *value);
typedef uint32_t (*sys_hook_fn)(void *uc, uint32_t reg, const void *cp_reg, void *user_data);
typedef void (*drain_fn)(void *uc, void *user_data);

/* Unicorn's uc_arm64_cp_reg. */
struct cp_reg {
    uint32_t crn, crm, op0, op1, op2;
    uint64_t val;
};

struct bootemu_cache_op {
    uint64_t index;    /* instructions executed before it */
    uint64_t pc;
    uint64_t operand;  /* Xt */
    uint32_t operation;/* (op1 << 7) | (CRm << 3) | op2; CRn is 7 */
    uint32_t el;
};

struct bootemu_cache_log {
    const struct bootemu_block_counter *counter;
    uc_reg_read_fn reg_read;   /* uc_reg_read */
    int32_t pc_reg;            /* UC_ARM64_REG_PC */
    int32_t pstate_reg;        /* UC_ARM64_REG_PSTATE */
    sys_hook_fn others;        /* Python: the SYS operations not logged here */
    drain_fn drain;            /* Python: empties the log (sets count to 0) */
    uint64_t count;
    uint8_t logged[BOOTEMU_CRN7_OPERATIONS];  /* 1: log this operation */
    struct bootemu_cache_op ops[BOOTEMU_CACHE_LOG_CAPACITY];
};

uint32_t bootemu_sys_hook(void *uc, uint32_t reg, const void *cp, void *user_data)
{
    struct bootemu_cache_log *log = user_data;
    const struct cp_reg *op = cp;
    uint32_t operation = ((op->op1 & 7) << 7) | ((op->crm & 15) << 3) | (op->op2 & 7);
    uint64_t pc = 0, pstate = 0;
    struct bootemu_cache_op *record;

    if (op->op0 != 1 || op->crn != 7 || !log->logged[operation])
        return log->others(uc, reg, cp, user_data);
    if (log->count == BOOTEMU_CACHE_LOG_CAPACITY) {
        log->drain(uc, user_data);
        if (log->count == BOOTEMU_CACHE_LOG_CAPACITY)
            return 0;  /* the drain failed (and stopped emulation): drop this one */
    }
    log->reg_read(uc, log->pc_reg, &pc);
    log->reg_read(uc, log->pstate_reg, &pstate);
    record = &log->ops[log->count++];
    record->index = bootemu_index_at(log->counter, pc);
    record->pc = pc;
    record->operand = op->val;
    record->operation = operation;
    record->el = (uint32_t)(pstate >> 2) & 3;
    return 0;  /* the instruction itself runs as Unicorn implements it */
}

size_t bootemu_cache_log_size(void)
{
    return sizeof(struct bootemu_cache_log);
}

static struct PyModuleDef cachelog_module = {
    PyModuleDef_HEAD_INIT, "_cachelog",
    "Native Unicorn SYS hook that logs IC and DC instructions.", -1, NULL,
};

PyMODINIT_FUNC PyInit__cachelog(void)
{
    return PyModule_Create(&cachelog_module);
}
