"""Unicorn glue for the Python MMU model.

Unicorn runs in ``UC_TLB_VIRTUAL`` mode: every guest access that misses its
softmmu TLB calls :meth:`MmuUnit.on_tlb_fill`, and the Python walker decides
the physical address and permissions - with the MMU off too (VA == PA).  The
hook runs once per page per softmmu flush, not once per instruction, which is
what keeps checking mode close to bare Unicorn speed.

Successful walks with the MMU on become entries of the architectural
:class:`~emu.arch.mmu.tlb.TlbModel`.

Every store to a page that is, or becomes, a translation table must come
back here: such pages are handed to Unicorn read-only.  A page becomes a
table page when a walk first reads a descriptor from it, or when a TTBR
write points at tables that hold it; Unicorn may already hold that page
writable from before, so its softmmu TLB is flushed at the next stop.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, replace

from unicorn import UC_MEM_FETCH, UC_MEM_WRITE, UC_PROT_EXEC, UC_PROT_READ, UC_PROT_WRITE
from unicorn.arm64_const import UC_ARM64_REG_CP_REG, UC_ARM64_REG_PSTATE
from unicorn.unicorn import Uc, UcError
from unicorn.unicorn_const import UC_CTL_IO_WRITE, UC_CTL_TLB_FLUSH

from emu.arch.fields import pa_range_bits
from emu.arch.mmu.regime import RegimeName, TranslationRegime, regime_asid, regime_for_el
from emu.arch.mmu.tables import reachable_table_pages
from emu.arch.mmu.tlb import PAGE_MASK, TlbEntry, TlbModel
from emu.arch.mmu.walk import (
    Access,
    Fault,
    Translation,
    WalkReadError,
    translate,
)
from emu.arch.sysregs import sysreg_encoding


def cp_reg(name: str) -> tuple[int, int, int, int, int]:
    """Unicorn's CP_REG key (crn, crm, op0, op1, op2) for a register name."""
    op0, op1, crn, crm, op2 = sysreg_encoding(name)
    return (crn, crm, op0, op1, op2)


# The registers that make up each regime, in TranslationRegime field order.
_REGIME_REGISTERS: dict[RegimeName, dict[str, str]] = {
    RegimeName.EL2: {
        "sctlr": "SCTLR_EL2",
        "tcr": "TCR_EL2",
        "ttbr0": "TTBR0_EL2",
        "mair": "MAIR_EL2",
    },
    RegimeName.EL10: {
        "sctlr": "SCTLR_EL1",
        "tcr": "TCR_EL1",
        "ttbr0": "TTBR0_EL1",
        "ttbr1": "TTBR1_EL1",
        "mair": "MAIR_EL1",
    },
}

# Register name -> (regime, TranslationRegime field) for the registers above.
REGIME_FIELD_OF: dict[str, tuple[RegimeName, str]] = {
    reg: (regime, fieldname)
    for regime, fields in _REGIME_REGISTERS.items()
    for fieldname, reg in fields.items()
}

SOFTMMU_PAGE = 1024
# Bound on the fill-walk cache (a few MiB of Translation records).
_MAX_CACHED_WALKS = 1 << 16
# A cached fill walk's key: (regime, 4 KiB page of the VA, access, at EL0).
_WalkKey = tuple[RegimeName, int, Access, bool]

_ACCESS_OF_UC = {UC_MEM_FETCH: Access.FETCH, UC_MEM_WRITE: Access.WRITE}
_PROT_OF_ACCESS = {Access.READ: UC_PROT_READ, Access.WRITE: UC_PROT_WRITE,
                   Access.FETCH: UC_PROT_EXEC}


@dataclass(frozen=True)
class FillFault:
    """A walk fault met while Unicorn filled its TLB, kept for the stop report."""

    fault: Fault
    regime: TranslationRegime
    el: int


class MmuUnit:
    """The Python MMU of one machine: regime snapshots, walks, TLB fills."""

    def __init__(self, uc: Uc, tlb: TlbModel, index_now: Callable[[], int]) -> None:
        self._uc = uc
        self.tlb = tlb
        self._index_now = index_now
        self._keys = {name: cp_reg(name) for name in REGIME_FIELD_OF}
        self.pa_bits = pa_range_bits(uc.reg_read(UC_ARM64_REG_CP_REG, cp_reg("ID_AA64MMFR0_EL1")))
        self._cached: dict[RegimeName, TranslationRegime] = {}
        self.first_fault: FillFault | None = None
        # Set by the machine: told of a stale TLB entry being used, and of a
        # store about to land in a page of live descriptors.
        self.on_stale: Callable[[TlbEntry, Translation | Fault, int, Access], None] = (
            lambda *_: None)
        self.on_table_store: Callable[[int, int], None] = lambda *_: None
        # Told when a TTBR or TCR write makes pages table pages (the softmmu TLB
        # may hold them writable); a fill that finds new ones flushes it itself.
        self.on_new_table_page: Callable[[int], None] = lambda *_: None
        # Called before each fill, which may add TLB entries: the machine brings
        # its events up to date first.
        self.before_fill: Callable[[], None] = lambda: None
        # Told of a walk, only while set (stores to tables not yet completed by a DSB).
        self.on_walk: Callable[[Translation | Fault, int, Access], None] | None = None
        # Set by the machine: whether a PA is flash mapped as memory (read-array
        # mode), where a store is a command for the device (emu.machine.rom); such
        # a store's fill is refused and its PA kept here for the run loop.
        self.rom_holds: Callable[[int], bool] = lambda _pa: False
        self.refused_store: int | None = None
        # Per regime, the 4 KiB pages of its translation tables: reachable from
        # its TTBRs when they were last written, or read by a walk since.
        # Stores to them are seen; tables a TTBR no longer points at drop out
        # (unless live TLB entries were walked through them, see is_table_page).
        self._tables: dict[RegimeName, set[int]] = {}
        self.table_pages: set[int] = set()
        self.fills = 0
        # Successful fill walks, by (regime, 4 KiB page of the VA, access, EL0):
        # after a stop Unicorn's TLB is flushed and the same pages are filled
        # again, and a 4 KiB page is four softmmu pages.  The smallest
        # translation granule is 4 KiB, so one walk holds for the whole page.  A
        # walk changes only with the regime's registers (which drop them all:
        # remember, or regime() finding them changed) or with a store to a page
        # it read a descriptor from (which drops the walks through that page:
        # every such page is a table page, whose stores are seen).
        self._walks: dict[_WalkKey, Translation] = {}
        self._walks_through: dict[int, set[_WalkKey]] = {}
        # The registers each regime had when its walks were cached.
        self._walked_with: dict[RegimeName, TranslationRegime] = {}

    # -- state ---------------------------------------------------------------

    def current_el(self) -> int:
        return (self._uc.reg_read(UC_ARM64_REG_PSTATE) >> 2) & 3

    def read_sysreg(self, name: str) -> int:
        key = self._keys.get(name) or cp_reg(name)
        return self._uc.reg_read(UC_ARM64_REG_CP_REG, key)

    def regime(self, name: RegimeName | None = None) -> TranslationRegime:
        """Snapshot of a regime's registers (the current EL's by default)."""
        name = name or regime_for_el(self.current_el())
        cached = self._cached.get(name)
        if cached is None:
            values = {
                fieldname: self.read_sysreg(reg)
                for fieldname, reg in _REGIME_REGISTERS[name].items()
            }
            cached = TranslationRegime(name=name, pa_bits=self.pa_bits, **values)
            self._cached[name] = cached
            if self._walked_with.get(name, cached) != cached:
                self.forget_walks()  # its registers changed behind our back
            self._walked_with[name] = cached
        return cached

    def remember(self, regime: TranslationRegime) -> None:
        """Install the snapshot a register write is about to produce."""
        self._cached[regime.name] = regime
        self._walked_with[regime.name] = regime
        self.forget_walks()

    def forget_registers(self) -> None:
        """Drop cached register snapshots; called at every flush of Unicorn's TLB.
        The walks stay unless the registers, read again, turn out to differ."""
        self._cached.clear()

    def forget_walks(self) -> None:
        """Drop every cached fill walk."""
        self._walks.clear()
        self._walks_through.clear()

    def forget_walks_through(self, page: int) -> None:
        """Drop the cached fill walks that read a descriptor in ``page`` (a store
        to it may change them)."""
        for key in self._walks_through.pop(page & PAGE_MASK, ()):
            self._walks.pop(key, None)

    def _cache_walk(self, key: _WalkKey, result: Translation) -> None:
        if len(self._walks) >= _MAX_CACHED_WALKS:
            self.forget_walks()
        self._walks[key] = result
        for page in {step.descriptor_address & PAGE_MASK for step in result.steps}:
            self._walks_through.setdefault(page, set()).add(key)

    # -- walks ---------------------------------------------------------------

    def read_descriptor(self, pa: int) -> int:
        """Read a 64-bit descriptor.  A walk into memory that is not there is a
        synchronous external abort on the walk, which the walker reports."""
        try:
            return int.from_bytes(self._uc.mem_read(pa, 8), "little")
        except UcError:
            raise WalkReadError(f"no memory at PA {pa:#x}") from None

    def translate(
        self, va: int, access: Access = Access.READ, regime: TranslationRegime | None = None
    ) -> Translation | Fault:
        return translate(regime or self.regime(), self.read_descriptor, va, access)

    def learn_tables(self, regime: TranslationRegime) -> None:
        """Record the table pages reachable from ``regime``'s TTBRs as table pages."""
        def read(pa: int, size: int) -> bytes | None:
            try:
                return bytes(self._uc.mem_read(pa, size))
            except UcError:
                return None

        reachable = reachable_table_pages(regime, read)
        new = reachable - self.table_pages
        self._tables[regime.name] = reachable
        self.table_pages = set().union(*self._tables.values())
        if new:
            self.on_new_table_page(min(new))

    def is_table_page(self, pa: int) -> bool:
        """Whether a physical page is known to hold translation tables."""
        return pa & PAGE_MASK in self.table_pages or self.tlb.is_table_page(pa)

    def executed_pa(self, va: int, regime: TranslationRegime | None = None) -> int | None:
        """Where the instruction at VA was fetched from (in ``regime``, by
        default the current one): through the architectural TLB entry when one
        covers it (the fill hook prefers it to a fresh walk that disagrees),
        else through the tables; None when both fault."""
        regime = regime or self.regime()
        if regime.mmu_enabled:
            cached = self.tlb.lookup(regime.name.value, va, regime_asid(regime))
            if cached is not None and cached.perms & UC_PROT_EXEC:
                return cached.pa_page | (va & ~PAGE_MASK)
        return self.fetch_pa(va, regime)

    def fetch_pa(self, va: int, regime: TranslationRegime | None = None) -> int | None:
        result = self.translate(va, Access.FETCH, regime)
        return result.pa if isinstance(result, Translation) else None

    # -- the Unicorn hook ----------------------------------------------------

    def on_tlb_fill(self, uc: Uc, va: int, uc_access: int, entry, _user_data) -> bool:
        """UC_HOOK_TLB_FILL: translate VA for Unicorn, or refuse (a fault).

        The architectural TLB comes first: an entry made since the last
        invalidation is what the hardware may still use, even when the tables
        now say otherwise (that use is reported as stale).  Stores to pages
        holding live descriptors are reported before they happen, and such
        pages are handed to Unicorn read-only so the next store comes back here.
        """
        self.before_fill()
        self.fills += 1
        el = self.current_el()
        regime = self.regime(regime_for_el(el))
        access = _ACCESS_OF_UC.get(uc_access, Access.READ)
        key = (regime.name, va & PAGE_MASK, access, el == 0)
        result = self._walks.get(key)
        if result is None:
            result = translate(regime, self.read_descriptor, va, access, el0=(el == 0))
            if isinstance(result, Translation):
                self._cache_walk(key, result)
        elif result.va != va:
            result = replace(result, va=va, pa=result.pa & PAGE_MASK | va & ~PAGE_MASK)
        if self.on_walk is not None:
            self.on_walk(result, va, access)
        asid = regime_asid(regime)
        cached = self.tlb.lookup(regime.name.value, va, asid) if regime.mmu_enabled else None
        if cached is not None and cached.perms & _PROT_OF_ACCESS[access] and _differs(
            cached, result
        ):
            # The PE may use the cached entry (R_GPPYH): the access goes where it says.
            self.on_stale(cached, result, va, access)
            entry.paddr = cached.pa_page | (va & ~PAGE_MASK & ~(SOFTMMU_PAGE - 1))
            entry.perms = cached.perms
            return True
        if isinstance(result, Fault):
            if self.first_fault is None:
                self.first_fault = FillFault(result, regime, el)
            return False
        perms = 0
        if result.el0_readable if el == 0 else result.readable:
            perms |= UC_PROT_READ
        if result.el0_writable if el == 0 else result.writable:
            perms |= UC_PROT_WRITE
        if result.el0_executable if el == 0 else result.executable:
            perms |= UC_PROT_EXEC
        # Unicorn's softmmu pages are 1 KiB (QEMU's smallest ARM page): the entry
        # maps the 1 KiB page holding VA, so it needs that page's PA, not the 4 KiB one.
        entry.paddr = result.pa & ~(SOFTMMU_PAGE - 1)
        entry.perms = perms
        if self.rom_holds(result.pa):
            if access is Access.WRITE:
                self.refused_store = result.pa
                return False
            entry.perms = perms & ~UC_PROT_WRITE  # so that a store comes back here
        if access is not Access.FETCH and self.is_table_page(result.pa):
            if access is Access.WRITE:
                self.forget_walks_through(result.pa)  # the store may change them
                self.on_table_store(va, result.pa & PAGE_MASK)
            else:
                entry.perms = perms & ~UC_PROT_WRITE
        if regime.mmu_enabled:
            descriptors = tuple(step.descriptor_address for step in result.steps)
            new_tables = {address & PAGE_MASK for address in descriptors} - self.table_pages
            if new_tables:
                # A page just became a table page; Unicorn may hold it writable
                # from earlier accesses, and every store to it must be seen.  So
                # the softmmu TLB is flushed here, inside the fill (Unicorn sets
                # this access's entry afterwards).  Not by stopping: a stop asked
                # from a load's fill lets the load complete and then resumes at
                # it, so it ran twice (``ldr x2, [x2]`` then loads from its result).
                self._tables.setdefault(regime.name, set()).update(new_tables)
                self.table_pages |= new_tables
                self._uc.ctl(UC_CTL_TLB_FLUSH, UC_CTL_IO_WRITE)
            self.tlb.insert(
                TlbEntry(
                    regime=regime.name.value,
                    va_page=va & PAGE_MASK,
                    pa_page=result.pa & PAGE_MASK,
                    size=result.size,
                    select=result.ttbr_select or 0,
                    ttbr=regime.ttbr1 if result.ttbr_select == 1 else regime.ttbr0,
                    asid=asid if result.not_global else None,
                    made_at=self._index_now(),
                    executable=result.executable,
                    writable=result.writable,
                    perms=perms,
                    descriptors=descriptors,
                    memory_attributes=result.memory_attributes,
                    shareability=result.shareability,
                    level=result.level,
                )
            )
        return True


def _differs(cached: TlbEntry, fresh: Translation | Fault) -> bool:
    """Whether a fresh walk gives another translation than a cached entry: a fault,
    another output address, memory type or shareability (the permissions the
    access needs are checked by the walk itself, which faults without them)."""
    if isinstance(fresh, Fault):
        return True
    if fresh.pa & PAGE_MASK != cached.pa_page:
        return True
    if cached.memory_attributes >= 0 and fresh.memory_attributes != cached.memory_attributes:
        return True
    return cached.shareability >= 0 and fresh.shareability != cached.shareability
