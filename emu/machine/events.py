"""Typed events of a boot run: what the MMU-relevant instructions did.

The machine produces these as the guest executes; the checks consume them.
Every event names the instruction that caused it by its position in the run
(``index``: instructions executed before it), its virtual PC and the physical
address it was fetched from.  System-register events carry the translation
regime as it was before the instruction and as it is after it, so a reader of
the timeline never has to reconstruct state.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from emu.arch.exceptions import TakenException
from emu.arch.mmu.regime import TranslationRegime
from emu.arch.mmu.tlb import TlbEntry
from emu.arch.mmu.walk import Fault, Translation

# What each category holds, in the order reports list them; ``--events`` picks
# categories by these names.
EVENT_CATEGORIES: dict[str, str] = {
    "mmu": "SCTLR_ELx.M turned on or off",
    "ttbr": "TTBR writes",
    "sysreg": "other writes to registers that shape translation (SCTLR, TCR, MAIR, VBAR, HCR)",
    "tlbi": "TLB invalidations",
    "cache": "IC and DC cache maintenance",
    "barrier": "DSB, DMB, ISB and ERET, where the machine watches instructions",
    "exception": "exceptions taken",
    "descriptor": "stores that change descriptors of live translation tables",
    "access": "accesses through stale, unsynchronized or incompletely maintained translations",
}


@dataclass(frozen=True)
class Event:
    """Something the guest did at one instruction."""

    index: int
    pc: int
    pa: int | None
    el: int

    @property
    def kind(self) -> str:
        return "event"

    @property
    def category(self) -> str:
        """Which of :data:`EVENT_CATEGORIES` the event belongs to (what ``--events`` picks)."""
        return "access"

    def describe(self) -> str:
        return self.kind


@dataclass(frozen=True)
class SysRegWrite(Event):
    """An MSR to a register that shapes translation (SCTLR, TTBR, TCR, MAIR, VBAR, HCR)."""

    register: str
    old: int
    new: int
    before: TranslationRegime
    after: TranslationRegime

    @property
    def kind(self) -> str:
        return "sysreg-write"

    @property
    def category(self) -> str:
        return "sysreg"

    def describe(self) -> str:
        return f"{self.register} {self.old:#x} -> {self.new:#x}"


@dataclass(frozen=True)
class MmuEnable(SysRegWrite):
    """SCTLR_ELx.M went from 0 to 1."""

    @property
    def kind(self) -> str:
        return "mmu-on"

    @property
    def category(self) -> str:
        return "mmu"

    def describe(self) -> str:
        return f"MMU on ({self.register} {self.old:#x} -> {self.new:#x})"


@dataclass(frozen=True)
class MmuDisable(SysRegWrite):
    """SCTLR_ELx.M went from 1 to 0."""

    @property
    def kind(self) -> str:
        return "mmu-off"

    @property
    def category(self) -> str:
        return "mmu"

    def describe(self) -> str:
        return f"MMU off ({self.register} {self.old:#x} -> {self.new:#x})"


@dataclass(frozen=True)
class TtbrWrite(SysRegWrite):
    """A translation table base register written."""

    mmu_enabled: bool

    @property
    def kind(self) -> str:
        return "ttbr-write"

    @property
    def category(self) -> str:
        return "ttbr"

    def describe(self) -> str:
        state = "MMU on" if self.mmu_enabled else "MMU off"
        return f"{self.register} {self.old:#x} -> {self.new:#x} ({state})"


@dataclass(frozen=True)
class TlbInvalidate(Event):
    """A TLBI instruction."""

    operation: str
    operand: int

    @property
    def kind(self) -> str:
        return "tlbi"

    @property
    def category(self) -> str:
        return "tlbi"

    def describe(self) -> str:
        return self.operation


@dataclass(frozen=True)
class CacheMaintenance(Event):
    """An IC or DC instruction.

    ``operand`` is the register the instruction was given: a virtual address
    for the operations by VA (see :attr:`address`), a set/way for DC ISW, CSW
    and CISW, nothing meaningful for IC IALLU(IS).  ``data_pa`` is where
    :attr:`address` goes, when that was known without a table walk at the
    time (the MMU off, or an entry of the architectural TLB covering it);
    None otherwise.  The event's own ``pa``, where the instruction was
    fetched from, is likewise taken from the TLB that fetched it.
    """

    operation: str
    operand: int
    data_pa: int | None = None

    @property
    def kind(self) -> str:
        return "cache"

    @property
    def category(self) -> str:
        return "cache"

    @property
    def address(self) -> int | None:
        """The virtual address maintained (DC ZVA, DC CIVAC, IC IVAU, ...); None
        for the operations by set/way and the IC invalidate-all forms."""
        return self.operand if by_virtual_address(self.operation) else None

    def describe(self) -> str:
        address = self.address
        return self.operation if address is None else f"{self.operation} VA {address:#x}"


def by_virtual_address(operation: str) -> bool:
    """Whether a cache-maintenance operation (``"DC CIVAC"``) takes a virtual
    address: its name ends in VA, VAC, VAU, VAP or VADP (DDI 0487 C5.3, "Cache
    maintenance instructions"), unlike ``DC CISW`` (set/way) or ``IC IALLU``."""
    _, _, name = operation.partition(" ")
    return "VA" in name


@dataclass(frozen=True)
class Barrier(Event):
    """DSB, DMB, ISB or ERET; seen only where the machine watches instructions:
    inside an MMU-transition window, from a translation-register write to its
    context synchronization, and from a TLBI or table store to the DSB that
    completes it.  One event per instruction, whoever watches it."""

    operation: str

    @property
    def kind(self) -> str:
        return "barrier"

    @property
    def category(self) -> str:
        return "barrier"

    def describe(self) -> str:
        return self.operation

    @property
    def context_synchronizing(self) -> bool:
        return self.operation == "ISB"


@dataclass(frozen=True)
class ExceptionTaken(Event):
    """A synchronous exception: an abort delivered to the guest's vector, or one
    (HVC, SMC, SVC, undefined instruction, an abort with no usable vector) the
    run could not continue past.

    ``taken`` holds what delivery wrote (None when the run stopped instead);
    ``fault`` the walk fault behind an abort, with its descriptors.
    """

    cause: str
    taken: TakenException | None = None
    fault: Fault | None = None

    @property
    def kind(self) -> str:
        return "exception"

    @property
    def category(self) -> str:
        return "exception"

    def describe(self) -> str:
        return self.taken.describe() if self.taken is not None else self.cause


@dataclass(frozen=True)
class UnsynchronizedFetch(Event):
    """An instruction fetched, before any context synchronization, at an address
    the translation-register write ``write`` changed the translation of.

    ``old_pa`` is where the fetch would go under the regime before the write
    (None: a fault); the event's ``pa`` is where it went under the new one.
    """

    write: SysRegWrite
    old_pa: int | None

    @property
    def kind(self) -> str:
        return "unsynchronized-fetch"

    def describe(self) -> str:
        old = f"PA {self.old_pa:#x}" if self.old_pa is not None else "a fault"
        new = f"PA {self.pa:#x}" if self.pa is not None else "a fault"
        return (f"fetch at VA {self.pc:#x} goes to {new} after {self.write.register} "
                f"#{self.write.index} but to {old} before it, and no ISB came between")


@dataclass(frozen=True)
class UnsynchronizedAccess(UnsynchronizedFetch):
    """A load or store, before any context synchronization, to an address whose
    translation the write ``write`` changed.

    ``va`` is the address accessed, ``access`` ``"read"`` or ``"write"``;
    ``old_pa`` where it would go under the regime before the write and
    ``new_pa`` under the new one (None: a fault).  The event's ``pc`` and
    ``pa`` are the instruction's.
    """

    va: int = 0
    access: str = "read"
    new_pa: int | None = None

    @property
    def kind(self) -> str:
        return "unsynchronized-access"

    def describe(self) -> str:
        old = f"PA {self.old_pa:#x}" if self.old_pa is not None else "a fault"
        new = f"PA {self.new_pa:#x}" if self.new_pa is not None else "a fault"
        return (f"{self.access} of VA {self.va:#x} goes to {new} after {self.write.register} "
                f"#{self.write.index} but to {old} before it, and no ISB came between")


@dataclass(frozen=True)
class DescriptorWrite(Event):
    """A store that changed a descriptor in a page of live translation tables.

    ``live_entries`` are the TLB entries (made since the last invalidation)
    whose walks read this descriptor; ``va`` is the address the store used.
    """

    va: int
    descriptor_address: int
    old: int
    new: int
    live_entries: tuple[TlbEntry, ...]

    @property
    def kind(self) -> str:
        return "descriptor-write"

    @property
    def category(self) -> str:
        return "descriptor"

    def describe(self) -> str:
        return (f"descriptor at PA {self.descriptor_address:#x} {self.old:#x} -> {self.new:#x}"
                f" ({len(self.live_entries)} live TLB entries walked through it)")


@dataclass(frozen=True)
class StaleTranslationUse(Event):
    """An access that hit a TLB entry a fresh walk no longer gives.

    ``va`` is the exact address accessed (worked out from the instruction's
    memory operand: Unicorn reports only its 1 KiB page, kept as ``fill_va``).
    ``entry`` is the architectural TLB entry the access may use (its output
    page, permissions, memory attributes, shareability); ``fresh`` the walk of
    ``va`` through the tables as they are now (a Translation carries the same
    permissions and attributes, for comparison).
    """

    va: int
    access: str
    entry: TlbEntry
    fresh: Translation | Fault
    fill_va: int | None = None

    @property
    def kind(self) -> str:
        return "stale-use"

    def describe(self) -> str:
        now = self.fresh.describe() if isinstance(self.fresh, Fault) else (
            f"PA {self.fresh.pa:#x}")
        return (f"{self.access} of VA {self.va:#x} through a TLB entry to PA "
                f"{self.entry.pa_page | (self.va & 0xFFF):#x} (made at #{self.entry.made_at}); "
                f"the tables now give {now}")


@dataclass(frozen=True)
class IncompleteMaintenanceUse(Event):
    """A translation table walk that read a descriptor whose store no DSB has
    completed yet: the walk may see the old descriptor (DDI 0487 D8.17.1, R_DDMVT).

    ``va`` is the address translated (its 1 KiB page, as Unicorn reports it).
    """

    va: int
    access: str
    store: DescriptorWrite

    @property
    def kind(self) -> str:
        return "incomplete-maintenance-use"

    def describe(self) -> str:
        return (f"{self.access} of VA {self.va:#x} walks the descriptor at PA "
                f"{self.store.descriptor_address:#x} stored at #{self.store.index} with no DSB "
                f"since")


@dataclass(frozen=True)
class WindowFetch:
    """One instruction executed inside an MMU-transition window."""

    index: int
    va: int
    pa: int
    word: int


@dataclass
class TransitionWindow:
    """The instructions from an MMU-off (or the first MMU-on) to the first
    context synchronization after the MMU is on again.

    ``old`` is the regime that translated before the window (None when the MMU
    had never been on), ``new`` the regime in force when the window closed.
    """

    opened_by: SysRegWrite
    old: TranslationRegime | None
    fetches: list[WindowFetch] = field(default_factory=list)
    pages: dict[int, WindowFetch] = field(default_factory=dict)  # first fetch per 4 KiB page
    # Per page: identity-mapped (VA == PA) in the old / new tables, judged at close.
    identity_old: dict[int, bool] = field(default_factory=dict)
    identity_new: dict[int, bool] = field(default_factory=dict)
    mmu_on_index: int | None = None
    closed_by: Event | None = None
    new: TranslationRegime | None = None
    truncated: bool = False
    # A few instructions after the close, up to the first one fetched at VA != PA
    # (the jump to the link address), for the report; no rule judges them.
    tail: list[WindowFetch] = field(default_factory=list)
