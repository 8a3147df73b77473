"""unexpected-exception: the boot took an exception."""

from __future__ import annotations

from emu.arch.exceptions import describe_esr
from emu.arch.mmu.walk import format_walk
from emu.checks.base import Check
from emu.machine.events import Event, ExceptionTaken


class UnexpectedException(Check):
    rule_id = "unexpected-exception"
    title = "Exception taken during boot"
    explanation = (
        "The boot took a synchronous exception: an instruction or data abort from a "
        "translation, access-flag, permission or address-size fault, or an HVC, SMC, SVC or "
        "undefined instruction nothing answered. Boot code is not expected to fault; the "
        "finding decodes the syndrome and shows the walk that faulted, level by level."
    )

    def on_event(self, event: Event) -> None:
        if not isinstance(event, ExceptionTaken):
            return
        evidence: list[str] = []
        if event.taken is not None:
            if event.taken.esr is not None:
                evidence.append(f"ESR {event.taken.esr:#x}: {describe_esr(event.taken.esr)}")
            evidence.append(f"taken to the vector at {event.taken.vector:#x}")
        if event.fault is not None:
            evidence.extend(format_walk(event.fault))
        self.fire(event.index, event.pc, event.pa, event.cause, tuple(evidence))
