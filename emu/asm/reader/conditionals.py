"""Conditional assembly: ``.if``, ``.ifdef``/``.ifndef``/``.ifnotdef``, ``.ifb``/``.ifnb``,
``.ifc``/``.ifnc``, ``.ifeqs``/``.ifnes``, ``.ifeq``/``.ifne``/``.ifgt``/``.ifge``/``.iflt``/
``.ifle``, ``.elseif``, ``.else`` and ``.endif``.

Conditionals are followed even inside a branch that is not taken (so that
each ``.endif`` closes its own ``.if``); only a taken branch's statements are
processed.
"""

from __future__ import annotations

from emu.asm.reader.state import Conditional, ReaderState
from emu.asm.reader.syntax import SYMBOL, split_operands

__all__ = ["CONDITIONALS", "ConditionalReading"]

CONDITIONALS = {".if", ".ifdef", ".ifndef", ".ifnotdef", ".ifb", ".ifnb", ".ifc", ".ifnc",
                ".ifeq", ".ifne", ".ifgt", ".ifge", ".iflt", ".ifle", ".ifeqs", ".ifnes",
                ".elseif", ".else", ".endif"}


class ConditionalReading(ReaderState):
    """The ``.if`` family (see the module docstring)."""

    @property
    def _active(self) -> bool:
        return not self._conditionals or self._conditionals[-1].active

    def _conditional(self, name: str, operands: str) -> None:
        stack = self._conditionals
        if name == ".endif":
            if not stack:
                self._fail('".endif" without ".if"')
            stack.pop()
            return
        if name in (".else", ".elseif"):
            if not stack:
                self._fail(f'"{name}" without matching ".if"')
            top = stack[-1]
            if top.else_seen:
                self._fail(f'"{name}" after ".else"' if name == ".elseif" else 'duplicate "else"')
            if name == ".else":
                top.else_seen = True
                top.active = top.parent_active and not top.taken
            else:
                condition = (top.parent_active and not top.taken
                             and self._condition(".if", operands))
                top.active = condition
            top.taken = top.taken or top.active
            return
        parent = self._active
        condition = parent and self._condition(name, operands)
        stack.append(Conditional(condition, condition, parent, self._origin, self._seq))

    def _condition(self, name: str, operands: str) -> bool:
        non_constant = f'non-constant expression in "{name}" statement'
        if name in (".if", ".ifne"):
            return self._absolute_now(operands, non_constant) != 0
        if name in (".ifeq", ".ifgt", ".ifge", ".iflt", ".ifle"):
            value = self._absolute_now(operands, non_constant)
            return {".ifeq": value == 0, ".ifgt": value > 0, ".ifge": value >= 0,
                    ".iflt": value < 0, ".ifle": value <= 0}[name]
        if name in (".ifdef", ".ifndef", ".ifnotdef"):
            symbol = operands.strip()
            if not SYMBOL.match(symbol):
                self._fail(f"invalid identifier for \"{name}\"")
            defined = symbol in self.labels or symbol in self.equates
            return defined if name == ".ifdef" else not defined
        if name in (".ifb", ".ifnb"):
            return (not operands.strip()) == (name == ".ifb")
        if name in (".ifc", ".ifnc", ".ifeqs", ".ifnes"):
            parts = split_operands(operands)
            if len(parts) != 2:
                self._fail(f'".{name[1:]}" needs two operands separated by a comma')
            quote = '"' if name in (".ifeqs", ".ifnes") else "'"
            left, right = (part.strip() for part in parts)
            if quote == '"' or left.startswith("'"):
                left, right = left.strip(quote), right.strip(quote)
            return (left == right) == (name in (".ifc", ".ifeqs"))
        self._fail(f"unknown pseudo-op: `{name}'")
        return False
