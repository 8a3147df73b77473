"""Tarmac traces: every executed instruction, in the text format Arm's tools read.

Tarmac is the trace format of Arm's Fast Models; Arm's *Tarmac Trace
Utilities* (``tarmac-browser``, ``tarmac-calltree``, ``tarmac-profile``,
``tarmac-vcd``, ...; github.com/ARM-software/tarmac-trace-utilities) index a
Tarmac file and browse it, with symbols from ``--image ELF`` (``bootemu asm
--elf`` writes one).  What follows is the subset of the format bootemu writes,
as that project's parser (``lib/parser.cpp``), register table
(``lib/registers.cpp``, ``include/libtarmac/registers.hh``), indexer
(``lib/index.cpp``), documentation (``doc/index.rst``, "Tarmac trace file
format") and parser test data (``tests/parsertest.txt``) describe it.

The lines (one event each; fields separated by spaces)
------------------------------------------------------

Every line starts with a timestamp and its unit: bootemu writes the index of
the instruction (the instructions executed before it, the ``#insn`` of the
other reports) and ``clk``, as Fast Models do (``clk`` is one of the units the
parser knows: ``clk ns cs cyc tic ps``).  The lines of one instruction share
its timestamp, which is how the indexer groups them.

``T clk IT (N) VA:PA ENCODING O MODE : DISASSEMBLY``
    an executed instruction (``IS`` instead of ``IT``: a ``B.cond`` whose
    condition failed, as Fast Models mark it).  ``N`` is the decimal index (the
    parser takes a decimal or hex number in the brackets); ``VA`` the PC and
    ``PA`` where it was fetched from (16 hex digits each, the parser's "hex
    address after ':'"); ``ENCODING`` 8 hex digits (the width of the
    instruction is 4 bits a digit); ``O`` the instruction-set state AArch64
    (``A`` and ``T`` are A32 and T32); ``MODE`` a word the parser skips,
    ``EL<n><h|t>_<n|s>`` in Fast Models' spelling: the EL, ``h`` for SP_ELn or
    ``t`` for SP_EL0 (PSTATE.SP), and ``_n`` for Non-secure (bootemu resets
    SCR_EL3.NS = 1 and runs at EL2 or EL1, so always ``_n``); then `` : `` and
    capstone's disassembly (:class:`emu.report.trace.Disassembler`; free text
    to the end of the line).  An instruction whose fetch bootemu's MMU model
    cannot translate has no ``:PA`` and encoding ``00000000``.
``T clk MR<size> VA:PA VALUE`` / ``T clk MW<size> VA:PA VALUE``
    a data load / store of ``size`` bytes (1, 2, 4 or 8) at ``VA``, which went
    to ``PA``; ``VALUE`` the data as the loaded or stored quantity, most
    significant byte first (``2 * size`` hex digits).  Only with ``memory=True``.
``T clk R NAME VALUE``
    a register the instruction changed, with its new value, most significant
    byte first: ``X0``..``X30`` and the stack pointer in use (16 hex digits),
    ``CPSR`` (PSTATE as Unicorn packs it, 8 hex digits), and the system
    registers of :data:`SYSTEM_REGISTERS` (16 hex digits).

An instruction's ``M`` lines follow its ``IT`` line, then its ``R`` lines
(Fast Models' order); they are written when the next instruction is about to
run (or at :meth:`TarmacTracer.finish`), since only then is it known what the
instruction did.

What the tools do with them
---------------------------

The parser knows ``X0``-``X30``, ``CPSR``, and any name starting ``SP_`` with
16 digits as the 64-bit stack pointer (the one it tracks: bootemu names the
one in use, ``SP_EL<n>`` for SPSel = 1 at ELn, ``SP_EL0`` otherwise, and writes
it again when PSTATE switches stack pointers).  It reads system-register lines
and drops them silently (Fast Models write them too; the browser shows them in
the trace text).  Its call-tree heuristic (``update_pc`` in ``index.cpp``): a
change of flow whose target is not the next instruction is a *call* when X30
was written by one of the last 8 instructions and holds (within 64 bytes) the
address after the branch; the call *returns* when a later change of flow lands
on that address with the same SP.  So bootemu writes ``R X30`` after every
``BL``/``BLR`` (and ``BLRAA``-family) instruction even when X30 already held
that value, and writes the SP line whenever it changes.

Memory values
-------------

``MR`` values are read at the access, before the load: the bytes the load
returns.  ``MW`` values are read once the store has completed, when the next
instruction starts: the bytes it wrote.  Both come from physical memory at the
PA, and only from RAM (and, for loads, a flash bank in read-array mode):
reading a device's registers from outside would have effects on it (a UART's
FIFO, a GIC's acknowledge), so a load or store to a device has no line.

Each access's size and VA are decoded from the instruction, because the
machine's memory observer learns neither: only the kind of access and an
address (Unicorn 2.1.4's memory hooks report the *physical* address: ``str
xzr, [x1, x0, lsl #3]`` with x1 = 0x8000207000, x0 = 0 is reported at
0x40007000 in asm/head.S; the machine turns it into the VA where the memory
operand can be decoded, and passes the PA on otherwise).  The size comes from the load/store
encoding classes of the Arm ARM (one register in all its addressing forms and
the atomics, pair, literal, exclusive/ordered/compare-and-swap, LDAPUR/STLUR,
SIMD structures), and so does the effective address (base register, offset,
index register with its extend and shift, from the registers before the
instruction).  The VA of an access is the byte of the effective address's page,
or of the next one, that translates (``Machine.data_pa``) to the reported PA;
an address equal to a VA of those pages is taken as that VA.  Unicorn (QEMU)
makes a 128-bit access as two 8-byte ones at VA and VA + 8, with one observer
call each, so a ``Q`` register's load or store is written as two
``MR8``/``MW8`` lines, a form the parser takes (its memory values are at most 8
bytes).  Unicorn makes a store-exclusive as a compare-and-exchange, which
reads the location first: that read, which the architecture does not make, has
no line.  A call for an instruction that is none of those classes (``DC ZVA``,
tag stores) or whose VA is not found (the access faults) has no line.

Not written: timestamps in cycles, ``E`` (exception) lines, the ``Tarmac Text
Rev`` header, SIMD&FP register lines, instruction fetches, and the entry state
(a register shows in the trace once an instruction changes it).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

from emu.arch.mmu.walk import Access
from emu.machine.events import (
    CacheMaintenance,
    DescriptorWrite,
    Event,
    ExceptionTaken,
    SysRegWrite,
    TlbInvalidate,
)
from emu.machine.machine import DEFAULT_MAX_INSNS, Machine, MachineObserver
from emu.machine.targets import TargetRun, run_to_target
from emu.report.trace import Disassembler

#: The system registers compared before and after each instruction (TTBR1_EL2,
#: a FEAT_VHE register, is not in bootemu's table :mod:`emu.arch.sysregs`).
SYSTEM_REGISTERS: tuple[str, ...] = tuple(
    f"{name}_EL{el}"
    for el in (1, 2)
    for name in ("SCTLR", "TCR", "TTBR0", "TTBR1", "MAIR", "VBAR", "ELR", "SPSR", "ESR", "FAR")
    if (name, el) != ("TTBR1", 2)
)

_GENERAL = tuple(f"x{n}" for n in range(31))
# Snapshot layout: X0..X30, SP, PSTATE, then the system registers.
_SP = 31
_PSTATE = 32
_SYSTEM = 33
_EL_BITS = 0xC  # PSTATE.EL
_MSR_REGISTER = 0xD51  # bits [31:20] of MSR <system register>, Xt (DDI 0487 C6.2 "MSR (register)")
_MASK32 = 0xFFFF_FFFF
_PAGE = 0x1000
_PAGE_MASK = ~(_PAGE - 1) & ((1 << 64) - 1)


def mode_name(pstate: int) -> str:
    """Fast Models' name of the mode in PSTATE: ``EL2h_n`` (Non-secure always)."""
    el = (pstate >> 2) & 3
    return f"EL{el}{'h' if pstate & 1 else 't'}_n"


def stack_pointer_name(pstate: int) -> str:
    """The stack pointer in use: ``SP_EL<n>`` with PSTATE.SP = 1 at ELn, else ``SP_EL0``."""
    return f"SP_EL{(pstate >> 2) & 3 if pstate & 1 else 0}"


def writes_link_register(word: int) -> bool:
    """Whether the A64 instruction ``word`` is a branch with link (BL, BLR, BLRAA...)."""
    return ((word & 0xFC00_0000) == 0x9400_0000              # BL imm26
            or (word & 0xFFFF_FC1F) == 0xD63F_0000           # BLR Xn
            or (word & 0xFEFF_F800) == 0xD63F_0800)          # BLRAA/BLRAB(Z)


def condition_holds(cond: int, nzcv: int) -> bool:
    """The Arm ARM's ConditionHolds for a 4-bit ``cond`` and PSTATE.NZCV (bits 3..0)."""
    n, z, c, v = (nzcv >> 3) & 1, (nzcv >> 2) & 1, (nzcv >> 1) & 1, nzcv & 1
    base = cond >> 1
    result = (z == 1, c == 1, n == 1, v == 1, c == 1 and z == 0, n == v,
              n == v and z == 0, True)[base]
    if cond & 1 and cond != 0b1111:
        result = not result
    return result


def failed_condition(word: int, pstate: int) -> bool:
    """Whether ``word`` is a B.cond (or BC.cond) whose condition fails under ``pstate``."""
    return (word & 0xFF00_0000) == 0x5400_0000 and not condition_holds(word & 0xF,
                                                                        (pstate >> 28) & 0xF)


def access_size(word: int) -> int | None:
    """Bytes of each memory access the load/store ``word`` makes, as Unicorn
    makes them (128-bit ones as two 8-byte halves); None when ``word`` is not
    a load or store of the classes decoded here."""
    if (word >> 25) & 0b101 != 0b100:       # op0 x1x0: the loads and stores
        return None
    size = word >> 30
    vector = (word >> 26) & 1
    if (word >> 27) & 0b111 == 0b111:       # one register: all addressing forms, atomics
        if vector and size == 0 and (word >> 23) & 1:
            return 8                        # Q: 16 bytes, two accesses
        return 1 << size
    if (word >> 27) & 0b111 == 0b101:       # pair
        if vector:
            return (4, 8, 8, None)[size]    # S, D, Q (two accesses a register)
        if size == 0b01 and not (word >> 22) & 1:
            return 8                        # STGP
        return (4, 4, 8, None)[size]        # W, LDPSW, X
    if (word >> 27) & 0b111 == 0b011 and (word >> 24) & 0b11 == 0:  # literal
        if vector:
            return (4, 8, 8, None)[size]
        return (4, 8, 4, None)[size]        # W, X, LDRSW, PRFM (no access)
    if (word >> 24) & 0x3F == 0b001000:     # exclusive, ordered, CAS(P)
        if (word >> 21) & 1 and not (word >> 23) & 1:
            # Exclusive pairs (and CASP): a pair of words is one 8-byte access.
            return 8 if size >= 2 or (word >> 31) == 0 else None
        return 1 << size
    if (word >> 24) & 0x3F == 0b011001 and (word >> 10) & 0b11 == 0 and not (word >> 21) & 1:
        return 1 << size                    # LDAPUR/STLUR (not LDG, nor MOPS)
    if (word >> 31) == 0 and (word >> 24) & 0x3E == 0b001100:  # SIMD structures
        if (word >> 24) & 1 == 0:           # multiple structures: by element
            return 1 << ((word >> 10) & 0b11)
        opcode = (word >> 13) & 0b111
        if opcode >> 1 == 0b00:
            return 1
        if opcode >> 1 == 0b01:
            return 2
        if opcode >> 1 == 0b10:
            return 4 if (word >> 10) & 1 == 0 else 8
        return 1 << ((word >> 10) & 0b11)   # LD1R..LD4R
    return None


def store_exclusive(word: int) -> bool:
    """Whether ``word`` is a store-exclusive (STXR, STLXR, STXP, STLXP, byte and halfword too)."""
    return ((word >> 24) & 0x3F == 0b001000 and (word >> 22) & 0b11 == 0
            and (not (word >> 21) & 1 or word >> 31 == 1))  # not CASP


def _signed(value: int, bits: int) -> int:
    return value - (1 << bits) if value >> (bits - 1) & 1 else value


def _extend(value: int, option: int) -> int:
    """A register-offset index under ``option`` (UXTW, LSL/UXTX, SXTW, SXTX)."""
    if option == 0b010:
        return value & 0xFFFF_FFFF
    if option == 0b110:
        return _signed(value & 0xFFFF_FFFF, 32)
    if option == 0b111:
        return _signed(value, 64)
    return value


def effective_address(word: int, pc: int, registers: Sequence[int]) -> int | None:
    """The first address the load/store ``word`` at ``pc`` accesses, from the
    values ``registers`` held before it (X0..X30 then SP); None when ``word``
    is none of the classes :func:`access_size` decodes."""
    if access_size(word) is None:
        return None
    rn = (word >> 5) & 0x1F
    base = registers[rn] if rn != 31 else registers[_SP]
    mask = (1 << 64) - 1
    group = (word >> 27) & 0b111
    if group == 0b111:                                   # one register
        vector = (word >> 26) & 1
        scale = 4 if vector and word >> 30 == 0 and (word >> 23) & 1 else word >> 30
        if (word >> 24) & 1:                             # unsigned offset
            return (base + (((word >> 10) & 0xFFF) << scale)) & mask
        if not (word >> 21) & 1:                         # imm9: unscaled, post, unprivileged, pre
            post = (word >> 10) & 0b11 == 0b01
            return base if post else (base + _signed((word >> 12) & 0x1FF, 9)) & mask
        if (word >> 10) & 0b11 == 0b10:                  # register offset
            rm = (word >> 16) & 0x1F
            index = _extend(registers[rm] if rm != 31 else 0, (word >> 13) & 0b111)
            return (base + (index << (scale if (word >> 12) & 1 else 0))) & mask
        if (word >> 10) & 1:                             # LDRAA/LDRAB
            offset = _signed(((word >> 22) & 1) << 9 | (word >> 12) & 0x1FF, 10) << 3
            return (base + offset) & mask
        return base                                      # atomic memory operations
    if group == 0b101:                                   # pair
        vector = (word >> 26) & 1
        scale = 2 + (word >> 30) if vector else 2 + (word >> 31)
        if (word >> 23) & 0b11 == 0b01:                  # post-index
            return base
        return (base + (_signed((word >> 15) & 0x7F, 7) << scale)) & mask
    if group == 0b011 and (word >> 24) & 0b11 == 0:      # literal
        return (pc + (_signed((word >> 5) & 0x7FFFF, 19) << 2)) & mask
    if (word >> 24) & 0x3F == 0b011001:                  # LDAPUR/STLUR
        return (base + _signed((word >> 12) & 0x1FF, 9)) & mask
    return base                                          # exclusive, CAS, SIMD structures


@dataclass
class _Access:
    write: bool
    va: int
    pa: int
    size: int
    value: int | None  # a load's, read at the access; a store's is read after


@dataclass
class _Pending:
    """The instruction about to run (or running): what is needed to write it."""

    index: int
    va: int
    pa: int | None
    word: int
    before: tuple[int, ...]
    accesses: list[_Access] = field(default_factory=list)


class TarmacTracer(MachineObserver):
    """Writes a Tarmac trace of a machine's run to ``sink``, one line a call.

    Attaches to ``machine`` at once as an instruction observer (and, with
    ``memory``, a memory observer); call :meth:`finish` when the run has ended,
    which writes the last instruction's lines and detaches.  See the module
    docstring for the lines.
    """

    def __init__(self, machine: Machine, sink: Callable[[str], None], *,
                 memory: bool = False,
                 system_registers: Sequence[str] = SYSTEM_REGISTERS) -> None:
        self.machine = machine
        self.sink = sink
        self.memory = memory
        self.system_registers = tuple(name for name in system_registers
                                      if _readable_register(machine, name))
        # X0-X30, SP and PSTATE in one call to Unicorn after every instruction;
        # the system registers only after an instruction that can write them
        # (an MSR) or an exception (which writes ELR, SPSR, ESR, FAR).
        self._read_core = machine.register_reader((*_GENERAL, "sp", "pstate"))
        self._system: tuple[int, ...] = tuple(machine.reg(name)
                                              for name in self.system_registers)
        self._exception_taken = False
        # (VA, PSTATE's EL bits) -> where the instruction there is fetched
        # from, and its encoding, under the translations in force.
        self._fetched: dict[tuple[int, int], tuple[int | None, int]] = {}
        self._data_pages: dict[tuple[int, bool, int], int | None] = {}  # the same, for data
        self._pending: _Pending | None = None
        self._disassembler = Disassembler()
        self._ram = tuple((base, base + size) for base, size in
                          ((machine.ram_base, machine.ram_size), *machine.plan.extra_memory))
        self.instructions = 0  # IT/IS lines written
        machine.observers.append(self)
        machine.watch_instructions(self)
        if memory:
            machine.watch_memory(self)

    # -- the machine's calls -----------------------------------------------------

    def on_event(self, event: Event) -> None:
        if isinstance(event, ExceptionTaken):
            self._exception_taken = True
        elif isinstance(event, SysRegWrite | TlbInvalidate | DescriptorWrite) or (
                isinstance(event, CacheMaintenance) and event.operation.startswith("IC")):
            # Translations, or code (an IC invalidation is what the
            # architecture asks for before rewritten code runs), may change.
            self._fetched.clear()
            self._data_pages.clear()

    def on_instruction(self, index: int, address: int) -> None:
        """Before each instruction: write the previous one, then note this one."""
        pending = self._pending
        if pending is not None and pending.index == index and pending.va == address:
            # The same instruction again, after a stop in front of it (or in
            # its store): its accesses come again.
            pending.accesses.clear()
            return
        now = self._snapshot(pending)
        if pending is not None:
            self._write(pending, now)
        key = (address, now[_PSTATE] & _EL_BITS)
        fetched = self._fetched.get(key)
        if fetched is None:
            pa = self.machine.mmu.executed_pa(address)
            data = self.machine.read_physical(pa, 4) if pa is not None else None
            word = int.from_bytes(data, "little") if data is not None else 0
            fetched = self._fetched[key] = (pa if data is not None else None, word)
        self._pending = _Pending(index, address, fetched[0], fetched[1], now)

    def on_memory(self, access: Access, address: int) -> None:
        """Before each load and store of the pending instruction.

        The machine hands observers the access's VA, worked out from the
        instruction's memory operand, or the PA Unicorn reported when it could
        not be; either is located here from the instruction's own effective
        address (see the module docstring).
        """
        pending = self._pending
        if pending is None:
            return
        size = access_size(pending.word)
        start = effective_address(pending.word, pending.va, pending.before)
        if size is None or start is None:
            return
        write = access is Access.WRITE
        if not write and store_exclusive(pending.word):
            return  # Unicorn's compare-and-exchange reads first; the architecture does not
        where = self._locate(start, address, write)
        if where is None:
            return
        va, pa = where
        value = None
        if not write and self._readable(pa, size, loading=True):
            value = self._value(pa, size)
        pending.accesses.append(_Access(write, va, pa, size, value))

    def _locate(self, start: int, address: int, write: bool) -> tuple[int, int] | None:
        """(VA, PA) of an access of the instruction whose first access is at VA
        ``start``, reported at ``address``: the PA (or else the VA) of a byte of
        the page of ``start`` or of the next page (an instruction accesses at
        most 64 bytes from ``start``); None when neither fits."""
        offset = address & ~_PAGE_MASK
        pages = (start & _PAGE_MASK, (start & _PAGE_MASK) + _PAGE)
        for page in pages:
            pa = self._data_pa(page, write)
            if pa is not None and pa & _PAGE_MASK == address & _PAGE_MASK:
                return page | offset, address
        for page in pages:
            if page == address & _PAGE_MASK:
                pa = self._data_pa(page, write)
                return (address, pa | offset) if pa is not None else None
        return None

    def _data_pa(self, page: int, write: bool) -> int | None:
        """Where an access to VA ``page`` goes, asked of the machine once per page
        under the translations in force (the cache goes with ``_fetched``)."""
        key = (page, write, self._pending.before[_PSTATE] & _EL_BITS if self._pending else 0)
        if key not in self._data_pages:
            self._data_pages[key] = self.machine.data_pa(page, write=write)
        return self._data_pages[key]

    def finish(self) -> None:
        """Write the last instruction (if it executed) and detach from the machine.

        The run may have stopped in front of the last instruction seen (at its
        target, or on a fault in fetching it): that one never executed.
        """
        pending, self._pending = self._pending, None
        if pending is not None and pending.index < self.machine.executed:
            self._write(pending, self._snapshot(pending))
        self.machine.unwatch_instructions(self)
        if self in self.machine.observers:
            self.machine.observers.remove(self)
        if self.memory:
            self.machine.unwatch_memory(self)

    # -- lines ---------------------------------------------------------------------

    def _write(self, pending: _Pending, after: tuple[int, ...]) -> None:
        before = pending.before
        stamp = f"{pending.index} clk"
        kind = "IS" if failed_condition(pending.word, before[_PSTATE]) else "IT"
        where = (f"{pending.va:016x}:{pending.pa:016x}" if pending.pa is not None
                 else f"{pending.va:016x}")
        text = self._disassembler.text(pending.word, pending.va)
        self.sink(f"{stamp} {kind} ({pending.index}) {where} {pending.word:08x} O "
                  f"{mode_name(before[_PSTATE])} : {text}")
        self.instructions += 1
        for access in pending.accesses:
            value = access.value
            if access.write and self._readable(access.pa, access.size, loading=False):
                value = self._value(access.pa, access.size)
            if value is not None:
                self.sink(f"{stamp} M{'W' if access.write else 'R'}{access.size} "
                          f"{access.va:016x}:{access.pa:016x} {value:0{2 * access.size}x}")
        link = writes_link_register(pending.word)
        if link or after[:31] != before[:31]:
            for n in range(31):
                if after[n] != before[n] or (n == 30 and link):
                    self.sink(f"{stamp} R X{n} {after[n]:016x}")
        name = stack_pointer_name(after[_PSTATE])
        if after[_SP] != before[_SP] or name != stack_pointer_name(before[_PSTATE]):
            self.sink(f"{stamp} R {name} {after[_SP]:016x}")
        if after[_PSTATE] != before[_PSTATE]:
            self.sink(f"{stamp} R CPSR {after[_PSTATE] & _MASK32:08x}")
        for offset, register in enumerate(self.system_registers, _SYSTEM):
            if after[offset] != before[offset]:
                self.sink(f"{stamp} R {register} {after[offset]:016x}")

    # -- machine state -------------------------------------------------------------

    def _snapshot(self, pending: _Pending | None) -> tuple[int, ...]:
        """The registers now, after ``pending`` (the instruction before)."""
        core = self._read_core()
        if (pending is None or self._exception_taken or pending.word >> 20 == _MSR_REGISTER
                or core[_PSTATE] != pending.before[_PSTATE]):  # an interrupt taken
            self._exception_taken = False
            reg = self.machine.reg
            self._system = tuple(reg(name) for name in self.system_registers)
        return core + self._system

    def _readable(self, pa: int, size: int, *, loading: bool) -> bool:
        """Whether reading [pa, pa + size) from outside has no effect on a device."""
        if any(base <= pa and pa + size <= end for base, end in self._ram):
            return True
        return loading and self.machine.roms.holds(pa) and self.machine.roms.holds(pa + size - 1)

    def _value(self, pa: int, size: int) -> int | None:
        data = self.machine.read_physical(pa, size)
        return int.from_bytes(data, "little") if data is not None else None


def _readable_register(machine: Machine, name: str) -> bool:
    """Whether the machine reads register ``name`` (one it cannot is left out)."""
    try:
        machine.reg(name)
    except Exception:  # noqa: BLE001 - an unknown name, or one the CPU model lacks
        return False
    return True


def run_tarmac(machine: Machine, sink: Callable[[str], None], until: str | None, *,
               memory: bool = False, max_insns: int = DEFAULT_MAX_INSNS) -> TargetRun:
    """Run ``machine`` to ``until`` (see :mod:`emu.machine.targets`) writing its
    Tarmac trace to ``sink``; the run's result."""
    tracer = TarmacTracer(machine, sink, memory=memory)
    try:
        return run_to_target(machine, until, max_insns)
    finally:
        tracer.finish()
