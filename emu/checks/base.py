"""What every rule shares: the finding record, the context a rule may query,
and the base class rules derive from.

A rule is a :class:`~emu.machine.machine.MachineObserver`: it sees events and closed
MMU-transition windows as the machine produces them, while the machine's
memory and TLB model still hold the state at that moment.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, ClassVar

from emu.arch.mmu.regime import TranslationRegime, regime_asid
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


class Check(MachineObserver):
    """Base of every rule: an id, a title, an explanation, and its findings."""

    rule_id: ClassVar[str]
    title: ClassVar[str]
    explanation: ClassVar[str]

    def __init__(self, context: CheckContext) -> None:
        self.context = context
        self.findings: list[Finding] = []

    def fire(
        self, index: int, pc: int, pa: int | None, message: str, evidence: tuple[str, ...] = ()
    ) -> None:
        self.findings.append(
            Finding(self.rule_id, index, pc, pa, self.context.symbolize(pc, pa), message, evidence)
        )

    def finish(self, stop: Stop) -> None:
        """Called once when the run has ended."""


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
