"""Data and the other directives: ``.byte``/``.hword``/``.word``/``.quad`` and their
synonyms, ``.inst``, ``.ascii``/``.asciz``/``.string``, ``.space``/``.skip``/``.zero``,
``.fill``, ``.align``/``.p2align``/``.balign`` (and their ``w``/``l`` forms), ``.org``,
``.global``/``.globl``/``.weak``/``.local``, ``.type``, ``.size``, ``.error``/``.err``,
``.warning``, ``.end``, ``.req``/``.unreq``; the directives bootemu refuses, and those
without effect on a flat binary (debug information, ``.cfi_*``, ``.arch`` ...).

Data values are kept as expressions, evaluated once all sections are placed
(``emu.asm.link``); sizes, counts and alignments must be constants now.
Alignment pads code sections with ``nop`` after any odd bytes and data
sections with zeros, as GNU as does.
"""

from __future__ import annotations

import re
from collections.abc import Callable

from emu.asm.expr import ExpressionError, NotAbsolute, UndefinedSymbol, evaluate
from emu.asm.reader.items import Item
from emu.asm.reader.state import ReaderState
from emu.asm.reader.syntax import SYMBOL, parse_strings, split_operands

__all__ = ["DATA_DIRECTIVES", "DATA_WIDTHS", "IGNORED", "DataReading"]

DATA_WIDTHS = {
    ".byte": 1, ".hword": 2, ".short": 2, ".half": 2, ".2byte": 2,
    ".word": 4, ".long": 4, ".int": 4, ".4byte": 4,
    ".quad": 8, ".xword": 8, ".dword": 8, ".8byte": 8,
}
# Directives with no effect on a flat binary: debug info, attributes for a
# linker, architecture selection (keystone accepts every ARMv8.0 instruction).
IGNORED = {
    ".file", ".ident", ".loc", ".loc_mark_labels", ".arch", ".arch_extension", ".cpu",
    ".variant_pcs", ".addrsig", ".addrsig_sym", ".hidden", ".protected", ".internal",
    ".symver", ".print", ".eject", ".psize", ".title", ".sbttl", ".list", ".nolist",
    ".noaltmacro", ".func", ".endfunc", ".tlsdescadd", ".tlsdesccall", ".tlsdescldr",
    ".stabs", ".stabn", ".stabd", ".gnu_attribute", ".aeabi_subsection",
}

# Directives bootemu's assembler refuses, and what its message calls them.
_UNSUPPORTED = {".altmacro": "alternate macro mode (.altmacro)",
                ".comm": "common symbols (.comm)", ".lcomm": "common symbols (.lcomm)",
                ".subsection": "subsections", ".octa": ".octa data",
                ".float": "floating-point data", ".single": "floating-point data",
                ".double": "floating-point data", ".uleb128": "LEB128 data",
                ".sleb128": "LEB128 data", ".nops": ".nops"}


class DataReading(ReaderState):
    """Data, alignment, symbol attributes, diagnostics (see the module docstring)."""

    def _data(self, name: str, width: int, operands: str, body: str) -> None:
        values = tuple(self._local_references(value) for value in split_operands(operands))
        if not values:
            return
        if any(not value for value in values):
            self._fail(f"missing expression -- `{body}'")
        self._no_bss_data(name)
        self._emit("data", width * len(values), body, width=width, values=values)

    def _d_inst(self, name: str, operands: str, body: str) -> None:
        values = tuple(self._local_references(value) for value in split_operands(operands))
        if not values or any(not value for value in values):
            self._fail(f"missing expression -- `{body}'")
        if self._current.size % 4:
            self._align(4, bytes(1), None, body, False)
        self._current.align = max(self._current.align, 4)
        self._emit("inst", 4 * len(values), body, width=4, values=values)

    def _d_ascii(self, name: str, operands: str, body: str) -> None:
        try:
            strings = parse_strings(operands)
        except ValueError as err:
            self._fail(str(err))
        terminator = b"" if name == ".ascii" else b"\0"
        data = b"".join(string + terminator for string in strings)
        if data:
            self._no_bss_data(name)
            self._emit("fill", len(data), body, data=data)

    def _d_space(self, name: str, operands: str, body: str) -> None:
        parts = split_operands(operands)
        if not parts or not parts[0] or len(parts) > 2:
            self._fail(f"bad arguments -- `{body}'")
        message = ".space, .nops or .fill specifies non-absolute value"
        size = self._absolute_now(parts[0], message)
        fill = self._absolute_now(parts[1], message) & 0xFF if len(parts) > 1 else 0
        if size < 0:
            self.warnings.append(f"{self._origin.location}: Warning: .space repeat count "
                                 "is negative, ignored")
            return
        if fill and self._current.kind == "bss":
            self._no_bss_data(name)
        if size:
            self._reserve(size)
            self._emit("fill", size, body, data=bytes([fill]) * size if fill else bytes(size))

    def _d_fill(self, name: str, operands: str, body: str) -> None:
        parts = split_operands(operands)
        if not parts or not parts[0] or len(parts) > 3:
            self._fail(f"bad arguments -- `{body}'")
        message = ".space, .nops or .fill specifies non-absolute value"
        repeat = self._absolute_now(parts[0], message)
        size = self._absolute_now(parts[1], message) if len(parts) > 1 and parts[1] else 1
        value = self._absolute_now(parts[2], message) if len(parts) > 2 else 0
        size = min(max(size, 0), 8)
        if repeat <= 0 or size == 0:
            return
        if value and self._current.kind == "bss":
            self._no_bss_data(name)
        # GNU as writes the low 4 bytes of the value; wider repetitions get zeros above.
        word = (value & 0xFFFFFFFF).to_bytes(8, "little")[:size]
        total = repeat * size
        self._reserve(total)
        self._emit("fill", total, body, data=word * repeat)

    def _d_align(self, name: str, operands: str, body: str) -> None:
        parts = split_operands(operands)
        if not parts or not parts[0]:
            self._fail(f"missing alignment -- `{body}'")
        if len(parts) > 3:
            self._fail(f"bad arguments -- `{body}'")
        message = "alignment not an absolute expression"
        argument = self._absolute_now(parts[0], message)
        if name.startswith(".balign"):
            if argument <= 0 or argument & (argument - 1):
                self._fail(f"alignment not a power of 2 -- `{body}'")
            alignment = argument
        else:
            if not 0 <= argument <= 30:
                self._fail(f"alignment too large: 2^{argument} -- `{body}'")
            alignment = 1 << argument
        fill_width = {"w": 2, "l": 4}.get(name[-1], 1)
        fill: bytes | None = None
        if len(parts) > 1 and parts[1]:
            value = self._absolute_now(parts[1], message)
            fill = (value & ((1 << (8 * fill_width)) - 1)).to_bytes(fill_width, "little")
        maximum = self._absolute_now(parts[2], message) if len(parts) > 2 and parts[2] else None
        self._align(alignment, fill, maximum, body, True)

    def _d_org(self, name: str, operands: str, body: str) -> None:
        parts = split_operands(operands)
        if not parts or not parts[0]:
            self._fail(f"missing expression -- `{body}'")
        expression = self._local_references(parts[0])
        try:
            value = evaluate(expression, self._resolve_now)
        except (UndefinedSymbol, NotAbsolute):
            self._fail("attempt to .org to a non-constant location")
        except ExpressionError as err:
            self._fail(str(err))
        if value.section is not None and value.section is not self._current:
            self._fail("attempt to move .org into another section")
        fill = self._absolute_now(parts[1], "bad fill") & 0xFF if len(parts) > 1 else 0
        target = value.offset
        if target < self._current.size:
            self._fail("attempt to move .org backwards")
        padding = target - self._current.size
        if padding:
            self._reserve(padding)
            self._emit("fill", padding, body, data=bytes([fill]) * padding)

    def _d_global(self, name: str, operands: str, body: str) -> None:
        for symbol in split_operands(operands):
            if not SYMBOL.match(symbol):
                self._fail(f"invalid symbol name `{symbol}' -- `{body}'")
            if name == ".local":
                # Local binding: it stays out of the global list (nm: lower case).
                if symbol in self.globals:
                    self.globals.remove(symbol)
                continue
            if name == ".weak":
                self.weak.add(symbol)
            if symbol not in self.globals:
                self.globals.append(symbol)

    def _d_type(self, name: str, operands: str, body: str) -> None:
        parts = split_operands(operands)
        if len(parts) != 2 or not SYMBOL.match(parts[0]):
            self._fail(f"expected `symbol, type' -- `{body}'")

    def _d_size(self, name: str, operands: str, body: str) -> None:
        parts = split_operands(operands)
        if len(parts) != 2 or not SYMBOL.match(parts[0]) or not parts[1]:
            self._fail(f"expected `symbol, size' -- `{body}'")
        marker = Item(self._seq, self._current, self._current.size, 0, "marker", self._origin,
                      body)
        self.sizes.append((parts[0], self._local_references(parts[1]), marker))

    def _d_error(self, name: str, operands: str, body: str) -> None:
        if name == ".err":
            self._fail(".err encountered")
        message = operands
        try:
            strings = parse_strings(operands) if operands else []
            message = b"".join(strings).decode("utf-8", "replace") if strings else message
        except ValueError:
            pass
        self._fail(message or ".error directive invoked in source file")

    def _d_warning(self, name: str, operands: str, body: str) -> None:
        try:
            text = b"".join(parse_strings(operands)).decode("utf-8", "replace")
        except ValueError:
            text = operands
        self.warnings.append(f"{self._origin.location}: Warning: "
                             f"{text or '.warning directive invoked in source file'}")

    def _d_end(self, name: str, operands: str, body: str) -> bool:
        return True

    def _d_req(self, name: str, operands: str, body: str) -> None:
        self._fail(f"`.req' needs a name before it (alias .req register) -- `{body}'")

    def _d_unreq(self, name: str, operands: str, body: str) -> None:
        self._aliases.pop(operands.strip().lower(), None)

    def _d_unsupported(self, name: str, operands: str, body: str) -> None:
        what = _UNSUPPORTED.get(name, name)
        self._fail(f"{what} not supported by bootemu's assembler -- `{body}'")

    def _substitute_aliases(self, operands: str) -> str:
        if not self._aliases:
            return operands

        def alias(match: re.Match[str]) -> str:
            return self._aliases.get(match.group(0).lower(), match.group(0))

        return re.sub(r"(?<![\w.$])[A-Za-z_]\w*(?![\w.$])", alias, operands)


DATA_DIRECTIVES: dict[str, Callable[..., object]] = {
    ".inst": DataReading._d_inst,
    ".ascii": DataReading._d_ascii, ".asciz": DataReading._d_ascii,
    ".string": DataReading._d_ascii,
    ".space": DataReading._d_space, ".skip": DataReading._d_space,
    ".zero": DataReading._d_space,
    ".fill": DataReading._d_fill,
    ".align": DataReading._d_align, ".p2align": DataReading._d_align,
    ".p2alignw": DataReading._d_align, ".p2alignl": DataReading._d_align,
    ".balign": DataReading._d_align, ".balignw": DataReading._d_align,
    ".balignl": DataReading._d_align,
    ".org": DataReading._d_org,
    ".globl": DataReading._d_global, ".global": DataReading._d_global,
    ".weak": DataReading._d_global, ".local": DataReading._d_global,
    ".type": DataReading._d_type, ".size": DataReading._d_size,
    ".error": DataReading._d_error, ".err": DataReading._d_error,
    ".warning": DataReading._d_warning,
    ".end": DataReading._d_end,
    ".req": DataReading._d_req, ".unreq": DataReading._d_unreq,
    **dict.fromkeys(_UNSUPPORTED, DataReading._d_unsupported),
}
