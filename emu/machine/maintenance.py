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

from emu.arch.mmu.tlb import PAGE_MASK, dsb_completes_stores, dsb_completes_tlbi
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
        if self._completed_next(event):
            self._machine.unwatch_instructions(self)
            return
        self._machine.watch_instructions(self)

    def _completed_next(self, event: TlbInvalidate | DescriptorWrite) -> bool:
        """Complete what is pending without watching when the instruction right
        after ``event``'s is a DSB that completes all of it (``str; dsb ishst``,
        ``tlbi; dsb ish``: the usual shape).  Nothing can come in between: the
        next instruction is that DSB, fetched through the same page's
        translation, which no pending store changed.  Watching would pause
        emulation twice for the same verdict.
        """
        machine = self._machine
        after, next_index = event.pc + 4, event.index + 1
        if after & PAGE_MASK != event.pc & PAGE_MASK:
            return False
        if isinstance(event, DescriptorWrite) and (
                machine.pc, machine.index_now()) != (after, next_index):
            return False  # the store's stop came later (or an interrupt first)
        fetch = machine.mmu.translate(after, Access.FETCH)
        if not isinstance(fetch, Translation):
            return False
        stored = {store.descriptor_address for store in self._stores()}
        if any(step.descriptor_address in stored for step in fetch.steps):
            return False
        barrier = machine.barrier_at(next_index, after)
        if barrier is None or not barrier.operation.startswith("DSB"):
            return False
        if self._still_pending(barrier.operation):
            return False  # e.g. DSB ISHST after a TLBI: watch for the next DSB
        self.pending = []
        self._last = next_index  # a watcher seeing it again must not count it twice
        machine.mmu.on_walk = None
        return True

    def _still_pending(self, dsb: str) -> list[TlbInvalidate | DescriptorWrite]:
        """What stays pending after the DSB ``dsb``."""
        return [
            event for event in self.pending
            if not (dsb_completes_tlbi(dsb, event.operation)
                    if isinstance(event, TlbInvalidate)
                    else dsb_completes_stores(dsb))
        ]

    def on_instruction(self, index: int, address: int) -> None:
        """Called before each instruction while something is pending."""
        if index == self._last:
            return  # re-entered after a stop in front of this instruction
        self._last = index
        machine = self._machine
        self._watched += 1
        barrier = machine.barrier_at(index, address)
        if barrier is not None and barrier.operation.startswith("DSB"):
            self.pending = self._still_pending(barrier.operation)
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
