"""What every rule shares: the finding record, the context a rule may query,
and the base class rules derive from.

A rule is a :class:`~emu.machine.machine.MachineObserver`: it sees events and closed
MMU-transition windows as the machine produces them, while the machine's
memory and TLB model still hold the state at that moment.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, ClassVar

from emu.arch.mmu.regime import RegimeName, TranslationRegime, regime_asid
from emu.arch.mmu.tlb import TlbEntry, TlbModel
from emu.arch.mmu.walk import Access, Fault, Translation
from emu.image.boot_image import BootImage
from emu.machine.events import SysRegWrite
from emu.machine.machine import MachineObserver
from emu.machine.stop import Stop

if TYPE_CHECKING:
    from emu.machine.machine import Machine


@dataclass(frozen=True)
class Finding:
    """A rule that fired, at one instruction, with the evidence that proves it."""

    rule: str
    index: int
    pc: int
    pa: int | None
    symbol: str
    message: str
    evidence: tuple[str, ...] = ()

    def to_dict(self) -> dict[str, object]:
        return {
            "rule": self.rule,
            "index": self.index,
            "pc": self.pc,
            "pa": self.pa,
            "symbol": self.symbol,
            "message": self.message,
            "evidence": list(self.evidence),
        }


class CheckContext:
    """What a rule may ask of the running machine."""

    def __init__(self, machine: Machine) -> None:
        self._machine = machine
        # Results several rules derive from the same event (e.g. the comparison
        # of the tables a TTBR write swaps), computed once: key -> value.
        self.shared: dict[object, object] = {}
        # Told of every finding as it is made (a debugger stops on them).
        self.on_finding: Callable[[Finding], None] | None = None

    @property
    def image(self) -> BootImage:
        return self._machine.image

    @property
    def tlb(self) -> TlbModel:
        return self._machine.tlb

    def translate(
        self, va: int, regime: TranslationRegime, access: Access = Access.READ
    ) -> Translation | Fault:
        return self._machine.mmu.translate(va, access, regime)

    def symbolize(self, va: int, pa: int | None = None) -> str:
        return self._machine.symbolize(va, pa)

    def read_physical(self, pa: int, size: int) -> bytes | None:
        """``size`` bytes of physical memory as they are now (None where there is none);
        a :data:`emu.arch.mmu.tables.TableReader`."""
        return self._machine.read_physical(pa, size)

    def regime(self, name: RegimeName) -> TranslationRegime:
        """The registers of a translation regime as they are now."""
        return self._machine.mmu.regime(name)


class Check(MachineObserver):
    """Base of every rule: an id, a title, an explanation, and its findings."""

    rule_id: ClassVar[str]
    title: ClassVar[str]
    explanation: ClassVar[str]
    # Judges the image's layout and link address alone: fires at every load
    # address of a sweep or at none, so a sweep reports it once.
    layout_wide: ClassVar[bool] = False

    def __init__(self, context: CheckContext) -> None:
        self.context = context
        self.findings: list[Finding] = []

    def fire(
        self, index: int, pc: int, pa: int | None, message: str, evidence: tuple[str, ...] = ()
    ) -> None:
        finding = Finding(self.rule_id, index, pc, pa, self.context.symbolize(pc, pa), message,
                          evidence)
        self.findings.append(finding)
        if self.context.on_finding is not None:
            self.context.on_finding(finding)

    def finish(self, stop: Stop) -> None:
        """Called once when the run has ended."""

    def not_applicable(self) -> str | None:
        """Why this rule cannot judge the image at all (None: it judges it).

        A rule that is not applicable is left out of the run's rule list and
        listed, with this reason, in :attr:`emu.checks.run.CheckRun.not_applicable`.
        """
        return None


@dataclass(frozen=True)
class NotApplicable:
    """A rule that did not judge a run, and why."""

    rule: str
    reason: str

    def to_dict(self) -> dict[str, str]:
        return {"rule": self.rule, "reason": self.reason}


def live_entries(tlb: TlbModel, event: SysRegWrite) -> list[TlbEntry]:
    """The TLB entries a register write puts at stake.

    For a TTBR write, the usable entries that came from that TTBR's tables;
    for anything else (MMU on), every usable entry of the regime.  "Usable"
    means global, or tagged with the ASID current after the write.
    """
    asid = regime_asid(event.after)
    select = {"TTBR1_EL1": 1}.get(event.register, 0)
    is_ttbr = event.register.startswith("TTBR")
    return [
        entry
        for entry in tlb.entries(event.after.name.value)
        if entry.usable_with(asid) and (not is_ttbr or entry.select == select)
    ]


def describe_translation(result: Translation | Fault) -> str:
    if isinstance(result, Fault):
        return result.describe()
    return f"PA {result.pa:#x}"


def differences(entry: TlbEntry, fresh: Translation) -> list[str]:
    """How a TLB entry differs from what a fresh walk gives for its page:
    ``"output address"`` or ``"permissions"`` (write or execute); empty when it
    translates the page the same way.  A size-only difference gives the same
    translation of the page (two sizes at once are ttbr-switch-conflict's and
    live-descriptor-change's concern)."""
    found = []
    if fresh.pa & ~0xFFF != entry.pa_page:
        found.append("output address")
    if (fresh.writable, fresh.executable) != (entry.writable, entry.executable):
        found.append("permissions")
    return found


def _rwx(writable: bool, executable: bool) -> str:
    return "R" + ("W" if writable else "-") + ("X" if executable else "-")


def describe_entry(entry: TlbEntry, va: int | None = None) -> str:
    """``PA 0x40004238 (RW-)``: where a TLB entry sends ``va`` (its page base by default)."""
    pa = entry.pa_page | (va & 0xFFF) if va is not None else entry.pa_page
    return f"PA {pa:#x} ({_rwx(entry.writable, entry.executable)})"


def describe_fresh(result: Translation | Fault) -> str:
    """A fresh walk in the words of :func:`describe_entry`, or the fault it gives."""
    if isinstance(result, Fault):
        return result.describe()
    return f"PA {result.pa:#x} ({_rwx(result.writable, result.executable)})"
