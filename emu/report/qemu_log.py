"""QEMU-style logs: ``bootemu trace --log exec,cpu,int,mmu``.

QEMU's ``-d ITEMS`` picks what its log holds; ``bootemu trace --log`` picks
the same kinds of lines, named after QEMU's items:

``exec``
    every executed instruction (the trace's own lines, :class:`~emu.report.trace.Tracer`);
``cpu``
    the register state before each instruction: PC, X0-X30, SP, PSTATE and
    the exception level (QEMU logs it before each translation block; bootemu,
    before each instruction, at the cost of a Python call each);
``int``
    each exception taken: what, from and to which EL, ESR, FAR, ELR, SPSR and
    the vector (:meth:`~emu.arch.exceptions.TakenException.describe`);
``mmu``
    each translation the MMU model makes (a TLB fill: regime, VA page, PA
    page, size, level, permissions and the descriptors walked), each TLB
    invalidation and each write to a register that shapes translation.

Each line names its instruction's index and its item.  With ``exec`` the
other items' lines follow the line of their instruction; without it they
are the whole log.  ``--filter`` keeps the ``exec`` and ``cpu`` lines of
instructions at some addresses only, as QEMU's ``-dfilter`` does.
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable, Sequence

from emu.arch.mmu.tlb import TlbEntry
from emu.image.boot_image import BootImage
from emu.machine.events import Event, ExceptionTaken, SysRegWrite, TlbInvalidate
from emu.machine.machine import Machine, MachineObserver

LOG_ITEMS: dict[str, str] = {
    "exec": "every executed instruction",
    "cpu": "the register state before each instruction (slow: a Python call each)",
    "int": "exceptions taken, with ESR, FAR, ELR, SPSR and the vector",
    "mmu": "TLB fills (the walk's result and descriptors), TLB invalidations, "
           "translation-register writes",
}

_RANGE = re.compile(r"^\s*(?P<start>[^.+]+?)\s*(?:(?P<op>\.\.|\+)\s*(?P<other>\S+))?\s*$")


def parse_log_items(spec: str) -> frozenset[str]:
    """The items of a ``--log`` value (a comma list); ValueError naming a wrong one."""
    items = {item.strip() for item in spec.split(",") if item.strip()}
    unknown = sorted(items - set(LOG_ITEMS))
    if unknown or not items:
        raise ValueError(f"no log item {', '.join(map(repr, unknown)) or repr(spec)} "
                         f"(items: {', '.join(LOG_ITEMS)})")
    return frozenset(items)


def _number(text: str) -> int:
    return int(text.replace("_", ""), 0)


def parse_filter(spec: str, image: BootImage) -> list[tuple[int, int]]:
    """The [start, end) VA ranges of a ``--filter`` value: a comma list of
    ``START..END``, ``START+SIZE`` or a symbol (from it to the next symbol,
    at its link address and at its physical alias, where code runs before the
    MMU maps the link address).  ValueError with what is wrong."""
    ranges: list[tuple[int, int]] = []
    for part in (part for part in spec.split(",") if part.strip()):
        match = _RANGE.match(part)
        name = part.strip()
        if name in image.symbols:
            start = image.symbols[name]
            later = sorted(value for value in set(image.symbols.values()) if value > start)
            end = later[0] if later else start + 4
            ranges.append((start, end))
            physical = image.physical(start)
            if physical != start:
                ranges.append((physical, physical + end - start))
            continue
        try:
            if match is None:
                raise ValueError
            start = _number(match["start"])
            if match["op"] is None:
                end = start + 4
            elif match["op"] == "+":
                end = start + _number(match["other"])
            else:
                end = _number(match["other"])
        except ValueError:
            raise ValueError(f"--filter {part.strip()!r}: not START..END, START+SIZE or a "
                             "symbol of the image") from None
        if end <= start:
            raise ValueError(f"--filter {part.strip()!r}: the range is empty")
        ranges.append((start, end))
    if not ranges:
        raise ValueError("--filter: no range given")
    return ranges


def log_line(index: int, item: str, text: str, as_json: bool) -> str:
    """One line of an item other than ``exec``, newline included."""
    if as_json:
        return json.dumps({"index": index, "log": item, "text": text}) + "\n"
    return f"{index:>9}  {item}: {text}\n"


class QemuStyleLog(MachineObserver):
    """Writes the ``cpu``, ``int`` and ``mmu`` items of a machine's run.

    ``emit(index, item, text)`` receives each line's instruction index, item
    and text, in the order they happen.  Attaches to the machine at once
    (``cpu``: as an instruction watcher, only for instructions in
    ``address_filter``'s ranges when given); :meth:`detach` when the run is over.
    """

    def __init__(self, machine: Machine, items: frozenset[str],
                 emit: Callable[[int, str, str], None],
                 address_filter: Sequence[tuple[int, int]] | None = None) -> None:
        self.machine = machine
        self.items = items
        self.emit = emit
        self.address_filter = tuple(address_filter) if address_filter else None
        machine.observers.append(self)
        if "mmu" in items:
            machine.tlb.on_insert = self.on_fill
        if "cpu" in items:
            machine.watch_instructions(self)

    def detach(self) -> None:
        if self in self.machine.observers:
            self.machine.observers.remove(self)
        if self.machine.tlb.on_insert == self.on_fill:
            self.machine.tlb.on_insert = None
        if "cpu" in self.items:
            self.machine.unwatch_instructions(self)

    def on_event(self, event: Event) -> None:
        if "int" in self.items and isinstance(event, ExceptionTaken):
            self.emit(event.index, "int", event.describe())
        elif "mmu" in self.items and isinstance(event, SysRegWrite | TlbInvalidate):
            self.emit(event.index, "mmu", event.describe())

    def on_fill(self, entry: TlbEntry) -> None:
        permissions = "".join(letter if flag else "-" for letter, flag in (
            ("R", True), ("W", entry.writable), ("X", entry.executable)))
        asid = "global" if entry.asid is None else f"ASID {entry.asid}"
        walked = " ".join(f"{address:#x}" for address in entry.descriptors)
        self.emit(entry.made_at, "mmu",
                  f"TLB fill {entry.regime} VA page {entry.va_page:#x} -> PA page "
                  f"{entry.pa_page:#x} ({entry.size:#x}-byte level-{entry.level} "
                  f"translation, {permissions}, {asid}, "
                  f"TTBR{entry.select} {entry.ttbr:#x}; descriptors at {walked or '-'})")

    def on_instruction(self, index: int, address: int) -> None:
        ranges = self.address_filter
        if ranges is not None and not any(start <= address < end for start, end in ranges):
            return
        reg = self.machine.reg
        general = " ".join(f"X{n}={reg(f'x{n}'):016x}" for n in range(31))
        self.emit(index, "cpu", f"PC={address:016x} {general} SP={reg('sp'):016x} "
                                f"PSTATE={reg('cpsr'):08x} EL{self.machine.el}")
