"""missing-tlbi: MMU on or TTBR switched while the TLB may hold what the tables no longer say."""

from __future__ import annotations

from emu.arch.mmu.walk import Translation
from emu.checks.base import (
    Check,
    describe_entry,
    describe_fresh,
    differences,
    live_entries,
)
from emu.machine.events import Event, MmuEnable, TtbrWrite

EXAMPLES = 3


class MissingTlbi(Check):
    rule_id = "missing-tlbi"
    title = "No TLB invalidation before the new tables apply"
    explanation = (
        "The MMU was turned on, or a TTBR switched with the MMU on, while the TLB may still "
        "hold translations the now-current tables do not give: either nothing has "
        "invalidated the regime's TLB since reset (its contents are UNKNOWN), or entries made "
        "since the last invalidation disagree with a fresh walk of the new tables (another "
        "PA, other permissions - a writable entry for a page now read-only -, or no "
        "mapping). Invalidate (TLBI ALLE2, VMALLE1, ...) after the tables change and "
        "before they are used. A TTBR write to a table that maps none of the live addresses "
        "(the 'break' of break-before-make) is not judged: the TLBI may follow it."
    )

    def on_event(self, event: Event) -> None:
        if isinstance(event, TtbrWrite) and not event.mmu_enabled:
            return
        if not isinstance(event, MmuEnable | TtbrWrite):
            return
        regime = event.after
        name = regime.name.value
        if not self.context.tlb.is_known(name):
            self.fire(
                event.index,
                event.pc,
                event.pa,
                f"{event.describe()} with no TLB invalidation of the {name} regime since reset:"
                " the TLB contents are UNKNOWN",
            )
            return
        stale = []
        mapped = 0
        for entry in live_entries(self.context.tlb, event):
            fresh = self.context.translate(entry.va_page, regime)
            valid = isinstance(fresh, Translation)
            mapped += valid
            if not (valid and differences(entry, fresh) == []):
                stale.append((entry, fresh))
        if not stale:
            return
        if isinstance(event, TtbrWrite) and mapped == 0:
            # The "break" of break-before-make: tables that map none of the live
            # addresses (a reserved, empty table).  The TLBI may follow; the
            # "make" (the next TTBR write, or MMU on) is where it must have happened.
            return
        self.fire(
            event.index,
            event.pc,
            event.pa,
            f"{event.describe()} while the TLB may still hold {len(stale)} translation(s) made "
            f"since the last invalidation that the new tables do not give",
            tuple(
                f"VA {entry.va_page:#x}: TLB -> {describe_entry(entry)} (made at "
                f"#{entry.made_at}); new tables -> {describe_fresh(fresh)}"
                for entry, fresh in stale[:EXAMPLES]
            ),
        )
