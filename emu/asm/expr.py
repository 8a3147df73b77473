"""GNU as expressions: tokens, operator precedence and section-relative values.

The assembler front-end evaluates every expression itself rather than letting
keystone do it, because keystone (LLVM) parses them with C precedence while
GNU as does not: ``1 << 2 + 3`` is 7 for GNU as and 32 for keystone, and GNU
as makes a true comparison -1, not 1.  The rules here were checked against
``aarch64-linux-gnu-as`` (binutils 2.40, ``gas/expr.c``):

* binary operators, from tightest to loosest: ``* / % << >>``, then
  ``| & ^ !`` (``a ! b`` is ``a | ~b``), then ``+ -``, then the comparisons
  ``== != <> < > <= >=``, then ``&&``, then ``||``; all left-associative;
* unary ``- ~ ! +`` bind tighter than any binary operator;
* arithmetic is on 64-bit two's-complement numbers: ``/`` and ``%`` are signed
  and truncate towards zero, ``>>`` is a logical shift, comparisons are signed
  and give -1 (true) or 0, ``&&`` and ``||`` give 1 or 0.

A value is either absolute or an offset into a section (a label before the
final layout is known); only the combinations GNU as accepts for constants
are allowed: relative ± absolute, and the difference of two offsets in the
same section.
"""

from __future__ import annotations

import re
import threading
from collections.abc import Callable, Hashable
from dataclasses import dataclass

__all__ = [
    "ExpressionError",
    "NotAbsolute",
    "UndefinedSymbol",
    "Value",
    "evaluate",
    "format_number",
    "parse_number",
    "symbols_in",
    "wrap64",
]

_MASK64 = (1 << 64) - 1


class ExpressionError(ValueError):
    """An expression that cannot be parsed or evaluated; the message reads like GNU as."""


class UndefinedSymbol(ExpressionError):
    """A symbol the expression needs is not defined (yet, or at all)."""

    def __init__(self, name: str) -> None:
        self.name = name
        super().__init__(f"undefined symbol `{name}'")


class NotAbsolute(ExpressionError):
    """The expression's value depends on where sections will be placed."""


def wrap64(value: int) -> int:
    """Reduce an integer to the signed 64-bit range, as GNU as's offsetT holds it."""
    value &= _MASK64
    return value - (1 << 64) if value >> 63 else value


@dataclass(frozen=True)
class Value:
    """An expression's value: absolute (``section is None``) or an offset in a section."""

    offset: int
    section: Hashable | None = None

    @property
    def absolute(self) -> bool:
        return self.section is None

    def require_absolute(self) -> int:
        if self.section is not None:
            raise NotAbsolute("expression is not a constant")
        return self.offset


Resolver = Callable[[str], Value]
"""Looks a symbol (or ``.``, the current location) up; raises UndefinedSymbol."""


# --------------------------------------------------------------------------
# Tokens

_TOKEN = re.compile(
    r"""
    (?P<space>\s+)
  | (?P<number>0[xX][0-9a-fA-F]+|0[bB][01]+|\d+)(?P<suffix>[uUlL]*)(?![\w.$])
  | (?P<char>'(?:\\.|[^\\]))
  | (?P<name>[A-Za-z_.$][\w.$]*)
  | (?P<op><<|>>|<=|>=|==|!=|<>|&&|\|\||[-+*/%&|^~!<>()])
    """,
    re.VERBOSE,
)

_ESCAPES = {"n": 10, "t": 9, "r": 13, "0": 0, "\\": 92, "'": 39, '"': 34, "b": 8, "f": 12}


# How deeply an evaluation may nest: parentheses, unary operators and symbols
# defined by other symbols (``.equ a1, a2``) all count.  Real sources stay in
# single digits; the cap turns a hostile chain into an error naming the line
# instead of a RecursionError (each level costs at most ~7 Python frames, so
# 100 levels stay well inside the interpreter's default limit of 1000).
MAX_EXPRESSION_DEPTH = 100
_depth = threading.local()


def parse_number(text: str) -> int:
    """A GNU as integer literal: decimal, 0x hex, 0b binary, or 0-prefixed octal.

    A literal that does not fit in 64 bits is an :class:`ExpressionError`: it
    would otherwise wrap silently (``0x10000000000000000`` becoming 0).
    """
    lower = text.lower()
    try:
        if lower.startswith("0x"):
            value = int(lower[2:], 16)
        elif lower.startswith("0b"):
            value = int(lower[2:], 2)
        elif len(lower) > 1 and lower[0] == "0":
            if any(digit in "89" for digit in lower):
                raise ExpressionError(f"invalid octal number `{text}'")
            value = int(lower[1:], 8)
        else:
            value = int(lower)
    except ValueError:
        # Python refuses decimal literals of more than 4300 digits: too big anyway.
        value = 1 << 64
    if value >> 64:
        shown = text if len(text) <= 40 else text[:37] + "..."
        raise ExpressionError(f"number `{shown}' does not fit in 64 bits")
    return value


def _tokens(text: str) -> list[tuple[str, str | int]]:
    tokens: list[tuple[str, str | int]] = []
    position = 0
    while position < len(text):
        match = _TOKEN.match(text, position)
        if match is None:
            raise ExpressionError(
                f"junk at end of line, first unrecognized character is `{text[position]}'")
        position = match.end()
        kind = match.lastgroup
        if kind == "space":
            continue
        if kind == "suffix" or match.group("number") is not None:
            tokens.append(("num", parse_number(match.group("number"))))
        elif kind == "char":
            body = match.group("char")[1:]
            tokens.append(("num", _ESCAPES.get(body[1], ord(body[1])) if body[0] == "\\"
                           else ord(body)))
        elif kind == "name":
            tokens.append(("name", match.group("name")))
        else:
            tokens.append(("op", match.group("op")))
    return tokens


def symbols_in(text: str) -> list[str]:
    """The symbol names an expression mentions (``.`` included), in order; [] if unparsable."""
    try:
        return [str(value) for kind, value in _tokens(text) if kind == "name"]
    except ExpressionError:
        return []


# --------------------------------------------------------------------------
# Parsing and evaluation (precedence climbing over GNU's operator ranks)

_RANKS = {
    "*": 5, "/": 5, "%": 5, "<<": 5, ">>": 5,
    "|": 4, "&": 4, "^": 4, "!": 4,
    "+": 3, "-": 3,
    "==": 2, "!=": 2, "<>": 2, "<": 2, ">": 2, "<=": 2, ">=": 2,
    "&&": 1,
    "||": 0,
}


class _Parser:
    def __init__(self, text: str, resolve: Resolver) -> None:
        self.text = text
        self.tokens = _tokens(text)
        self.position = 0
        self.resolve = resolve

    def peek(self) -> tuple[str, str | int] | None:
        return self.tokens[self.position] if self.position < len(self.tokens) else None

    def take(self) -> tuple[str, str | int]:
        token = self.tokens[self.position]
        self.position += 1
        return token

    def parse(self) -> Value:
        if not self.tokens:
            raise ExpressionError("missing expression")
        value = self.binary(0)
        if self.position < len(self.tokens):
            leftover = self.tokens[self.position][1]
            if leftover == ")":
                raise ExpressionError("missing '('")
            raise ExpressionError(
                f"junk at end of line, first unrecognized character is `{str(leftover)[0]}'")
        return value

    def binary(self, minimum: int) -> Value:
        left = self.unary()
        while True:
            token = self.peek()
            if token is None or token[0] != "op" or token[1] not in _RANKS:
                return left
            rank = _RANKS[str(token[1])]
            if rank < minimum:
                return left
            self.take()
            right = self.binary(rank + 1)
            left = _apply(str(token[1]), left, right)

    def unary(self) -> Value:
        # Counted per thread across nested evaluations: a symbol's definition is
        # evaluated from inside the expression that names it.
        depth = getattr(_depth, "value", 0)
        if depth >= MAX_EXPRESSION_DEPTH:
            raise ExpressionError(f"expression or symbol definitions nested more than "
                                  f"{MAX_EXPRESSION_DEPTH} deep (a chain of .equ/.set?)")
        _depth.value = depth + 1
        try:
            return self._unary()
        finally:
            _depth.value = depth

    def _unary(self) -> Value:
        token = self.peek()
        if token is None:
            raise ExpressionError("missing operand")
        kind, value = self.take()
        if kind == "num":
            assert isinstance(value, int)
            return Value(wrap64(value))
        if kind == "name":
            return self.resolve(str(value))
        if value == "(":
            inner = self.binary(0)
            closing = self.peek()
            if closing != ("op", ")"):
                raise ExpressionError("missing ')'")
            self.take()
            return inner
        if value in ("-", "~", "!", "+"):
            operand = self.unary()
            if value == "+":
                return operand
            number = operand.require_absolute()
            if value == "-":
                return Value(wrap64(-number))
            if value == "~":
                return Value(wrap64(~number))
            return Value(0 if number else 1)
        raise ExpressionError(f"syntax error in expression, unexpected `{value}'")


def _apply(op: str, left: Value, right: Value) -> Value:
    if op == "+":
        if left.section is not None and right.section is not None:
            raise NotAbsolute("invalid operands: both sides of '+' are section-relative")
        return Value(wrap64(left.offset + right.offset), left.section or right.section)
    if op == "-":
        if right.section is None:
            return Value(wrap64(left.offset - right.offset), left.section)
        if left.section == right.section:
            return Value(wrap64(left.offset - right.offset))
        raise NotAbsolute("invalid operands: difference of symbols in different sections")
    if op in ("==", "!=", "<>", "<", ">", "<=", ">=") and left.section == right.section:
        a, b = left.offset, right.offset
    else:
        a, b = left.require_absolute(), right.require_absolute()
    if op in ("*", "/", "%"):
        if op == "*":
            return Value(wrap64(a * b))
        if b == 0:
            raise ExpressionError("division by zero")
        quotient = abs(a) // abs(b) * (1 if (a < 0) == (b < 0) else -1)
        return Value(wrap64(quotient if op == "/" else a - quotient * b))
    if op in ("<<", ">>"):
        if not 0 <= b < 64:
            raise ExpressionError(f"shift count {b} out of range")
        return Value(wrap64(a << b) if op == "<<" else wrap64((a & _MASK64) >> b))
    if op == "|":
        return Value(a | b)
    if op == "&":
        return Value(a & b)
    if op == "^":
        return Value(a ^ b)
    if op == "!":
        return Value(wrap64(a | ~b))
    if op == "&&":
        return Value(1 if a and b else 0)
    if op == "||":
        return Value(1 if a or b else 0)
    comparisons: dict[str, Callable[[int, int], bool]] = {
        "==": lambda x, y: x == y, "!=": lambda x, y: x != y, "<>": lambda x, y: x != y,
        "<": lambda x, y: x < y, ">": lambda x, y: x > y,
        "<=": lambda x, y: x <= y, ">=": lambda x, y: x >= y,
    }
    return Value(-1 if comparisons[op](a, b) else 0)


def evaluate(text: str, resolve: Resolver) -> Value:
    """Evaluate a GNU as expression; symbols (and ``.``) are looked up with ``resolve``.

    Raises UndefinedSymbol for an unknown symbol, NotAbsolute when section
    offsets are combined in a way only a linker could resolve, and
    ExpressionError for anything malformed.
    """
    return _Parser(text, resolve).parse()


def format_number(value: int) -> str:
    """An integer as an assembler literal keystone reads the same way GNU as would."""
    return f"-{-value:#x}" if value < 0 else f"{value:#x}"
