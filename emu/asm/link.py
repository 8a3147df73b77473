"""Link what was read into one flat image: place, encode, and let keystone finish.

:func:`encode_program` places the sections (``emu.asm.placement``), turns
every item into bytes (``emu.asm.encode``), hands the instructions left, one
at a time with numeric operands only, to keystone
(``emu.asm.keystone_runner``), whose errors are reworded the way GNU as words
them, and collects the symbol table, equates and ``.size`` values.  Errors
come out in reading order, so the one reported is the one GNU as would print
first; :func:`first_keystone_error` finds keystone's errors among the
statements read before a reading error.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from emu.asm.encode import _Encoder, echoed
from emu.asm.expr import ExpressionError, symbols_in
from emu.asm.keystone_runner import KeystoneResult, encode
from emu.asm.placement import (
    EncodeError,
    SymbolValues,
    Undecidable,
    place_sections,
)
from emu.asm.reader import PREFIX, Item, Reader, Section, split_operands
from emu.asm.source import Origin

__all__ = ["Encoded", "Failure", "encode_program", "first_keystone_error"]

class Failure(Exception):
    """An error found after reading; ``seq`` orders it, ``crash`` marks a keystone crash."""

    def __init__(self, message: str, origin: Origin | None, seq: int, crash: bool = False,
                 transient: bool = False) -> None:
        super().__init__(message)
        self.message = message
        self.origin = origin
        self.seq = seq
        self.crash = crash
        self.transient = transient


@dataclass
class Encoded:
    """The assembled image and everything learnt on the way."""

    code: bytearray
    base: int
    sections: list[Section]
    symbols: dict[str, int]
    symbol_sections: dict[str, str]
    constants: dict[str, int]
    sizes: dict[str, int]
    items: list[Item]  # placed items with bytes, in address order
    code_items: set[int] = field(default_factory=set)  # id() of items that hold instructions
    warnings: list[str] = field(default_factory=list)


# --------------------------------------------------------------------------
# Keystone's errors, worded like GNU as's

_IMMEDIATE_ERRNOS = {520, 524, 525, 527, 528, 529}


def _keystone_message(result: KeystoneResult, mnemonic: str, operands: str, text: str) -> str:
    echo = echoed(mnemonic, operands)
    if result.crashed:
        return result.message
    errno = result.errno
    if errno == 514:
        return f"unknown mnemonic `{mnemonic}' -- `{echo}'"
    if errno == 513:
        return f"selected processor does not support `{echo}'"
    if errno == 520:
        return "immediate out of range"
    if errno in _IMMEDIATE_ERRNOS:
        return f"immediate value out of range -- `{echo}'"
    if errno in (547, 548):
        return "immediate offset out of range"
    if errno == 561:
        if mnemonic in ("mov", "movz", "movn"):
            return "immediate cannot be moved by a single instruction"
        position = next((i + 1 for i, part in enumerate(split_operands(operands))
                         if part.strip().startswith("#")), 0)
        where = f" at operand {position}" if position else ""
        return f"immediate out of range{where} -- `{echo}'"
    if errno in (562, 563):
        return f"unknown or missing system register name -- `{echo}'"
    if errno == 144:
        names = [name for name in symbols_in(operands) if name != "."]
        return f"undefined symbol `{names[0]}'" if names else "undefined symbol"
    if errno in (512, 516):
        return f"operand mismatch -- `{echo}'"
    words = result.message or f"keystone error {errno}"
    if words == "Unknown error":
        words = f"invalid operands (keystone error {errno})"
    return f"{words[:1].lower()}{words[1:]} -- `{echo}'"


# --------------------------------------------------------------------------
# The whole program


def encode_program(reader: Reader, base: int) -> Encoded:
    """Place, evaluate and encode everything read; raises Failure at the first error.

    "First" is in reading order, so the error reported is the one GNU as
    would print first.
    """
    try:
        placed = place_sections(reader, base)
    except EncodeError as err:
        raise Failure(str(err), None, 0) from None
    context = SymbolValues(reader)
    encoder = _Encoder(context)
    failures: list[Failure] = []
    pending: dict[int, str] = {}  # id(item) -> keystone text
    words: dict[int, bytes] = {}
    items = [item for section in placed for item in section.items if item.size]
    for item in items:
        origin = item.pool.origin if item.pool is not None and item.kind == "pool" else item.origin
        try:
            if item.kind == "insn":
                result = encoder.instruction(item)
                if isinstance(result, int):
                    words[id(item)] = result.to_bytes(4, "little")
                else:
                    pending[id(item)] = result
            elif item.kind in ("data", "pool", "inst"):
                words[id(item)] = encoder.data(item)
            else:
                words[id(item)] = item.data
        except EncodeError as err:
            failures.append(Failure(str(err), origin, item.seq))
    by_id = {id(item): item for item in items}
    failures += _keystone(pending, by_id, words)
    if failures:
        raise min(failures, key=lambda failure: failure.seq)

    end = placed[-1].address + placed[-1].size if placed else base  # type: ignore[operator]
    code = bytearray(end - base)
    code_items: set[int] = set()
    for item in items:
        start = encoder.address(item) - base
        code[start:start + item.size] = words[id(item)]
        if item.kind in ("insn", "inst") or (item.kind == "align" and item.section.code
                                              and item.data[-4:] == b"\x1f\x20\x03\xd5"):
            code_items.add(id(item))
    symbols: dict[str, int] = {}
    symbol_sections: dict[str, str] = {}
    for name, label in reader.labels.items():
        if name.startswith(PREFIX) or label.section.address is None:
            continue
        symbols[name] = label.section.address + label.offset
        symbol_sections[name] = label.section.name
    constants: dict[str, int] = {}
    for name, definitions in reader.equates.items():
        final = definitions[-1]
        try:
            value = context.symbol(name, final.seq + 1, None)
        except (ExpressionError, EncodeError, Undecidable):
            continue
        constants[name] = value.offset
        if final.value is not None and final.value.section is not None:
            assert isinstance(final.value.section, Section)
            symbol_sections[name] = final.value.section.name
    sizes: dict[str, int] = {}
    for name, expression, marker in reader.sizes:
        try:
            sizes[name] = context.value(expression, marker.seq, encoder.here(marker))
        except EncodeError as err:
            raise Failure(str(err), marker.origin, marker.seq) from None
    return Encoded(code, base, placed, symbols, symbol_sections, constants, sizes, items,
                   code_items, encoder.warnings)


def _keystone(pending: dict[int, str], items: dict[int, Item],
              words: dict[int, bytes]) -> list[Failure]:
    failures: list[Failure] = []
    if not pending:
        return failures
    results = encode(pending.values())
    for key, text in pending.items():
        item = items[key]
        result = results[text]
        if result.code is not None and len(result.code) == 4:
            words[key] = result.code
            continue
        if result.code is not None:
            message = (f"keystone produced {len(result.code)} bytes for one instruction -- "
                       f"`{echoed(item.mnemonic, item.operands)}'")
        else:
            message = _keystone_message(result, item.mnemonic, item.operands, text)
        failures.append(Failure(message, item.origin, item.seq, crash=result.crashed,
                                transient=result.transient))
    return failures


def first_keystone_error(reader: Reader, before: int) -> Failure | None:
    """The first keystone error among the instructions read before statement ``before``.

    Used when reading stopped at an error: GNU as would still have reported
    an earlier bad instruction first.  Instructions whose operands need
    addresses are skipped.
    """
    context = SymbolValues(reader, partial=True)
    encoder = _Encoder(context)
    pending: dict[int, str] = {}
    failures: list[Failure] = []
    by_id: dict[int, Item] = {}
    for item in reader.items:
        if item.seq >= before or item.kind != "insn" or item.pool is not None:
            continue
        try:
            result = encoder.instruction(item)
        except (Undecidable, EncodeError):
            continue
        if isinstance(result, str):
            pending[id(item)] = result
            by_id[id(item)] = item
    failures += _keystone(pending, by_id, {})
    return min(failures, key=lambda failure: failure.seq) if failures else None
