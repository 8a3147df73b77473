"""TLB and translation-table maintenance not yet completed by a DSB.

A TLBI, or a store to a translation table, is only guaranteed to have taken
effect after a DSB of the right kind (DDI 0487 D8.17.8 "Ordering and
completion of TLB maintenance instructions"; D8.17.1 R_DDMVT; which DSB
completes what is :mod:`emu.arch.mmu.tlb`'s).  :class:`MaintenanceTracker`
watches instructions only from such a TLBI or store until the DSB that
completes everything pending, and emits a :class:`~emu.machine.events.Barrier`
for every DSB it sees meanwhile, in order; checking pays no per-instruction
Python call anywhere else.  While a table store is pending, it also reports a
walk that succeeds only through the stored descriptor (a mapping used before
the DSB that makes it visible).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from emu.arch.mmu.tlb import dsb_completes_stores, dsb_completes_tlbi
from emu.arch.mmu.walk import Access, Fault, Translation, translate
from emu.machine.events import (
    DescriptorWrite,
    Event,
    IncompleteMaintenanceUse,
    TlbInvalidate,
)

if TYPE_CHECKING:
    from emu.machine.machine import Machine

# Instructions watched with maintenance pending and no DSB at all before the
# machine gives up watching (and forgets what is pending rather than judge it
# without seeing its DSB).  Real code puts the DSB within a few instructions.
WATCH_LIMIT = 200_000


class MaintenanceTracker:
    """The TLBIs and table stores of one machine still waiting for their DSB."""

    def __init__(self, machine: Machine) -> None:
        self._machine = machine
        self.pending: list[TlbInvalidate | DescriptorWrite] = []
        self._watched = 0
        self._last = -1

    def on_event(self, event: Event) -> None:
        if not isinstance(event, TlbInvalidate | DescriptorWrite):
            return
        if isinstance(event, DescriptorWrite) and not self._stores():
            self._machine.mmu.on_walk = self._on_walk
        self.pending.append(event)
        self._watched = 0
        self._machine.watch_instructions(self)

    def on_instruction(self, index: int, address: int) -> None:
        """Called before each instruction while something is pending."""
        if index == self._last:
            return  # re-entered after a stop in front of this instruction
        self._last = index
        machine = self._machine
        self._watched += 1
        barrier = machine.barrier_at(index, address)
        if barrier is not None and barrier.operation.startswith("DSB"):
            operation = barrier.operation
            self.pending = [
                event for event in self.pending
                if not (dsb_completes_tlbi(operation, event.operation)
                        if isinstance(event, TlbInvalidate)
                        else dsb_completes_stores(operation))
            ]
        if self._watched > WATCH_LIMIT:
            self.pending = []
        if not self._stores():
            machine.mmu.on_walk = None
        if not self.pending:
            machine.unwatch_instructions(self)

    def _stores(self) -> list[DescriptorWrite]:
        return [event for event in self.pending if isinstance(event, DescriptorWrite)]

    def _depends(self, result: Translation | Fault, va: int, access: Access,
                 store: DescriptorWrite) -> bool:
        mmu = self._machine.mmu

        def read_old(pa: int) -> int:
            return store.old if pa == store.descriptor_address else mmu.read_descriptor(pa)

        old = translate(mmu.regime(), read_old, va, access, el0=self._machine.el == 0)
        return isinstance(old, Fault) and isinstance(result, Translation)

    def _on_walk(self, result: Translation | Fault, va: int, access: Access) -> None:
        """A walk (TLB fill) while table stores are pending: report one that reads a
        descriptor a pending store wrote and succeeds only because of it - a
        mapping made and used before a DSB, where the walk may still see the old
        descriptor and fault (Linux's set_pte() has its DSB for this).  Changes
        of a valid translation are break-before-make's and TLB maintenance's
        concern (live-descriptor-change, stale-tlb), not reported here.
        """
        stores = {event.descriptor_address: event for event in self._stores()}
        for step in result.steps:
            store = stores.get(step.descriptor_address)
            if store is not None and self._depends(result, va, access, store):
                machine = self._machine
                pc = machine.pc
                machine.emit(IncompleteMaintenanceUse(
                    machine.index_at(pc), pc, machine.mmu.fetch_pa(pc), machine.el,
                    va, access.value, store))
                return
