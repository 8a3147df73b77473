"""ttbr-switch-live: tables replaced under a running MMU."""

from __future__ import annotations

from emu.checks.base import Check
from emu.checks.ttbr_switch_conflict import (
    difference_evidence,
    judged_switch,
    switch_comparison,
    through_reserved,
)
from emu.machine.events import Event, TtbrWrite


class TtbrSwitchLive(Check):
    rule_id = "ttbr-switch-live"
    title = "TTBR switched under a live MMU"
    explanation = (
        "A TTBR of the active regime was written while SCTLR.M=1, from one non-empty set of "
        "tables to another. Where the two agree, or differ only in permissions, the "
        "architecture permits it (a permission change needs TLB maintenance, not "
        "break-before-make), but the code then relies on both sets of tables mapping itself "
        "and everything it touches identically; Linux and post-rework Xen never do it (Linux "
        "goes through a reserved table, Xen turns the MMU off in identity-mapped code), and "
        "Xen 4.17's switch_ttbr does. A switch whose tables also conflict is reported by "
        "ttbr-switch-conflict too. Never reported for a rewrite of the same value, a CnP-only "
        "or ASID-only change over the same tables, a switch from or to a reserved (empty) "
        "table, or one whose outgoing mappings are all non-global entries of an ASID that is "
        "no longer current."
    )

    def on_event(self, event: Event) -> None:
        if not judged_switch(event):
            return
        assert isinstance(event, TtbrWrite)
        comparison = switch_comparison(self.context, event)
        if comparison is None and through_reserved(self.context, event):
            return  # the break, or the make, of a switch through a reserved table
        if comparison is None:
            self.fire(event.index, event.pc, event.pa,
                      f"{event.register} written with the MMU on ({event.old:#x} -> "
                      f"{event.new:#x}); the tables are too large to compare")
            return
        if not (comparison.old_nonempty and comparison.new_nonempty):
            return  # the break, or the make, of a switch through a reserved table
        agree = comparison.shared
        summary = []
        if agree:
            summary.append(f"{agree:#x} bytes of VA translated alike")
        if comparison.permission_count:
            summary.append(f"{comparison.permission_count} range(s) differing only in "
                           f"permissions")
        if comparison.conflict_count:
            summary.append(f"{comparison.conflict_count} conflicting range(s)")
        self.fire(
            event.index,
            event.pc,
            event.pa,
            f"{event.register} written with the MMU on ({event.old:#x} -> {event.new:#x}) "
            f"between two non-empty tables ({', '.join(summary) or 'no common VA'}): no "
            f"break-before-make",
            tuple(difference_evidence(self.context, event, diff)
                  for diff in (comparison.permission_changes + comparison.conflicts
                               + comparison.agreements)[:3]),
        )
