"""MMU-transition windows and unsynchronized fetches: what the machine watches
instruction by instruction, and only while it matters.

A window runs from an MMU-off (or the first MMU-on) to the first context
synchronization after the MMU is on again; every instruction in it is
recorded with its VA and PA, then a short tail up to the jump to the link
address.  Separately, after a translation-register write and until the next
context synchronization event (ISB, exception entry or ERET - the
architecture sets no instruction count after which a write is in force), each
fetch and each data access is compared under the old and the new value.

:class:`WindowTracker` is an observer the machine feeds: it sees every event
after the machine's other observers, and asks the machine for per-instruction
observation only while a window, a tail or an unsynchronized write is open -
checking mode pays no Python call per instruction anywhere else.
"""

from __future__ import annotations

from dataclasses import replace
from typing import TYPE_CHECKING

from emu.arch.mmu.regime import TranslationRegime, regime_for_el
from emu.arch.mmu.tlb import PAGE_MASK
from emu.arch.mmu.walk import Access, Translation
from emu.machine.events import (
    Barrier,
    Event,
    ExceptionTaken,
    MmuDisable,
    MmuEnable,
    SysRegWrite,
    TransitionWindow,
    UnsynchronizedAccess,
    UnsynchronizedFetch,
    WindowFetch,
)
from emu.machine.mmu import REGIME_FIELD_OF

if TYPE_CHECKING:
    from emu.machine.machine import Machine

WINDOW_RECORD_LIMIT = 4096
WINDOW_TAIL_LIMIT = 8

_ISB = 0xD5033FDF
_ERET = 0xD69F03E0


def barrier_name(word: int) -> str | None:
    """Name an A64 barrier encoding (``"DSB ISH"``, ``"ISB"``, and ``"ERET"``, which
    synchronizes context too), or None if the word is none of those."""
    if word == _ISB:
        return "ISB"
    if word == _ERET:
        return "ERET"
    options = {0xF: "SY", 0xE: "ST", 0xD: "LD", 0xB: "ISH", 0xA: "ISHST", 0x9: "ISHLD",
               0x7: "NSH", 0x6: "NSHST", 0x5: "NSHLD", 0x3: "OSH", 0x2: "OSHST", 0x1: "OSHLD"}
    crm = (word >> 8) & 0xF
    if word & 0xFFFFF0FF == 0xD503309F:
        return f"DSB {options.get(crm, hex(crm))}"
    if word & 0xFFFFF0FF == 0xD50330BF:
        return f"DMB {options.get(crm, hex(crm))}"
    return None


class WindowTracker:
    """Opens, records and closes the MMU-transition windows of one machine, and
    reports fetches that depend on a missing context synchronization."""

    def __init__(self, machine: Machine) -> None:
        self._machine = machine
        self._window: TransitionWindow | None = None
        self._tail_of: TransitionWindow | None = None
        self._unsynced: list[SysRegWrite] = []  # translation writes not yet synchronized
        self._last_watched = -1

    # -- what the machine feeds ------------------------------------------------

    def on_event(self, event: Event) -> None:
        """A write to a register that shapes translation may open a window, and
        is not in force for fetches until the next context synchronization."""
        if isinstance(event, ExceptionTaken) and event.taken is not None and self._unsynced:
            # Exception entry is a context synchronization event.
            self._synchronized()
            return
        if not isinstance(event, SysRegWrite) or event.register not in REGIME_FIELD_OF:
            return
        machine = self._machine
        pa = event.pa
        self._track_window(event, word=int.from_bytes(machine.uc.mem_read(pa, 4), "little")
                           if pa is not None else 0)
        if event.after.name is regime_for_el(event.el):
            self._unsynced.append(event)
        if self._watching():
            machine.watch_instructions(self)
        else:
            machine.unwatch_instructions(self)
        if self._unsynced:
            machine.watch_memory(self)

    def _synchronized(self) -> None:
        """A context synchronization event: every translation write is now in force."""
        self._unsynced.clear()
        self._machine.unwatch_memory(self)
        if not self._watching():
            self._machine.unwatch_instructions(self)

    def on_memory(self, access: Access, address: int) -> None:
        """Called for every data access while a translation write is unsynchronized.

        Until a context synchronization event the PE may still translate with
        the old register value (DDI 0487 D24.1.2.2): an access whose translation
        differs between the old and the new value depends on the missing ISB.
        """
        machine = self._machine
        if not self._unsynced:
            return
        new = machine.mmu.translate(address, access)
        new_pa = new.pa if isinstance(new, Translation) else None
        for write in reversed(self._unsynced):
            old = machine.mmu.translate(address, access, write.before)
            old_pa = old.pa if isinstance(old, Translation) else None
            if old_pa != new_pa:
                pc = machine.pc
                self._unsynced.clear()  # one report per unsynchronized stretch
                machine.unwatch_memory(self)
                machine.emit(UnsynchronizedAccess(machine.index_at(pc), pc,
                                                  machine.mmu.fetch_pa(pc), machine.el,
                                                  write, old_pa, address, access.value,
                                                  new_pa))
                return

    def on_run_end(self) -> None:
        if self._window is not None:
            # The run ends inside a transition: judge what was fetched so far.
            self._close_window(None)

    def on_instruction(self, index: int, address: int) -> None:
        """Called before each instruction while :meth:`_watching`."""
        if index == self._last_watched:
            return  # re-entered after a stop in front of this instruction
        self._last_watched = index
        machine = self._machine
        fetch = self._fetch_record(index, address)
        event = machine.barrier_at(index, address) if barrier_name(fetch.word) else None
        barrier = event.operation if event is not None else None
        if self._unsynced:
            self._check_unsynchronized(fetch)
        if self._window is not None:
            self._record_window(fetch, event)
        elif self._tail_of is not None:
            self._record_tail(fetch)
        if barrier in ("ISB", "ERET") and self._unsynced:
            self._synchronized()  # context synchronization: every write now applies
        if not self._watching():
            machine.unwatch_instructions(self)

    # -- windows -----------------------------------------------------------------

    def _track_window(self, event: SysRegWrite, word: int) -> None:
        if event.after.name is not regime_for_el(event.el):
            return  # e.g. EL2 setting up SCTLR_EL1: its own fetches are unaffected
        self._tail_of = None
        if isinstance(event, MmuDisable) and self._window is None:
            self._open_window(event, old=event.before, word=word)
        elif isinstance(event, MmuEnable):
            if self._window is None:
                self._open_window(event, old=None, word=word)
            assert self._window is not None
            self._window.mmu_on_index = event.index

    def _open_window(self, event: SysRegWrite, old: TranslationRegime | None, word: int) -> None:
        window = TransitionWindow(opened_by=event, old=old)
        # The opening instruction is evidence only: where its own next fetch
        # lands is mmu-toggle-off-identity's question, not this window's.
        window.fetches.append(
            WindowFetch(event.index, event.pc, event.pa if event.pa is not None else -1, word)
        )
        self._window = window

    def _watching(self) -> bool:
        """Whether any per-instruction observation is under way."""
        return self._window is not None or self._tail_of is not None or bool(self._unsynced)

    def _record_window(self, fetch: WindowFetch, barrier: Barrier | None) -> None:
        window = self._window
        assert window is not None
        window.pages.setdefault(fetch.va & PAGE_MASK, fetch)
        if len(window.fetches) < WINDOW_RECORD_LIMIT:
            window.fetches.append(fetch)
        else:
            window.truncated = True
        if barrier is not None and barrier.operation in ("ISB", "ERET") and (
            window.mmu_on_index is not None or barrier.operation == "ERET"
        ):
            self._close_window(barrier)
            self._tail_of = window

    def _record_tail(self, fetch: WindowFetch) -> None:
        window = self._tail_of
        assert window is not None
        window.tail.append(fetch)
        if fetch.va != fetch.pa or len(window.tail) >= WINDOW_TAIL_LIMIT:
            self._tail_of = None

    def _check_unsynchronized(self, fetch: WindowFetch) -> None:
        """Report fetches the CPU may still make under a regime a write replaced.

        Until a context synchronization event, the PE may use the old value of
        a translation register; a fetch whose translation differs between the
        old and new values depends on the missing synchronization.
        """
        machine = self._machine
        new_pa = fetch.pa if fetch.pa >= 0 else None
        # The latest write that makes a difference is the one to name: its
        # "before" already holds the earlier unsynchronized values.
        for write in reversed(self._unsynced):
            old = machine.mmu.translate(fetch.va, Access.FETCH, write.before)
            old_pa = old.pa if isinstance(old, Translation) else None
            if old_pa != new_pa:
                self._unsynced.clear()  # one report per unsynchronized stretch
                machine.unwatch_memory(self)
                machine.emit(UnsynchronizedFetch(fetch.index, fetch.va, new_pa, machine.el,
                                                 write, old_pa))
                return

    def _fetch_record(self, index: int, address: int) -> WindowFetch:
        machine = self._machine
        pa = machine.mmu.fetch_pa(address)
        word = int.from_bytes(machine.uc.mem_read(pa, 4), "little") if pa is not None else 0
        return WindowFetch(index, address, pa if pa is not None else -1, word)

    def _close_window(self, closing: Event | None) -> None:
        window = self._window
        if window is None:
            return
        machine = self._machine
        window.closed_by = closing
        window.new = machine.mmu.regime(window.opened_by.after.name)
        if not window.new.mmu_enabled:
            # The run ended with the MMU still off: judge against the tables TTBR holds.
            window.new = replace(window.new, sctlr=window.new.sctlr | 1)
        for page in window.pages:
            window.identity_new[page] = self._identity_mapped(page, window.new)
            if window.old is not None:
                window.identity_old[page] = self._identity_mapped(page, window.old)
        self._window = None
        machine.publish_window(window)

    def _identity_mapped(self, va: int, regime: TranslationRegime) -> bool:
        result = self._machine.mmu.translate(va, Access.FETCH, regime)
        return isinstance(result, Translation) and result.pa == va
