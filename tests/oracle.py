"""QEMU's own stage-1 walker as an oracle: a probe program run by Unicorn at EL2 or EL1.

Unicorn in its default ``UC_TLB_CPU`` mode translates every guest access with
the walker of the QEMU it is built from.  :class:`QemuProbe` drives that walker
from inside the guest, at the exception level that owns the regime under test,
with that regime's registers live (MMU on, or off for the flat map).  For
each VA of a batch the probe program does:

* ``AT S1E2R/W`` (EL2) or ``AT S1E1R/W`` and ``AT S1E0R/W`` (EL1), storing
  PAR_EL1;
* a real load through the VA, then a store of the loaded value back through
  it (only where the load succeeded, so a stale register is never written);
* a real instruction fetch, ``BLR`` to the VA;
* at EL1 also ``LDTR``/``STTR`` (EL0 permissions) and an ``ERET`` to EL0 at
  the VA (an EL0 instruction fetch).

Faults.  Unicorn 2.1.4 does not deliver exceptions to the guest: with no
``UC_HOOK_INTR`` hook it stops with UC_ERR_EXCEPTION, with one it calls the
hook and then drops the exception (no vector, no ESR/FAR write: the faulting
instruction simply runs again).  The syndrome
QEMU computed for the fault survives only in ``CPUARMState.exception``
(syndrome, FAR), which Unicorn's saved context contains.  So the INTR hook
plays the vector: it reads the syndrome and fault address from a context
snapshot, stores them into the VA's record, and resumes the probe at the
address in x28 at the probe's EL.  The offset of that structure is not part of
Unicorn's API; :meth:`QemuProbe._calibrate` finds it at start-up with two
deliberate faults at distinctive addresses and checks the syndrome found there
(a level-0 translation fault) before any test relies on it.

The probe must be mapped by the tables under test: callers map
:data:`PROBE_SIZE` bytes at :func:`probe_va` with :func:`probe_page`
descriptors (code read-only and executable at both ELs, records read-write and
execute-never).

Physical memory (one RAM block at :data:`RAM_BASE`)::

    CODE_PA     probe program and EL0 gate (64 KiB)
    RECORDS_PA  one RECORD_SIZE record per VA (64 KiB)
    TABLES_PA   translation tables, written per example
    WINDOW_PA   32 MiB "target" window: real accesses only land here

Every 16-byte chunk of the window holds ``movz w9, #lo; movk w9, #hi, lsl 16;
ret; nop`` where hi:lo is the chunk's PA >> 4.  A load through a VA returns
the first two instructions, a fetch executes them and returns, so both say
which physical chunk the CPU really reached.
"""

from __future__ import annotations

import ctypes
import struct
from array import array
from dataclasses import dataclass, fields

from unicorn import UC_ARCH_ARM64, UC_HOOK_INTR, UC_MODE_ARM, Uc
from unicorn import arm64_const as a64
from unicorn.unicorn_const import UC_CTL_IO_WRITE, UC_CTL_TLB_FLUSH

from emu.arch.sysregs import sysreg_encoding

RAM_BASE = 0x4000_0000
RAM_SIZE = 0x400_0000
CODE_PA = RAM_BASE
RECORDS_OFFSET = 0x1_0000
RECORDS_PA = CODE_PA + RECORDS_OFFSET
PROBE_SIZE = 0x2_0000
"""VA span the probe needs: 64 KiB of code, then 64 KiB of records (one 64K page each)."""
TABLES_PA = RAM_BASE + 0x10_0000
TABLES_END = RAM_BASE + 0x100_0000
# 32 MiB-aligned, so a whole 16K-granule level-2 block can sit inside it.
WINDOW_PA = RAM_BASE + 0x200_0000
WINDOW_SIZE = 0x200_0000

PA_BITS = 44
"""Unicorn's "max" CPU reports ID_AA64MMFR0_EL1.PARange = 0b0100 (44 bits)."""

MAIR = 0xFF4F_BB44_0C08_0400
"""Attr0-7: Device nGnRnE, nGnRE, nGRE, GRE; Normal NC, WT, outer NC/inner WB, WB."""
PROBE_ATTR_INDEX = 7  # Normal write-back

RECORD_SIZE = 192
MAX_BATCH = (PROBE_SIZE - RECORDS_OFFSET) // RECORD_SIZE

# Flags of a record: which real accesses the probe makes through its VA.
DO_DATA = 1 << 0  # LDR, then STR of the loaded value
DO_FETCH = 1 << 1  # BLR to the VA
DO_EL0_DATA = 1 << 2  # LDTR, then STTR (EL1 probe only)
DO_EL0_FETCH = 1 << 3  # ERET to EL0 at the VA (EL1 probe only)

PSTATE = {2: 0x3C9, 1: 0x3C5}  # ELxh with DAIF masked
_PSTATE_EL0T = 0x3C0

# Descriptor bits used for the probe's own pages.
_PAGE = 0b11
_AF = 1 << 10
_SH_INNER = 0b11 << 8
_AP_RO_EL0 = 0b11 << 6  # AP[2:1] = 11: read-only at EL1 and EL0
_PXN_UXN = 0b11 << 53

_MOVZ_W9 = 0x5280_0009
_MOVK_W9_LSL16 = 0x72A0_0009
_RET = 0xD65F_03C0
_NOP = 0xD503_201F
_IMM16 = 0xFFFF << 5


@dataclass
class Record:
    """What the CPU reported for one VA.  ESR 0 means the access did not fault."""

    va: int
    flags: int
    par_r: int  # AT S1ExR
    par_w: int  # AT S1ExW
    par_e0r: int  # AT S1E0R (EL1 only)
    par_e0w: int  # AT S1E0W (EL1 only)
    ld_esr: int
    ld_far: int
    ld_val: int
    st_esr: int
    st_far: int
    x_esr: int
    x_far: int
    x_val: int  # w9 after the fetch: the executed chunk's PA >> 4
    uld_esr: int
    uld_far: int
    uld_val: int
    ust_esr: int
    ust_far: int
    ux_esr: int  # EL0 fetch: EC 0x15 (the gate's SVC) means it succeeded
    ux_far: int
    ux_val: int


_FIELDS = [f.name for f in fields(Record)]
OFF = {name: 8 * n for n, name in enumerate(_FIELDS)}
assert 8 * len(_FIELDS) <= RECORD_SIZE


def probe_va(select: int) -> int:
    """Where the probe lives in a VA range: the bottom of TTBR0's, the top of TTBR1's."""
    return 0 if select == 0 else (1 << 64) - PROBE_SIZE


def probe_page(offset: int) -> int:
    """Level-3 page descriptor for the page at ``offset`` in the probe's VA span.

    The span maps linearly onto CODE_PA.  Code is read-only at both ELs and
    executable (EL0 runs the SVC gate); records are EL1 read-write and
    execute-never, so SCTLR.WXN never hides the code.
    """
    if not 0 <= offset < PROBE_SIZE:
        raise ValueError(f"offset {offset:#x} outside the probe")
    attrs = _PAGE | _AF | _SH_INNER | (PROBE_ATTR_INDEX << 2)
    attrs |= _AP_RO_EL0 if offset < RECORDS_OFFSET else _PXN_UXN
    return (CODE_PA + offset) | attrs


def in_window(pa: int) -> bool:
    """Whether a real access to ``pa`` reaches the patterned window (and is safe to make)."""
    return WINDOW_PA <= pa < WINDOW_PA + WINDOW_SIZE


def chunk_from_load(value: int) -> int | None:
    """PA >> 4 encoded in the two instructions a load of a window chunk returns, or None."""
    lo, hi = value & 0xFFFF_FFFF, value >> 32
    if lo & ~_IMM16 != _MOVZ_W9 or hi & ~_IMM16 != _MOVK_W9_LSL16:
        return None
    return ((lo & _IMM16) >> 5) | (((hi & _IMM16) >> 5) << 16)


def _probe_source(el: int) -> str:
    """The probe program for EL2 or EL1 (which adds AT S1E0*, LDTR/STTR and EL0 fetches).

    Registers: x20 record pointer, x21 records left, x27 where the exception
    hook stores ESR/FAR, x28 where it resumes; x0 VA, x1 flags, x2-x4
    scratch, x9 the value a fetched window chunk leaves.  keystone has no
    numeric local labels, hence the named ones.
    """
    o = OFF
    s = f"s1e{el}"
    lines = [
        "loop:",
        "    cbz x21, done",
        "    ldp x0, x1, [x20]",
        f"    at {s}r, x0", "    isb", "    mrs x2, par_el1",
        f"    at {s}w, x0", "    isb", "    mrs x3, par_el1",
        f"    stp x2, x3, [x20, #{o['par_r']}]",
    ]
    if el == 1:
        lines += [
            "    at s1e0r, x0", "    isb", "    mrs x2, par_el1",
            "    at s1e0w, x0", "    isb", "    mrs x3, par_el1",
            f"    stp x2, x3, [x20, #{o['par_e0r']}]",
        ]
    lines += [
        "    tbz x1, #0, no_data",
        f"    add x27, x20, #{o['ld_esr']}", "    adr x28, after_ld",
        "    mov x3, #-1", "    ldr x3, [x0]",
        f"after_ld: str x3, [x20, #{o['ld_val']}]",
        f"    ldr x4, [x20, #{o['ld_esr']}]", "    cbnz x4, no_data",
        f"    add x27, x20, #{o['st_esr']}", "    adr x28, no_data",
        "    str x3, [x0]",
        "no_data:",
        "    tbz x1, #1, no_fetch",
        f"    add x27, x20, #{o['x_esr']}", "    adr x28, after_x",
        "    mov x9, #-1", "    blr x0",
        f"after_x: str x9, [x20, #{o['x_val']}]",
        "no_fetch:",
    ]
    if el == 1:
        lines += [
            "    tbz x1, #2, no_udata",
            f"    add x27, x20, #{o['uld_esr']}", "    adr x28, after_uld",
            "    mov x3, #-1", "    ldtr x3, [x0]",
            f"after_uld: str x3, [x20, #{o['uld_val']}]",
            f"    ldr x4, [x20, #{o['uld_esr']}]", "    cbnz x4, no_udata",
            f"    add x27, x20, #{o['ust_esr']}", "    adr x28, no_udata",
            "    sttr x3, [x0]",
            "no_udata:",
            # EL0 fetch: ERET to the VA at EL0t.  A window chunk returns to
            # el0_gate, whose SVC comes back through the exception hook.
            "    tbz x1, #3, no_ufetch",
            f"    add x27, x20, #{o['ux_esr']}", "    adr x28, after_ux",
            "    mov x9, #-1", "    adr x30, el0_gate",
            "    msr elr_el1, x0", f"    mov x4, #{_PSTATE_EL0T:#x}", "    msr spsr_el1, x4",
            "    eret",
            f"after_ux: str x9, [x20, #{o['ux_val']}]",
            "no_ufetch:",
        ]
    lines += [
        f"    add x20, x20, #{RECORD_SIZE}",
        "    sub x21, x21, #1",
        "    b loop",
        "done:",
        "    b done",
        "el0_gate:",
        "    svc #0",
    ]
    return "\n".join(lines) + "\n"


def _assemble(source: str) -> tuple[bytes, int]:
    """Assemble the probe at address 0; return its bytes and the offset of ``done``.

    keystone returns no symbol table, so the source ends with a ``.quad done``
    that is read back from the end of the output.
    """
    import keystone

    ks = keystone.Ks(keystone.KS_ARCH_ARM64, keystone.KS_MODE_LITTLE_ENDIAN)
    code, _ = ks.asm(source + "    .align 3\n    .quad done\n", 0)
    raw = bytes(code)
    (done,) = struct.unpack_from("<Q", raw, len(raw) - 8)
    return raw[:-8], done


def _cp_key(name: str) -> tuple[int, int, int, int, int]:
    """Unicorn's CP_REG key order (crn, crm, op0, op1, op2) for a register name."""
    op0, op1, crn, crm, op2 = sysreg_encoding(name)
    return (crn, crm, op0, op1, op2)


def _fill_window(uc: Uc) -> None:
    """Write the movz/movk/ret/nop pattern over the window, one MiB at a time.

    A MiB is 65536 chunks, so within one MiB the movz immediates run through
    every 16-bit value once and the movk immediate is constant.
    """
    chunks = 1 << 16
    words = array("I", bytes(16 * chunks))
    words[0::4] = array("I", (_MOVZ_W9 | (i << 5) for i in range(chunks)))
    words[2::4] = array("I", [_RET]) * chunks
    words[3::4] = array("I", [_NOP]) * chunks
    for mib in range(WINDOW_SIZE >> 20):
        pa = WINDOW_PA + (mib << 20)
        words[1::4] = array("I", [_MOVK_W9_LSL16 | ((pa >> 20) << 5)]) * chunks
        uc.mem_write(pa, words.tobytes())


class ProbeError(Exception):
    """The probe run did not finish its batch (an unexpected exception or a runaway)."""


class QemuProbe:
    """One Unicorn CPU at EL2 or EL1 (Non-secure, AArch64) that runs probe batches.

    Create once and reuse: :meth:`load_tables` replaces the tables of the
    previous example; :meth:`run` sets the regime's registers, flushes
    Unicorn's TLB and translation-block cache and probes a batch of VAs with
    one ``emu_start``.
    """

    def __init__(self, el: int) -> None:
        if el not in (1, 2):
            raise ValueError("the probe runs at EL1 or EL2")
        self.el = el
        self.code, self.done_offset = _assemble(_probe_source(el))
        uc = self.uc = Uc(UC_ARCH_ARM64, UC_MODE_ARM)
        uc.ctl_set_cpu_model(a64.UC_CPU_ARM64_MAX)
        uc.mem_map(RAM_BASE, RAM_SIZE)
        uc.mem_write(CODE_PA, self.code)
        _fill_window(uc)
        # SCR_EL3 = NS | HCE | RW: at reset it is Secure, where QEMU's EL2
        # translation misbehaves; HCR_EL2.RW makes EL1 AArch64.  PSTATE is
        # written between two CP writes because writing PSTATE alone does not
        # rebuild Unicorn's cached EL flags (unicorn issue #2333).
        self.write_sysreg("SCR_EL3", 0x501)
        self.write_sysreg("HCR_EL2", 1 << 31)
        self._enter_probe_el()
        self._written: list[int] = []
        self._records_va = 0
        self._batch_bytes = 0
        self._stray: str | None = None
        self._context = uc.context_save()
        self._exception_offset: int | None = None
        self._calibration: list[bytes] = []
        uc.hook_add(UC_HOOK_INTR, self._on_exception)
        self._calibrate()

    # -- registers and memory ------------------------------------------------

    def write_sysreg(self, name: str, value: int) -> None:
        """Write a system register through Unicorn's CP_REG interface (rebuilds EL flags)."""
        self.uc.reg_write(a64.UC_ARM64_REG_CP_REG, _cp_key(name) + (value,))

    def _enter_probe_el(self) -> None:
        self.uc.reg_write(a64.UC_ARM64_REG_PSTATE, PSTATE[self.el])
        self.write_sysreg("SCR_EL3", 0x501)

    def load_tables(self, descriptors: dict[int, int]) -> None:
        """Zero the previous example's descriptors, then write these (PA → descriptor)."""
        for pa in self._written:
            self.uc.mem_write(pa, bytes(8))
        for pa, descriptor in descriptors.items():
            if not TABLES_PA <= pa < TABLES_END:
                raise ValueError(f"descriptor at {pa:#x} outside the tables region")
            self.uc.mem_write(pa, descriptor.to_bytes(8, "little"))
        self._written = list(descriptors)

    def read_phys(self, pa: int) -> int | None:
        """The 64-bit little-endian word at physical ``pa``, or None where no RAM backs it."""
        if RAM_BASE <= pa <= RAM_BASE + RAM_SIZE - 8:
            return int.from_bytes(self.uc.mem_read(pa, 8), "little")
        return None

    # -- exceptions ----------------------------------------------------------

    def _exception_state(self) -> tuple[int, int]:
        """(syndrome, fault address) of the exception being taken, from a context snapshot.

        ``CPUARMState.exception`` is {u32 syndrome; u32 fsr; u64 vaddress; ...};
        the calibrated offset points at ``vaddress``.
        """
        self.uc.context_update(self._context)
        base = self._context.context.value
        assert base is not None and self._exception_offset is not None
        at = base + self._exception_offset
        return ctypes.c_uint32.from_address(at - 8).value, ctypes.c_uint64.from_address(at).value

    def _on_exception(self, uc: Uc, intno: int, _user: object) -> None:
        """UC_HOOK_INTR: act as the vector - record ESR/FAR in the VA's record, resume at x28."""
        slot = uc.reg_read(a64.UC_ARM64_REG_X27)
        offset = slot - self._records_va
        if not (0 <= offset < self._batch_bytes and offset % 8 == 0):
            self._stray = (f"exception {intno} at PC {uc.reg_read(a64.UC_ARM64_REG_PC):#x} "
                           f"outside any probed access (x27 {slot:#x})")
            uc.emu_stop()
            return
        if self._exception_offset is None:  # calibrating: keep the raw state
            self._calibration.append(bytes(self._raw_context()))
            esr, far = 1, 0
        else:
            esr, far = self._exception_state()
        uc.mem_write(RECORDS_PA + offset, struct.pack("<QQ", esr, far))
        uc.reg_write(a64.UC_ARM64_REG_PC, uc.reg_read(a64.UC_ARM64_REG_X28))
        if (uc.reg_read(a64.UC_ARM64_REG_PSTATE) >> 2) & 3 != self.el:
            self._enter_probe_el()  # the exception came from EL0

    def _raw_context(self) -> bytes:
        self.uc.context_update(self._context)
        return ctypes.string_at(self._context.context.value, self._context.size)

    def _calibrate(self) -> None:
        """Find where Unicorn's context keeps the pending exception's syndrome and address.

        Two loads from distinctive unmapped VAs fault (level-0 translation
        faults: only the probe is mapped); the offset holding each VA in its
        own snapshot, with a matching data-abort syndrome 8 bytes before it,
        is the one.
        """
        vas = (0x0000_5A5A_1234_5670, 0x0000_7C3C_8765_4320)
        descriptors, registers = self._calibration_regime()
        self.load_tables(descriptors)
        self.run(registers, 0, [(va, DO_DATA) for va in vas])
        self.load_tables({})
        snapshots = self._calibration
        if len(snapshots) != len(vas):
            raise ProbeError(f"calibration expected {len(vas)} faults, saw {len(snapshots)}")
        candidates = []
        for offset in range(8, len(snapshots[0]) - 8, 8):
            if all(raw[offset:offset + 8] == va.to_bytes(8, "little")
                   for raw, va in zip(snapshots, vas, strict=True)):
                syndromes = {int.from_bytes(raw[offset - 8:offset - 4], "little")
                             for raw in snapshots}
                # EC 0x25 (data abort, same EL), IL, DFSC 0b000100 (translation, level 0).
                if all(s >> 26 == 0x25 and s & 0x3F == 0b000100 and s & (1 << 25)
                       for s in syndromes):
                    candidates.append(offset)
        if len(candidates) != 1:
            raise ProbeError(f"cannot locate the exception syndrome in Unicorn's context "
                             f"(candidates {candidates})")
        self._exception_offset = candidates[0]

    def _calibration_regime(self) -> tuple[dict[int, int], dict[str, int]]:
        """A 4K-granule, 48-bit regime mapping only the probe at VA 0 (for calibration)."""
        l0, l1, l2, l3 = (TABLES_PA + n * 0x1000 for n in range(4))
        descriptors = {l0: l1 | 0b11, l1: l2 | 0b11, l2: l3 | 0b11}
        for n in range(PROBE_SIZE // 0x1000):
            descriptors[l3 + 8 * n] = probe_page(n * 0x1000)
        sctlr = 0x30D0_0800 | 1
        if self.el == 2:
            tcr = 16 | (0b101 << 16) | (1 << 23) | (1 << 31)  # T0SZ 16, PS 48 bits, RES1
            return descriptors, {"SCTLR_EL2": sctlr, "TCR_EL2": tcr, "TTBR0_EL2": l0,
                                 "MAIR_EL2": MAIR}
        tcr = 16 | (16 << 16) | (1 << 23) | (0b10 << 30) | (0b101 << 32)  # EPD1, TG1 4K
        return descriptors, {"SCTLR_EL1": sctlr, "TCR_EL1": tcr, "TTBR0_EL1": l0,
                             "TTBR1_EL1": 0, "MAIR_EL1": MAIR}

    # -- running -------------------------------------------------------------

    def run(self, registers: dict[str, int], probe_base: int,
            batch: list[tuple[int, int]]) -> list[Record]:
        """Probe ``batch`` ((VA, flags) pairs) with ``registers`` written; one emu_start.

        ``registers`` holds the regime's SCTLR/TCR/TTBR/MAIR values by name;
        ``probe_base`` is the VA where those tables map the probe.
        """
        if len(batch) > MAX_BATCH:
            raise ValueError(f"at most {MAX_BATCH} VAs per batch")
        uc = self.uc
        self._enter_probe_el()  # a failed run may have left the CPU at EL0
        for name, value in registers.items():
            self.write_sysreg(name, value)
        # The softmmu TLB and the translated blocks were made under the
        # previous example's tables; neither may survive into this one.
        uc.ctl(UC_CTL_TLB_FLUSH, UC_CTL_IO_WRITE)
        uc.ctl_flush_tb()
        blob = bytearray(RECORD_SIZE * len(batch))
        for n, (va, flags) in enumerate(batch):
            struct.pack_into("<QQ", blob, n * RECORD_SIZE, va, flags)
        uc.mem_write(RECORDS_PA, bytes(blob))
        self._records_va = probe_base + RECORDS_OFFSET
        self._batch_bytes = len(blob)
        self._stray = None
        uc.reg_write(a64.UC_ARM64_REG_X20, self._records_va)
        uc.reg_write(a64.UC_ARM64_REG_X21, len(batch))
        # No stale slot: an exception before the first access is a stray one.
        uc.reg_write(a64.UC_ARM64_REG_X27, 0)
        uc.reg_write(a64.UC_ARM64_REG_X28, 0)
        done = probe_base + self.done_offset
        # The count bounds a runaway; a VA needs well under 100 instructions.
        uc.emu_start(probe_base, done, count=100 * len(batch) + 100)
        pc = uc.reg_read(a64.UC_ARM64_REG_PC)
        left = uc.reg_read(a64.UC_ARM64_REG_X21)
        if self._stray or pc != done or left:
            raise ProbeError(self._stray or f"probe stopped at PC {pc:#x} with {left} of "
                                            f"{len(batch)} VAs left")
        raw = bytes(uc.mem_read(RECORDS_PA, len(blob)))
        count = len(_FIELDS)
        return [Record(*struct.unpack_from(f"<{count}Q", raw, n * RECORD_SIZE))
                for n in range(len(batch))]

    def restore(self) -> None:
        """Undo whatever a runaway probe may have written: code, window, table area.

        Only needed after a failed run, when the CPU may have executed (and
        stored through) memory that is not a window chunk.
        """
        self.uc.mem_write(CODE_PA, self.code)
        _fill_window(self.uc)
        self.uc.mem_write(TABLES_PA, bytes(TABLES_END - TABLES_PA))
        self._written = []
