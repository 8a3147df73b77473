"""missing-dsb: TLB or table maintenance not completed by a DSB before it is relied on."""

from __future__ import annotations

from emu.arch.mmu.tlb import dsb_completes_stores, dsb_completes_tlbi
from emu.arch.sysregs import tlbi_scope
from emu.checks.base import Check, CheckContext
from emu.machine.events import (
    Barrier,
    DescriptorWrite,
    Event,
    IncompleteMaintenanceUse,
    MmuEnable,
    SysRegWrite,
    TlbInvalidate,
    TtbrWrite,
)

EXAMPLES = 3


def _regime_of(tlbi: TlbInvalidate) -> str | None:
    try:
        return tlbi_scope(tlbi.operation).regime
    except ValueError:
        return None


class MissingDsb(Check):
    rule_id = "missing-dsb"
    title = "TLB or table maintenance not completed by a DSB"
    explanation = (
        "A TLB invalidation, or a store to a translation table, was relied on before a DSB "
        "completed it: the MMU was turned on, a TTBR was switched with the MMU on, or a "
        "translation table walk read the stored descriptor. Without a DSB the effects of a "
        "TLBI may be observed in any order relative to later instructions, and it is "
        "complete for this PE only after a DSB followed by a context synchronization event "
        "(Arm ARM DDI 0487 D8.17.8 'Ordering and completion of TLB maintenance "
        "instructions', R_TGVWD, R_BLDZX). That DSB must apply to loads and stores (DSB "
        "ISHST does not complete a TLBI, R_PSMWS) and cover the TLBI's shareability domain "
        "(ISH, OSH or SY for the ...IS forms). A table update is visible to walks only after "
        "a DSB (D8.17.1 R_DDMVT; K11.5.3 'Ensuring the visibility of updates to translation "
        "tables'). Put DSB ISH (or DSB NSH for a local TLBI) after the maintenance, then ISB."
    )

    def __init__(self, context: CheckContext) -> None:
        super().__init__(context)
        self._pending: list[TlbInvalidate | DescriptorWrite] = []

    def on_event(self, event: Event) -> None:
        if isinstance(event, TlbInvalidate | DescriptorWrite):
            self._pending.append(event)
        elif isinstance(event, Barrier) and event.operation.startswith("DSB"):
            operation = event.operation
            self._pending = [
                e for e in self._pending
                if not (dsb_completes_tlbi(operation, e.operation)
                        if isinstance(e, TlbInvalidate) else dsb_completes_stores(operation))
            ]
        elif isinstance(event, IncompleteMaintenanceUse):
            if event.store in self._pending:
                self._pending.remove(event.store)
                self.fire(
                    event.index, event.pc, event.pa,
                    f"{event.describe()}: the walk may still read the old descriptor",
                    (self._evidence(event.store),),
                )
        elif isinstance(event, MmuEnable) or (
            isinstance(event, TtbrWrite) and event.mmu_enabled
        ):
            self._judge(event)

    def _judge(self, event: SysRegWrite) -> None:
        regime = event.after.name.value
        # The TLBIs of this regime and every table store not yet completed.
        due = [e for e in self._pending
               if isinstance(e, DescriptorWrite) or _regime_of(e) == regime]
        if not due:
            return
        self._pending = [e for e in self._pending if e not in due]
        tlbis = sum(isinstance(e, TlbInvalidate) for e in due)
        stores = len(due) - tlbis
        what = " and ".join(part for part in (
            f"{tlbis} TLB invalidation(s)" if tlbis else "",
            f"{stores} translation table store(s)" if stores else "") if part)
        self.fire(
            event.index, event.pc, event.pa,
            f"{event.describe()} with {what} not completed by a DSB",
            tuple(self._evidence(e) for e in due[:EXAMPLES]),
        )

    def _evidence(self, event: TlbInvalidate | DescriptorWrite) -> str:
        where = f"#{event.index} {event.pc:#x} {self.context.symbolize(event.pc, event.pa)}"
        if isinstance(event, TlbInvalidate):
            domain = " in the Inner Shareable domain" if event.operation.endswith("IS") else ""
            return (f"{where}: {event.operation}: no DSB since completes it (a TLBI needs a "
                    f"DSB of loads and stores{domain})")
        return (f"{where}: descriptor at PA {event.descriptor_address:#x} {event.old:#x} -> "
                f"{event.new:#x}: no DSB since")
