"""ttbr-switch-live: tables replaced under a running MMU without break-before-make."""

from __future__ import annotations

from emu.arch.mmu.regime import regime_for_el
from emu.arch.mmu.walk import Translation
from emu.checks.base import Check, live_entries
from emu.machine.events import Event, TtbrWrite

EXAMPLES = 3


class TtbrSwitchLive(Check):
    rule_id = "ttbr-switch-live"
    title = "TTBR switched under a live MMU"
    explanation = (
        "A TTBR of the active regime was written while SCTLR.M=1, and translations the "
        "outgoing tables gave since the last TLB invalidation are also mapped, validly, by "
        "the incoming tables. The TLB and walk caches may then hold entries from both sets of "
        "tables at once; the architecture requires break-before-make (switch through an "
        "invalid/reserved table with TLB invalidation, or turn the MMU off in identity-mapped "
        "code). Switching from or to an empty table is compliant."
    )

    def on_event(self, event: Event) -> None:
        if not isinstance(event, TtbrWrite) or not event.mmu_enabled:
            return
        if event.after.name is not regime_for_el(event.el):
            return  # tables of a regime that is not translating right now
        overlap = []
        for entry in live_entries(self.context.tlb, event):
            fresh = self.context.translate(entry.va_page, event.after)
            if isinstance(fresh, Translation):
                overlap.append((entry, fresh))
        if not overlap:
            return
        evidence = tuple(
            f"VA {entry.va_page:#x}: live -> PA {entry.pa_page:#x} (outgoing tables, "
            f"used at #{entry.made_at}); incoming tables -> PA {fresh.pa & ~0xFFF:#x}"
            for entry, fresh in overlap[:EXAMPLES]
        )
        self.fire(
            event.index,
            event.pc,
            event.pa,
            f"{event.register} written with the MMU on ({event.old:#x} -> {event.new:#x}) "
            f"while {len(overlap)} live translation(s) of the outgoing tables are also mapped "
            f"by the incoming ones: no break-before-make",
            evidence,
        )
