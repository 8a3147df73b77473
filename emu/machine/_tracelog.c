/*
 * Executed instructions logged without a Python call per instruction.
 *
 * `bootemu trace` prints every instruction the guest executes.  A Python
 * UC_HOOK_CODE costs a crossing into Python per instruction; this native
 * hook only appends (instruction index, PC) to a buffer, which Python reads
 * back in order - when the machine needs its event stream complete (before
 * an event, a TLB fill, and at every stop), and when the buffer is full (the
 * drain callback) - and formats in batches.
 *
 * The index is the block counter's (_blockcount.h): the instructions executed
 * before this one.  Emulation may stop in front of an instruction after this
 * hook has run for it (a later hook stopped it) and start there again: the
 * same instruction at the same index is logged once.
 *
 * Every record in the buffer ran at one exception level, the log's `el`:
 * the EL can only change between translation blocks (ERET; exceptions are
 * delivered by Python, at stops), so it is read at the first instruction of
 * each block, and when it differs the records so far are drained first.
 * Python needs it to translate the PCs of a batch in the regime they ran in.
 *
 * Unicorn gets the hook by address (Python loads this file with ctypes, as
 * _blockcount.c); as a CPython extension module it also offers
 * format_lines, which turns a batch of records into trace lines without a
 * Python step per line.
 */
#include <Python.h>
#include <stdint.h>
#include <string.h>

#include "_blockcount.h"

typedef int (*uc_reg_read_fn)(void *uc, int regid, void *value);
typedef void (*drain_fn)(void *uc, void *user_data);

struct bootemu_trace_record {
    uint64_t index;  /* instructions executed before it */
    uint64_t pc;
};

struct bootemu_trace_log {
    const struct bootemu_block_counter *counter;
    uc_reg_read_fn reg_read;   /* uc_reg_read */
    int32_t pstate_reg;        /* UC_ARM64_REG_PSTATE */
    uint32_t el;               /* the exception level of every record in the buffer */
    drain_fn drain;            /* Python: empties the log (sets count to 0) */
    uint64_t enabled;          /* 0: log nothing (recording is being removed) */
    uint64_t capacity;         /* records the buffer holds */
    uint64_t count;            /* records in the buffer */
    uint64_t logged;           /* 1 once a record was made: last_* are valid */
    uint64_t last_index;       /* the last record made (kept across drains) */
    uint64_t last_pc;
    struct bootemu_trace_record *records;
};

void bootemu_trace_hook(void *uc, uint64_t address, uint32_t size, void *user_data)
{
    struct bootemu_trace_log *log = user_data;
    const struct bootemu_block_counter *counter = log->counter;
    uint64_t index;
    struct bootemu_trace_record *record;

    (void)size;
    if (!log->enabled)
        return;
    index = bootemu_index_at(counter, address);
    if (log->logged && index == log->last_index && address == log->last_pc)
        return;  /* emulation stopped in front of it and started there again */
    if (address == counter->block_address) {
        uint64_t pstate = 0;
        uint32_t el;

        log->reg_read(uc, log->pstate_reg, &pstate);
        el = (uint32_t)(pstate >> 2) & 3;
        if (el != log->el) {
            if (log->count) {
                log->drain(uc, user_data);
                if (log->count)
                    return;  /* the drain failed (and stopped emulation) */
            }
            log->el = el;
        }
    }
    if (log->count == log->capacity) {
        log->drain(uc, user_data);
        if (log->count == log->capacity)
            return;  /* the drain failed (and stopped emulation): drop this one */
    }
    record = &log->records[log->count++];
    record->index = index;
    record->pc = address;
    log->logged = 1;
    log->last_index = index;
    log->last_pc = address;
}

/* The decimal digits of `value`. */
static Py_ssize_t decimal_digits(uint64_t value)
{
    Py_ssize_t n = 1;

    while (value >= 10) {
        value /= 10;
        n++;
    }
    return n;
}

/*
 * A decimal number kept as text, right-aligned in at least `width`
 * characters: consecutive indices (the usual run) are counted up in place
 * instead of being converted again.
 */
struct decimal {
    uint64_t value;
    Py_ssize_t length;  /* characters in text */
    char text[24];
};

static void decimal_set(struct decimal *number, uint64_t value, Py_ssize_t width)
{
    Py_ssize_t digits = decimal_digits(value), i;

    number->value = value;
    number->length = digits > width ? digits : width;
    memset(number->text, ' ', (size_t)number->length);
    for (i = number->length - 1; i >= number->length - digits; i--) {
        number->text[i] = (char)('0' + value % 10);
        value /= 10;
    }
}

static void decimal_to(struct decimal *number, uint64_t value, Py_ssize_t width)
{
    Py_ssize_t i;

    if (value != number->value + 1 || number->value == UINT64_MAX) {
        decimal_set(number, value, width);
        return;
    }
    for (i = number->length - 1; i >= 0 && number->text[i] == '9'; i--)
        number->text[i] = '0';
    if (i >= 0 && number->text[i] != ' ') {
        number->text[i]++;
        number->value = value;
    } else {
        decimal_set(number, value, width);  /* one digit more */
    }
}

#define VA_TEXT 18  /* "0x" and 16 hex digits */
#define BODY_CACHE 256  /* recent (VA, body) pairs: loops run the same few VAs */

static const char *ascii_of(PyObject *text, Py_ssize_t *length)
{
    if (!PyUnicode_Check(text) || !PyUnicode_IS_ASCII(text))
        return NULL;
    *length = PyUnicode_GET_LENGTH(text);
    return (const char *)PyUnicode_DATA(text);
}

/*
 * format_lines(data, start, stop, bodies, head, width, middle, tail) -> str | None
 *
 * Trace lines for records start..stop of `data` (struct bootemu_trace_record
 * each): head, the index right-aligned in `width`, middle, the body, tail.
 * The body is bodies[VA] (a dict of str), or with bodies None the VA as
 * "0x" and 16 hex digits.  None when a VA has no body, or a body or the
 * fixed parts are not ASCII: the caller makes those lines itself.
 */
static PyObject *format_lines(PyObject *module, PyObject *args)
{
    static char hex_pairs[256][2];
    Py_buffer data;
    Py_ssize_t start, stop, width, i, count, fixed, bound, digits;
    Py_ssize_t head_length, middle_length, tail_length, bodies_length = 0;
    PyObject *bodies, *head, *middle, *tail, *result = NULL;
    const char *head_text, *middle_text, *tail_text;
    const char **body_text = NULL;
    Py_ssize_t *body_length = NULL;
    uint64_t cached_va[BODY_CACHE], largest = 0;
    const char *cached_text[BODY_CACHE];
    Py_ssize_t cached_length[BODY_CACHE];
    struct decimal number;
    char *out, *begin;

    (void)module;
    if (!hex_pairs[255][0]) {
        for (i = 0; i < 256; i++) {
            hex_pairs[i][0] = "0123456789abcdef"[i >> 4];
            hex_pairs[i][1] = "0123456789abcdef"[i & 15];
        }
    }
    if (!PyArg_ParseTuple(args, "y*nnOUnUU", &data, &start, &stop, &bodies, &head, &width,
                          &middle, &tail))
        return NULL;
    count = stop - start;
    if (start < 0 || count < 0 || stop > data.len / (Py_ssize_t)sizeof(struct bootemu_trace_record)
        || width < 0 || width > 20 || (bodies != Py_None && !PyDict_Check(bodies))) {
        PyErr_SetString(PyExc_ValueError, "format_lines: bad record range, width or bodies");
        goto done;
    }
    head_text = ascii_of(head, &head_length);
    middle_text = ascii_of(middle, &middle_length);
    tail_text = ascii_of(tail, &tail_length);
    if (!head_text || !middle_text || !tail_text) {
        result = Py_NewRef(Py_None);
        goto done;
    }
    body_text = PyMem_Malloc((size_t)(count ? count : 1) * sizeof(*body_text));
    body_length = PyMem_Malloc((size_t)(count ? count : 1) * sizeof(*body_length));
    if (!body_text || !body_length) {
        PyErr_NoMemory();
        goto done;
    }
    memset(cached_text, 0, sizeof(cached_text));
    /* First the bodies, and a bound on the length of the text. */
    for (i = 0; i < count; i++) {
        struct bootemu_trace_record record;

        memcpy(&record, (const char *)data.buf + (start + i) * sizeof(record), sizeof(record));
        if (record.index > largest)
            largest = record.index;
        if (bodies == Py_None)
            continue;
        {
            unsigned slot = (unsigned)(record.pc >> 2) % BODY_CACHE;

            if (!cached_text[slot] || cached_va[slot] != record.pc) {
                PyObject *key = PyLong_FromUnsignedLongLong(record.pc);
                PyObject *body;

                if (!key)
                    goto done;
                body = PyDict_GetItemWithError(bodies, key);  /* borrowed */
                Py_DECREF(key);
                if (!body) {
                    if (!PyErr_Occurred())
                        result = Py_NewRef(Py_None);  /* not described yet */
                    goto done;
                }
                cached_text[slot] = ascii_of(body, &cached_length[slot]);
                if (!cached_text[slot]) {
                    result = Py_NewRef(Py_None);
                    goto done;
                }
                cached_va[slot] = record.pc;
            }
            body_text[i] = cached_text[slot];
            body_length[i] = cached_length[slot];
            bodies_length += cached_length[slot];
        }
    }
    digits = decimal_digits(largest);
    fixed = head_length + (digits > width ? digits : width) + middle_length + tail_length;
    bound = count * (fixed + (bodies == Py_None ? VA_TEXT : 0)) + bodies_length;
    /* Then the text (an index may be shorter than the largest: trimmed after). */
    result = PyUnicode_New(bound, 127);
    if (!result)
        goto done;
    out = begin = (char *)PyUnicode_DATA(result);
    number.value = UINT64_MAX;
    for (i = 0; i < count; i++) {
        struct bootemu_trace_record record;

        memcpy(&record, (const char *)data.buf + (start + i) * sizeof(record), sizeof(record));
        memcpy(out, head_text, (size_t)head_length);
        out += head_length;
        decimal_to(&number, record.index, width);
        memcpy(out, number.text, (size_t)number.length);
        out += number.length;
        memcpy(out, middle_text, (size_t)middle_length);
        out += middle_length;
        if (bodies == Py_None) {
            int shift;

            *out++ = '0';
            *out++ = 'x';
            for (shift = 56; shift >= 0; shift -= 8, out += 2)
                memcpy(out, hex_pairs[(record.pc >> shift) & 255], 2);
        } else {
            memcpy(out, body_text[i], (size_t)body_length[i]);
            out += body_length[i];
        }
        memcpy(out, tail_text, (size_t)tail_length);
        out += tail_length;
    }
    if (out - begin != bound && PyUnicode_Resize(&result, out - begin) < 0)
        result = NULL;  /* PyUnicode_Resize dropped it */
done:
    PyMem_Free(body_text);
    PyMem_Free(body_length);
    PyBuffer_Release(&data);
    return result;
}

/* Lets Python refuse a stale build whose struct layout differs from its own. */
size_t bootemu_trace_log_size(void)
{
    return sizeof(struct bootemu_trace_log);
}

static PyMethodDef tracelog_methods[] = {
    {"format_lines", format_lines, METH_VARARGS,
     "format_lines(data, start, stop, bodies, head, width, middle, tail) -> str | None\n\n"
     "Trace lines for records start..stop of data: head, index right-aligned in width,\n"
     "middle, bodies[VA] (or, with bodies None, the VA in 18 characters), tail.  None\n"
     "when a VA has no body or the text is not ASCII."},
    {NULL, NULL, 0, NULL},
};

static struct PyModuleDef tracelog_module = {
    PyModuleDef_HEAD_INIT, "_tracelog",
    "Native Unicorn code hook that logs executed instructions, and the trace\n"
    "lines of its records.", -1, tracelog_methods,
};

PyMODINIT_FUNC PyInit__tracelog(void)
{
    return PyModule_Create(&tracelog_module);
}
