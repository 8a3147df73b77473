"""ttbr-switch-conflict: a TTBR switched under a running MMU to tables that
translate some address differently."""

from __future__ import annotations

from emu.arch.fields import mair_attr_name
from emu.arch.mmu.regime import regime_for_el, regime_walk_params
from emu.arch.mmu.tables import (
    DescriptorLimit,
    Difference,
    Mapping,
    TreeComparison,
    compare_trees,
    maps_nothing,
    usable_after,
)
from emu.arch.mmu.walk import Translation, format_size
from emu.checks.base import Check, CheckContext
from emu.machine.events import Event, TtbrWrite

_SHAREABILITY = ("non-shareable", "reserved shareability", "outer-shareable",
                 "inner-shareable")


def judged_switch(event: Event) -> bool:
    """Whether a TTBR write replaces the tables of the regime translating right now:
    SCTLR.M=1, the regime of the current EL, and another table base (a rewrite of
    the same value, a CnP-only or an ASID-only change keeps every table)."""
    if not isinstance(event, TtbrWrite) or not event.mmu_enabled:
        return False
    if event.after.name is not regime_for_el(event.el):
        return False  # tables of a regime that is not translating right now
    select = _select(event)
    return (regime_walk_params(event.before, select).table_base
            != regime_walk_params(event.after, select).table_base)


def _select(event: TtbrWrite) -> int:
    return 1 if event.register == "TTBR1_EL1" else 0


def switch_comparison(context: CheckContext, event: TtbrWrite) -> TreeComparison | None:
    """What the outgoing and incoming tables of a switch map, compared over every
    valid mapping (None when the tables are too large to enumerate).  Computed
    once per event and shared by the two TTBR rules."""
    key = ("ttbr-switch", event.index, event.register)
    if key not in context.shared:
        try:
            context.shared[key] = compare_trees(
                event.before, event.after, context.read_physical, selects=(_select(event),),
                keep_old=usable_after(event.before, event.after))
        except DescriptorLimit:
            context.shared[key] = None
    value = context.shared[key]
    return value if isinstance(value, TreeComparison) else None


def through_reserved(context: CheckContext, event: TtbrWrite) -> bool:
    """Whether the outgoing or the incoming tables of a switch map nothing (a
    reserved table): then the switch is a break, or a make, not a replacement.
    Answered from the root tables alone, for trees too large to compare."""
    selects = (_select(event),)
    return (maps_nothing(event.before, context.read_physical, selects=selects)
            or maps_nothing(event.after, context.read_physical, selects=selects))


def describe_mapping(context: CheckContext, mapping: Mapping, va: int, event: TtbrWrite,
                     outgoing: bool) -> str:
    """``PA 0x40001000, 4 KiB page, Normal WB..., inner-shareable, RW-``."""
    regime = event.before if outgoing else event.after
    kind = "page" if mapping.level == 3 else "block"
    text = (f"PA {mapping.pa_at(va):#x}, {format_size(mapping.leaf_size)} {kind}, "
            f"{mair_attr_name(mapping.memory)}, {_SHAREABILITY[mapping.shareability]}")
    walk = context.translate(va, regime)
    if isinstance(walk, Translation):
        text += ", " + ("R" if walk.readable else "-") + ("W" if walk.writable else "-") + (
            "X" if walk.executable else "-")
    if mapping.not_global:
        text += ", nG"
    return text


def difference_evidence(context: CheckContext, event: TtbrWrite, diff: Difference) -> str:
    if diff.fields:
        what = f" ({', '.join(diff.fields)} {'differ' if len(diff.fields) > 1 else 'differs'})"
    elif diff.old.permissions != diff.new.permissions:
        what = " (permissions differ)"
    else:
        what = " (the same translation)"
    return (f"VA {diff.va:#x} (+{format_size(diff.length)}): outgoing -> "
            f"{describe_mapping(context, diff.old, diff.va, event, True)}; incoming -> "
            f"{describe_mapping(context, diff.new, diff.va, event, False)}{what}")


class TtbrSwitchConflict(Check):
    rule_id = "ttbr-switch-conflict"
    title = "TTBR switched under a live MMU to conflicting tables"
    explanation = (
        "A TTBR of the active regime was written while SCTLR.M=1, and some VA that the "
        "outgoing tables map validly is mapped by the incoming tables with another output "
        "address, block size, memory type, shareability or cacheability. Every valid "
        "mapping of the outgoing tables counts, not only those the run used: with the MMU "
        "on, the PE may walk and cache any of them speculatively (Arm ARM D8.16 \"Translation "
        "Lookaside Buffers\"), and entries of the incoming tables may join them before the "
        "TLBI that follows the switch. The TLB may then hold two translations of one address "
        "that break-before-make exists to keep apart (D8.17.1, R_WHZWS): a TLB conflict "
        "abort, or lost coherency and attributes. Non-global mappings of an outgoing ASID "
        "do not count when the ASID changes. Switch through a reserved (empty) table with "
        "TLB invalidation, or turn the MMU off in identity-mapped code."
    )

    def on_event(self, event: Event) -> None:
        if not judged_switch(event):
            return
        assert isinstance(event, TtbrWrite)
        comparison = switch_comparison(self.context, event)
        if comparison is None or not comparison.conflict_count:
            return
        self.fire(
            event.index,
            event.pc,
            event.pa,
            f"{event.register} written with the MMU on ({event.old:#x} -> {event.new:#x}) "
            f"to tables that translate {comparison.conflict_count} range(s) the outgoing "
            f"tables map validly differently: the TLB may hold both translations",
            tuple(difference_evidence(self.context, event, diff)
                  for diff in comparison.conflicts),
        )
