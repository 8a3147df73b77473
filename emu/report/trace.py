"""Instruction traces: every executed instruction, or a window around each MMU event.

Tracing pays a Python call per instruction, which is why it is a separate
mode: checking never installs this hook.  Lines go to a sink as they are made
(the CLI prints them at once), so a run that stops on an error loses nothing.
"""

from __future__ import annotations

import collections
from collections.abc import Callable
from dataclasses import dataclass

from capstone import CS_ARCH_ARM64, CS_MODE_ARM, Cs

from emu.arch.mmu.tlb import PAGE_MASK
from emu.machine.events import Event, SysRegWrite, TlbInvalidate
from emu.machine.machine import Machine, MachineObserver


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


class Tracer(MachineObserver):
    """Records executed instructions to a sink.

    With ``window`` None every instruction is emitted.  With ``window=N`` only the
    N instructions before and after each MMU event are: a ring buffer holds the
    recent past, and a countdown the near future.  Only events of the
    ``events`` categories (:data:`~emu.machine.events.EVENT_CATEGORIES`; all by
    default) annotate instructions and open windows.
    """

    def __init__(
        self, machine: Machine, sink: Callable[[TraceLine], None], window: int | None = None,
        events: frozenset[str] | None = None,
    ) -> None:
        self.machine = machine
        self.sink = sink
        self.window = window
        self.events = events
        self._recent: collections.deque[TraceLine] = collections.deque(maxlen=window or 1)
        self._after = 0
        self._pending: TraceLine | None = None
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
                    self.sink(line)
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
            self.sink(line)
        elif self._after > 0:
            self._after -= 1
            self.sink(line)
        else:
            self._recent.append(line)

    def flush(self) -> None:
        """Emit the last instruction; call when the run has ended.

        The run may have stopped in front of the last instruction seen (at its
        target, or on a fault in fetching it): that one never executed.
        """
        if self._pending is not None and self._pending.index >= self.machine.executed:
            self._pending = None
        self._release()
