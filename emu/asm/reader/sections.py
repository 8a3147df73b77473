"""Sections and literal pools: ``.text``, ``.data``, ``.bss``, ``.section``,
``.pushsection``, ``.popsection``, ``.previous`` (subsection 0 only), and the pools of
``ldr Rt, =expr`` dumped at ``.ltorg``/``.pool`` and at the end of each section.

Sections are kept apart, each with its own offsets and alignment, to be
placed one after the other later (keystone segfaults on a section switch).
A pool is GNU-style: one per section and entry size, equal entries shared,
aligned with zeros (keystone turns small constants into ``mov``, never shares
entries and pads with ``nop``).
"""

from __future__ import annotations

import re
from collections.abc import Callable

from emu.asm.expr import ExpressionError, Value, evaluate
from emu.asm.reader.items import PoolEntry, Section
from emu.asm.reader.state import ReaderState
from emu.asm.reader.syntax import split_operands
from emu.asm.source import Origin

__all__ = ["SECTION_DIRECTIVES", "SectionReading"]


def _section_defaults(name: str) -> tuple[str, str]:
    """(flags, type) GNU as gives a section named ``name`` without flags."""
    if name == ".text" or name.startswith((".text.", ".init", ".fini")):
        return "ax", "progbits"
    if name in (".bss", ".sbss", ".tbss") or name.startswith((".bss.", ".sbss.", ".tbss.")):
        return "aw", "nobits"
    if name == ".data" or name.startswith((".data.", ".data1", ".sdata", ".tdata")):
        return "aw", "progbits"
    if name == ".rodata" or name.startswith((".rodata.", ".rodata1")):
        return "a", "progbits"
    return "", "progbits"


def _section_kind(name: str, flags: str, section_type: str) -> str:
    if "a" not in flags:
        return "none"
    if "x" in flags:
        return "text"
    if section_type == "nobits":
        return "bss"
    return "data" if "w" in flags else "rodata"


class SectionReading(ReaderState):
    """Section switches and literal pools (see the module docstring)."""

    def _section(self, name: str, flags: str | None, section_type: str | None,
                 origin: Origin | None) -> Section:
        existing = self._by_name.get(name)
        if existing is not None:
            return existing
        default_flags, default_type = _section_defaults(name)
        flags = default_flags if flags is None else flags
        section_type = default_type if section_type is None else section_type
        kind = _section_kind(name, flags, section_type)
        if kind == "none" and origin is not None:
            self.warnings.append(f"{origin.location}: Warning: section `{name}' is not "
                                 "allocated (no \"a\" flag): its contents are left out")
        section = Section(name, kind, len(self.sections), "x" in flags, flags)
        self.sections.append(section)
        self._by_name[name] = section
        return section

    def _switch(self, section: Section) -> None:
        if section is not self._current:
            self._previous = self._current
            self._current = section

    def _subsection(self, argument: str, body: str) -> None:
        if argument.strip() and self._absolute_now(argument, "bad subsection") != 0:
            self._fail(f"subsections not supported by bootemu's assembler -- `{body}'")

    def _d_text(self, name: str, operands: str, body: str) -> None:
        self._subsection(operands, body)
        self._switch(self._section(name, None, None, self._origin))

    def _parse_section(self, operands: str, body: str, push: bool) -> Section:
        parts = split_operands(operands)
        if not parts or not parts[0]:
            self._fail(f"missing name -- `{body}'")
        section_name = parts[0].strip('"')
        rest = parts[1:]
        if push and rest and not rest[0].startswith('"'):
            self._subsection(rest[0], body)
            rest = rest[1:]
        flags: str | None = None
        section_type: str | None = None
        if rest:
            if rest[0].startswith('"'):
                flags = rest[0].strip('"')
                unknown = set(flags) - set("awxMSGTRoed?")
                if unknown:
                    self._fail(f"unknown section flag `{sorted(unknown)[0]}' -- `{body}'")
            elif rest[0].startswith("#"):
                flags = {"#alloc": "a", "#write": "w", "#execinstr": "x"}.get(rest[0], "")
            if len(rest) > 1:
                section_type = rest[1].lstrip("@%").lower()
        existing = self._by_name.get(section_name)
        if existing is not None:
            return existing
        return self._section(section_name, flags, section_type, self._origin)

    def _d_section(self, name: str, operands: str, body: str) -> None:
        self._switch(self._parse_section(operands, body, push=False))

    def _d_pushsection(self, name: str, operands: str, body: str) -> None:
        section = self._parse_section(operands, body, push=True)
        self._section_stack.append((self._current, self._previous))
        self._switch(section)

    def _d_popsection(self, name: str, operands: str, body: str) -> None:
        if not self._section_stack:
            self._fail(".popsection without corresponding .pushsection; ignored")
        self._current, self._previous = self._section_stack.pop()

    def _d_previous(self, name: str, operands: str, body: str) -> None:
        if self._previous is None:
            self._fail(".previous without corresponding .section; ignored")
        self._current, self._previous = self._previous, self._current

    # -- literal pools ---------------------------------------------------------------

    def _literal(self, mnemonic: str, operands: str, body: str) -> PoolEntry | None:
        parts = split_operands(operands)
        if len(parts) != 2 or not parts[1].startswith("="):
            return None
        register = parts[0].lower()
        sizes = {"x": 8, "w": 4, "d": 8, "s": 4}
        if mnemonic == "ldrsw" or not register or register[0] not in sizes:
            self._fail(f"invalid register for a literal load -- `{body}'")
        size = sizes[register[0]]
        expression = parts[1][1:].strip()
        if not expression:
            self._fail(f"missing expression after `=' -- `{body}'")
        key = self._literal_key(expression)
        pending = self._pools.setdefault((id(self._current), size), [])
        if self._current not in self._pool_order:
            self._pool_order.append(self._current)
        for entry in pending:
            if entry.key == key:
                return entry
        entry = PoolEntry(expression, size, key, self._origin, self._seq)
        pending.append(entry)
        return entry

    def _literal_key(self, expression: str) -> object:
        """What makes two literal-pool entries equal for GNU as (``object()``: never)."""
        try:
            value: Value | None = evaluate(expression, self._resolve_now)
        except ExpressionError:
            value = None
        if value is not None and value.section is None:
            return ("constant", value.offset)
        # GNU as shares a symbol + constant entry only with the same symbol and
        # constant; anything more complex gets an entry of its own.
        match = re.fullmatch(r"\s*([A-Za-z_.$][\w.$]*)\s*(?:([-+])\s*(.+))?", expression, re.S)
        if match is None or match.group(1) in self.equates:
            return object()
        addend = 0
        if match.group(3) is not None:
            try:
                addend = evaluate(f"0 {match.group(2)} {match.group(3)}",
                                  self._resolve_now).require_absolute()
            except ExpressionError:
                return object()
        return ("symbol", match.group(1), addend)

    def _dump_pool(self, section: Section) -> None:
        """Emit the pending literal pools of ``section`` (GNU order: 4-, 8-, 16-byte)."""
        saved = self._current
        self._current = section
        if section in self._pool_order:
            self._pool_order.remove(section)
        for entry_size in (4, 8, 16):
            pending = self._pools.pop((id(section), entry_size), [])
            if not pending:
                continue
            self._align(entry_size, bytes(1), None, "<literal pool>", False)
            for entry in pending:
                entry.item = self._emit("pool", entry_size, f"<literal pool: {entry.expression}>",
                                        located=False, width=entry_size,
                                        values=(entry.expression,), pool=entry)
                entry.item.seq = entry.seq
        self._current = saved

    def _d_ltorg(self, name: str, operands: str, body: str) -> None:
        self._dump_pool(self._current)


SECTION_DIRECTIVES: dict[str, Callable[..., object]] = {
    ".text": SectionReading._d_text, ".data": SectionReading._d_text,
    ".bss": SectionReading._d_text,
    ".section": SectionReading._d_section, ".pushsection": SectionReading._d_pushsection,
    ".popsection": SectionReading._d_popsection, ".previous": SectionReading._d_previous,
    ".ltorg": SectionReading._d_ltorg, ".pool": SectionReading._d_ltorg,
}
