"""Where every section goes, and what every symbol is worth once it is there.

:func:`place_sections` lays the allocated sections out from the link address
(text, rodata, data, bss, as a simple linker script would); then every label
has an address, and :class:`SymbolValues` evaluates expressions over labels
and equates as GNU as does after layout (an equate's value is the one in
force at the statement that uses it).
"""

from __future__ import annotations

from emu.asm.expr import (
    ExpressionError,
    NotAbsolute,
    UndefinedSymbol,
    Value,
    evaluate,
)
from emu.asm.reader import PREFIX, SECTION_KINDS, Reader, Section

__all__ = ["EncodeError", "SymbolValues", "Undecidable", "place_sections"]

_MASK64 = (1 << 64) - 1
_HEADER_SECTIONS = (".text.header", ".head.text")


class EncodeError(Exception):
    """Raised while placing sections or encoding one item.

    ``emu.asm.link`` turns it into a Failure with the item's origin.
    """


class Undecidable(Exception):
    """Not decidable without addresses (only when checking a partly read source)."""


def place_sections(reader: Reader, base: int) -> list[Section]:
    """Lay the allocated sections out from ``base``: text, rodata, data, bss.

    Within a kind, sections keep the order in which the source first used
    them, each aligned to the largest alignment asked for inside it: what a
    linker script listing ``*(.text .text.*)`` and so on would do, except that
    a header section (``.text.header``, ``.head.text``) comes first, as Xen's
    and Linux's linker scripts put it: it holds the entry point.
    """
    used = [section for section in reader.sections
            if section.kind != "none" and (section.size or any(
                label.section is section for label in reader.labels.values()))]
    used.sort(key=lambda section: (SECTION_KINDS.index(section.kind),
                                   section.name not in _HEADER_SECTIONS, section.order))
    address = base
    for index, section in enumerate(used):
        aligned = -(-address // section.align) * section.align
        if index == 0 and aligned != address:
            raise EncodeError(f"link address {base:#x} is not aligned to the {section.align}-byte "
                              f"alignment section `{section.name}' asks for")
        section.address = aligned
        address = aligned + section.size
    if address > _MASK64 + 1:
        raise EncodeError(f"the image does not fit below 2^64 when linked at {base:#x}")
    return used


class SymbolValues:
    """Symbol values after layout (or, with ``partial``, only constants)."""

    def __init__(self, reader: Reader, partial: bool = False) -> None:
        self.reader = reader
        self.partial = partial
        self._evaluating: set[int] = set()

    def symbol(self, name: str, seq: int, here: int | None) -> Value:
        if name == ".":
            if here is None:
                raise Undecidable
            return Value(here)
        label = self.reader.labels.get(name)
        if label is not None:
            if label.section.address is None:
                if self.partial:
                    raise Undecidable
                raise EncodeError(f"symbol `{name}' is in section `{label.section.name}', which is "
                                  "not allocated")
            return Value(label.section.address + label.offset)
        definition = self.reader.equate_at(name, seq)
        if definition is None and self.reader.equates.get(name):
            definition = self.reader.equates[name][-1]  # used before set: its final value
        if definition is None:
            raise UndefinedSymbol(self.reader.local_names.get(name, name))
        value = definition.value
        if value is not None and value.section is None:
            return value
        if value is not None:
            assert isinstance(value.section, Section)
            if value.section.address is None:
                if self.partial:
                    raise Undecidable
                raise EncodeError(f"symbol `{name}' is not allocated")
            return Value(value.section.address + value.offset)
        if id(definition) in self._evaluating:
            raise EncodeError(f"symbol definition loop encountered at `{name}'")
        self._evaluating.add(id(definition))
        try:
            section = definition.section
            where = None if section.address is None else section.address + definition.offset
            return self.evaluate(definition.expression, definition.seq, where)
        finally:
            self._evaluating.discard(id(definition))

    def evaluate(self, expression: str, seq: int, here: int | None) -> Value:
        return evaluate(expression, lambda name: self.symbol(name, seq, here))

    def value(self, expression: str, seq: int, here: int | None) -> int:
        """An expression's absolute value; errors read like GNU as's."""
        try:
            result = self.evaluate(expression, seq, here)
        except UndefinedSymbol as err:
            if self.partial:
                raise Undecidable from None
            name = err.name
            if name.startswith(PREFIX):
                raise EncodeError(f"undefined local label `{name}'") from None
            raise EncodeError(f"undefined symbol `{name}'") from None
        except NotAbsolute as err:
            raise EncodeError(str(err)) from None
        except ExpressionError as err:
            raise EncodeError(str(err)) from None
        return result.require_absolute()

    def defined(self, name: str) -> bool:
        return name == "." or name in self.reader.labels or name in self.reader.equates
