"""Instruction traces: every executed instruction, or a window around each MMU event.

Tracing pays a Python call per instruction, which is why it is a separate
mode: checking never installs this hook.  Lines go to a sink as they are made
(the CLI prints them at once), so a run that stops on an error loses nothing.
Where instructions are left out (outside the windows), a :class:`TraceGap`
says how many, so that distant code never reads as consecutive.
"""

from __future__ import annotations

import collections
from collections.abc import Callable
from dataclasses import dataclass

from capstone import CS_ARCH_ARM64, CS_MODE_ARM, Cs

from emu.arch.mmu.tlb import PAGE_MASK
from emu.machine.events import Event, SysRegWrite, TlbInvalidate
from emu.machine.machine import Machine, MachineObserver
from emu.report.ending import counted


class Disassembler:
    """Capstone, with a cache: boot code executes the same few words many times."""

    def __init__(self) -> None:
        self._cs = Cs(CS_ARCH_ARM64, CS_MODE_ARM)
        self._cache: dict[tuple[int, int], str] = {}

    def text(self, word: int, address: int) -> str:
        key = (word, address)
        text = self._cache.get(key)
        if text is None:
            decoded = next(self._cs.disasm_lite(word.to_bytes(4, "little"), address), None)
            text = f"{decoded[2]} {decoded[3]}".strip() if decoded else f".inst {word:#010x}"
            self._cache[key] = text
        return text


@dataclass(frozen=True)
class TraceLine:
    """One executed instruction."""

    index: int
    va: int
    pa: int | None
    symbol: str
    word: int
    text: str
    event: str | None = None  # the MMU event this instruction caused, if any

    def format(self) -> str:
        pa = f"{self.pa:#014x}" if self.pa is not None else "      (fault)"
        line = (f"{self.index:>9}  {self.va:#018x}  {pa}  {self.symbol:<30}  "
                f"{self.word:08x}  {self.text}")
        return f"{line}    ; {self.event}" if self.event else line

    def to_dict(self) -> dict[str, object]:
        return {"index": self.index, "va": self.va, "pa": self.pa, "symbol": self.symbol,
                "encoding": f"{self.word:08x}", "disassembly": self.text, "event": self.event}


@dataclass(frozen=True)
class TraceGap:
    """``count`` executed instructions left out of a trace: those numbered
    between the lines either side (whose indices differ by ``count + 1``), or
    before the first line (from #0), or after the last one (to the stop)."""

    count: int

    def format(self) -> str:
        return f"... {counted(self.count, 'instruction')} left out ..."

    def to_dict(self) -> dict[str, object]:
        return {"gap": self.count}


class Tracer(MachineObserver):
    """Records executed instructions to a sink.

    With ``window`` None every instruction is emitted.  With ``window=N`` only the
    N instructions before and after each MMU event are: a ring buffer holds the
    recent past, and a countdown the near future; each run of instructions
    left out, before, between or after the windows, reaches the sink as a
    :class:`TraceGap` in its place.  Only events of the ``events`` categories
    (:data:`~emu.machine.events.EVENT_CATEGORIES`; all by default) annotate
    instructions and open windows.
    """

    def __init__(
        self, machine: Machine, sink: Callable[[TraceLine | TraceGap], None],
        window: int | None = None, events: frozenset[str] | None = None,
    ) -> None:
        self.machine = machine
        self.sink = sink
        self.window = window
        self.events = events
        self._recent: collections.deque[TraceLine] = collections.deque(maxlen=window or 1)
        self._after = 0
        self._pending: TraceLine | None = None
        self._last_emitted = -1  # the index of the last line handed to the sink
        self._pa_of_page: dict[int, int | None] = {}
        self._disassembler = Disassembler()
        machine.observers.append(self)
        machine.watch_instructions(self)

    def on_event(self, event: Event) -> None:
        if isinstance(event, SysRegWrite | TlbInvalidate):
            self._pa_of_page.clear()
        if self.events is not None and event.category not in self.events:
            return
        if self._pending is not None and self._pending.index == event.index:
            note = event.describe()
            self._pending = TraceLine(**{**self._pending.__dict__, "event": note})
            if self.window is not None:
                for line in self._recent:
                    self._emit(line)
                self._recent.clear()
                self._after = self.window

    def on_instruction(self, index: int, address: int) -> None:
        """Called by the machine before each instruction."""
        if self._pending is not None and self._pending.index == index:
            return  # the same instruction again, after a stop in front of it
        self._release()
        page = address & PAGE_MASK
        if page not in self._pa_of_page:
            self._pa_of_page[page] = self.machine.mmu.fetch_pa(page)
        base = self._pa_of_page[page]
        pa = None if base is None else base | (address & ~PAGE_MASK)
        data = self.machine.read_physical(pa, 4) if pa is not None else None
        word = int.from_bytes(data, "little") if data is not None else 0
        self._pending = TraceLine(
            index=index,
            va=address,
            pa=pa,
            symbol=self.machine.symbolize(address, pa),
            word=word,
            text=self._disassembler.text(word, address),
        )

    def _release(self) -> None:
        """Hand the previous instruction (now complete, with its event) to the sink."""
        line, self._pending = self._pending, None
        if line is None:
            return
        if self.window is None or line.event is not None:
            self._emit(line)
        elif self._after > 0:
            self._after -= 1
            self._emit(line)
        else:
            self._recent.append(line)

    def _emit(self, line: TraceLine) -> None:
        """Hand ``line`` to the sink, after a gap marker for any instructions
        left out since the last line."""
        if line.index > self._last_emitted + 1:
            self.sink(TraceGap(line.index - self._last_emitted - 1))
        self._last_emitted = max(self._last_emitted, line.index)
        self.sink(line)

    def flush(self) -> None:
        """Emit the last instruction; call when the run has ended.

        The run may have stopped in front of the last instruction seen (at its
        target, or on a fault in fetching it): that one never executed.  The
        instructions executed after the last line emitted (outside any window)
        end the trace as a gap.
        """
        executed = self.machine.executed
        if self._pending is not None and self._pending.index >= executed:
            self._pending = None
        self._release()
        if executed > self._last_emitted + 1:
            self.sink(TraceGap(executed - self._last_emitted - 1))
            self._last_emitted = executed - 1
