"""An assembled program: bytes at a link address, sections, symbols, source lines.

:class:`Program` is what ``emu.asm.assembler`` produces and everything later
reads: the memory image and the flat binary, the source statement behind
each byte, whether a byte is code, the nearest label (``symbolize``), the
symbol table as ``nm`` prints it, and a JSON form for the disk cache and
``bootemu asm --json``.
"""

from __future__ import annotations

import bisect
import dataclasses
import functools
import operator
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from emu.asm.cache import pack_bytes, unpack_bytes
from emu.asm.source import SourceLocation

__all__ = ["Program", "ProgramSection"]

_MASK64 = (1 << 64) - 1


@dataclass(frozen=True)
class ProgramSection:
    """A section of an assembled program, at its link address."""

    name: str
    address: int
    size: int
    kind: str  # "text", "rodata", "data" or "bss"
    flags: str
    align: int

    @property
    def end(self) -> int:
        return self.address + self.size


@dataclass
class Program:
    """An assembled program: bytes at a link address, sections, symbols and source lines.

    ``code`` is the memory image from ``base`` to the end of the last section,
    ``.bss`` (zeros) included; :attr:`image` is what a flat binary file holds
    (``objcopy -O binary``: without a trailing ``.bss``).  ``lines`` maps the
    address of each statement's bytes to its source line (for a macro, the
    line invoking it), with ``line_ends``, ``line_texts`` (the statement) and
    ``line_kinds`` (``"code"`` or ``"data"``) alongside.
    """

    code: bytes
    base: int
    symbols: dict[str, int]
    lines: list[tuple[int, SourceLocation]]
    defines: dict[str, str]
    source: str
    # End address (exclusive) of each entry of ``lines``; empty means each entry
    # runs up to the next one.
    line_ends: list[int] = field(default_factory=list, repr=False)
    line_texts: list[str] = field(default_factory=list, repr=False)
    line_kinds: list[str] = field(default_factory=list, repr=False)
    sections: list[ProgramSection] = field(default_factory=list)
    sizes: dict[str, int] = field(default_factory=dict)  # from .size
    constants: dict[str, int] = field(default_factory=dict)  # .equ/.set symbols
    symbol_sections: dict[str, str] = field(default_factory=dict, repr=False)
    global_symbols: list[str] = field(default_factory=list, repr=False)
    weak_symbols: list[str] = field(default_factory=list, repr=False)
    code_ranges: list[tuple[int, int]] = field(default_factory=list, repr=False)
    warnings: list[str] = field(default_factory=list, repr=False)

    @property
    def end(self) -> int:
        """Link address just past the last byte of ``code``."""
        return self.base + len(self.code)

    @property
    def image(self) -> bytes:
        """The bytes of a flat binary file: ``code`` without a trailing ``.bss``."""
        loaded = [section.end for section in self.sections if section.kind != "bss"]
        if not self.sections:
            return self.code
        return self.code[:max(loaded) - self.base] if loaded else b""

    def location_of(self, address: int) -> SourceLocation | None:
        """The source statement that emitted the byte at a link address."""
        index = self._line_index(address)
        return None if index is None else self.lines[index][1]

    def text_of(self, address: int) -> str | None:
        """The statement (as assembled, after macro expansion) that emitted a byte."""
        index = self._line_index(address)
        if index is None or index >= len(self.line_texts):
            return None
        return self.line_texts[index]

    def is_code(self, address: int) -> bool:
        """Whether the byte at a link address belongs to an instruction (not data)."""
        index = bisect.bisect_right(self.code_ranges, (address, _MASK64 + 1)) - 1
        return index >= 0 and self.code_ranges[index][0] <= address < self.code_ranges[index][1]

    def _line_index(self, address: int) -> int | None:
        index = bisect.bisect_right(self.lines, address, key=operator.itemgetter(0)) - 1
        if index < 0 or not self.base <= address < self.end:
            return None
        if self.line_ends:
            end = self.line_ends[index]
        elif index + 1 < len(self.lines):
            end = self.lines[index + 1][0]
        else:
            end = self.end
        return index if address < end else None

    def symbolize(self, address: int) -> tuple[str, int] | None:
        """Nearest label at or below a link address, as ``(name, offset)``.

        ``None`` outside the code or below the first label.  Of several labels
        at one address the last one defined wins (it names what follows it),
        and a ``.L`` local label only when no other label is there.
        """
        if not self.base <= address < self.end:
            return None
        addresses, names = self._symbol_index
        index = bisect.bisect_right(addresses, address) - 1
        if index < 0:
            return None
        return names[index], address - addresses[index]

    @functools.cached_property
    def _symbol_index(self) -> tuple[list[int], list[str]]:
        chosen: dict[int, str] = {}
        for name, value in self.symbols.items():
            current = chosen.get(value)
            if current is None or not name.startswith(".L") or current.startswith(".L"):
                chosen[value] = name
        ordered = sorted(chosen.items())
        return [value for value, _ in ordered], [name for _, name in ordered]

    def nm(self) -> list[tuple[int | None, str, str]]:
        """The symbol table as GNU nm prints it: (value, type letter, name), by name.

        Labels and equates, without ``.L`` local labels (GNU as drops them);
        lower case for local symbols, upper case for global ones, ``U`` for a
        global that is declared but not defined.
        """
        letters = {"text": "t", "rodata": "r", "data": "d", "bss": "b"}
        kinds = {section.name: section.kind for section in self.sections}
        entries: list[tuple[int | None, str, str]] = []
        defined = {**self.constants, **self.symbols}
        for name, value in defined.items():
            if name.startswith(".L"):
                continue
            section = self.symbol_sections.get(name)
            letter = letters.get(kinds.get(section, ""), "a") if section else "a"
            if name in self.weak_symbols:
                letter = "W" if section else "A"
            elif name in self.global_symbols:
                letter = letter.upper()
            entries.append((value & _MASK64, letter, name))
        for name in self.global_symbols:
            if name not in defined:
                entries.append((None, "w" if name in self.weak_symbols else "U", name))
        return sorted(entries, key=lambda entry: entry[2])

    def to_dict(self) -> dict[str, Any]:
        """A JSON-ready rendering (the on-disk cache format, and ``bootemu asm --json``)."""
        return {
            "code": pack_bytes(self.code), "base": self.base, "symbols": self.symbols,
            "lines": [[address, loc.file, loc.line] for address, loc in self.lines],
            "defines": self.defines, "source": self.source, "line_ends": self.line_ends,
            "line_texts": self.line_texts, "line_kinds": self.line_kinds,
            "sections": [dataclasses.asdict(section) for section in self.sections],
            "sizes": self.sizes, "constants": self.constants,
            "symbol_sections": self.symbol_sections, "global_symbols": self.global_symbols,
            "weak_symbols": self.weak_symbols,
            "code_ranges": [list(pair) for pair in self.code_ranges],
            "warnings": self.warnings,
        }

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> Program:
        """The inverse of :meth:`to_dict`."""
        return cls(
            code=unpack_bytes(data["code"]), base=data["base"], symbols=dict(data["symbols"]),
            lines=[(address, SourceLocation(file, line)) for address, file, line in data["lines"]],
            defines=dict(data["defines"]), source=data["source"],
            line_ends=list(data["line_ends"]), line_texts=list(data["line_texts"]),
            line_kinds=list(data["line_kinds"]),
            sections=[ProgramSection(**section) for section in data["sections"]],
            sizes=dict(data["sizes"]), constants=dict(data["constants"]),
            symbol_sections=dict(data["symbol_sections"]),
            global_symbols=list(data["global_symbols"]),
            weak_symbols=list(data["weak_symbols"]),
            code_ranges=[(start, end) for start, end in data["code_ranges"]],
            warnings=list(data["warnings"]),
        )

    def copy(self) -> Program:
        """An independent copy (cached programs are handed out as copies)."""
        return dataclasses.replace(
            self, symbols=dict(self.symbols), lines=list(self.lines), defines=dict(self.defines),
            line_ends=list(self.line_ends), line_texts=list(self.line_texts),
            line_kinds=list(self.line_kinds), sections=list(self.sections),
            sizes=dict(self.sizes), constants=dict(self.constants),
            symbol_sections=dict(self.symbol_sections),
            global_symbols=list(self.global_symbols), weak_symbols=list(self.weak_symbols),
            code_ranges=list(self.code_ranges), warnings=list(self.warnings))
