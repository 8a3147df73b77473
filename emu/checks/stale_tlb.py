"""stale-tlb: a translation used that a fresh walk would not give."""

from __future__ import annotations

from emu.checks.base import Check
from emu.machine.events import Event, StaleTranslationUse


class StaleTlb(Check):
    rule_id = "stale-tlb"
    title = "Stale TLB entry used"
    explanation = (
        "An access used a translation the tables no longer give: a TLB entry made before the "
        "tables (or TTBR) changed, with no TLB invalidation covering it since. The hardware "
        "may keep using such an entry indefinitely, so the access may go to the old physical "
        "address (bootemu continues as if it did). Invalidate after changing a live "
        "translation, before relying on the change."
    )

    def on_event(self, event: Event) -> None:
        if isinstance(event, StaleTranslationUse):
            self.fire(event.index, event.pc, event.pa, event.describe())
