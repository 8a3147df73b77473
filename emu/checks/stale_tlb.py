"""stale-tlb: a translation used that a fresh walk would not give."""

from __future__ import annotations

from emu.arch.mmu.walk import Translation
from emu.checks.base import Check, describe_entry, describe_fresh, differences
from emu.machine.events import Event, StaleTranslationUse


class StaleTlb(Check):
    rule_id = "stale-tlb"
    title = "Stale TLB entry used"
    explanation = (
        "An access used a translation the tables no longer give: a TLB entry made before the "
        "tables (or TTBR) changed - another output address, other permissions (a write "
        "through an entry still writable after the page was made read-only), or a mapping "
        "since removed - with no TLB invalidation covering it since. The hardware may keep "
        "using such an entry until a TLBI covers it (Arm ARM D8.16, D8.17), so the access may "
        "go to the old physical address or succeed where the tables now fault (bootemu "
        "continues as the hardware may, through the entry). The finding names the accessed "
        "address. Invalidate after changing a live translation, before relying on the change."
    )

    def on_event(self, event: Event) -> None:
        if not isinstance(event, StaleTranslationUse):
            return
        entry, fresh = event.entry, event.fresh
        if isinstance(fresh, Translation):
            what = ", ".join(differences(entry, fresh)) or "attributes"
            now = f"{describe_fresh(fresh)}: the {what} differ"
        else:
            now = describe_fresh(fresh)
        self.fire(
            event.index,
            event.pc,
            event.pa,
            f"{event.access} of VA {event.va:#x} through a TLB entry to "
            f"{describe_entry(entry, event.va)} (made at #{entry.made_at}); the tables now "
            f"give {now}",
        )
