"""Statement syntax: lines into statements, operands, string literals, names.

GNU as separates statements with ``;`` and ends a line at ``//``, splits
operands at commas outside brackets, and reads C-style string literals;
these helpers do the same, minding strings throughout.
"""

from __future__ import annotations

import re
from collections.abc import Callable

__all__ = ["LABEL", "SYMBOL", "outside_strings", "parse_strings", "split_operands",
           "split_statements"]

# A label at the start of a statement (``name:`` or a numeric ``1:``), and a
# symbol name as GNU as spells one.
LABEL = re.compile(r"\s*([A-Za-z_.$][\w.$]*|\d+)\s*:(?!:)")
SYMBOL = re.compile(r"[A-Za-z_.$][\w.$]*\Z")


def split_statements(text: str) -> list[str]:
    """Split a line at ``;`` separators and drop a ``//`` comment, minding strings."""
    parts: list[str] = []
    current: list[str] = []
    in_string = False
    index = 0
    while index < len(text):
        char = text[index]
        if in_string:
            current.append(char)
            if char == "\\" and index + 1 < len(text):
                current.append(text[index + 1])
                index += 1
            elif char == '"':
                in_string = False
        elif char == '"':
            in_string = True
            current.append(char)
        elif char == ";":
            parts.append("".join(current))
            current = []
        elif text.startswith("//", index):
            break
        else:
            current.append(char)
        index += 1
    parts.append("".join(current))
    return [part.strip() for part in parts if part.strip()]


def split_operands(text: str) -> list[str]:
    """Split operands at top-level commas (not inside ``[]``, ``{}``, ``()`` or strings)."""
    parts: list[str] = []
    depth = 0
    current: list[str] = []
    in_string = False
    for char in text:
        if in_string:
            current.append(char)
            if char == '"':
                in_string = False
            continue
        if char == '"':
            in_string = True
        elif char in "[{(":
            depth += 1
        elif char in "]})":
            depth = max(depth - 1, 0)
        elif char == "," and depth == 0:
            parts.append("".join(current).strip())
            current = []
            continue
        current.append(char)
    last = "".join(current).strip()
    if last or parts:
        parts.append(last)
    return parts


def outside_strings(text: str, function: Callable[[str], str]) -> str:
    """Apply ``function`` to the parts of ``text`` that are not string literals."""
    pieces = re.split(r'("(?:[^"\\]|\\.)*")', text)
    return "".join(piece if index % 2 else function(piece) for index, piece in enumerate(pieces))


_ESCAPE_CHARS = {"n": 10, "t": 9, "r": 13, "b": 8, "f": 12, "v": 11, "a": 7, "e": 27,
                 "\\": 92, '"': 34, "'": 39}


def parse_strings(text: str) -> list[bytes]:
    """The C-style string literals of ``.ascii "a", "b"``; raises ValueError when malformed."""
    strings: list[bytes] = []
    index = 0
    while True:
        while index < len(text) and text[index] in " \t":
            index += 1
        if index >= len(text) or text[index] != '"':
            raise ValueError("expected a string in double quotes")
        index += 1
        out = bytearray()
        while True:
            if index >= len(text):
                raise ValueError("missing closing `\"'")
            char = text[index]
            if char == '"':
                index += 1
                break
            if char == "\\" and index + 1 < len(text):
                nxt = text[index + 1]
                if nxt in "01234567":
                    digits = re.match(r"[0-7]{1,3}", text[index + 1:])
                    assert digits is not None
                    out.append(int(digits.group(0), 8) & 0xFF)
                    index += 1 + len(digits.group(0))
                    continue
                if nxt in "xX":
                    digits = re.match(r"[0-9a-fA-F]+", text[index + 2:])
                    if digits is None:
                        raise ValueError("bad escape \\x in string")
                    out.append(int(digits.group(0), 16) & 0xFF)
                    index += 2 + len(digits.group(0))
                    continue
                out.append(_ESCAPE_CHARS.get(nxt, ord(nxt) & 0xFF))
                index += 2
                continue
            out += char.encode("utf-8", "replace")
            index += 1
        strings.append(bytes(out))
        while index < len(text) and text[index] in " \t":
            index += 1
        if index >= len(text):
            return strings
        if text[index] != ",":
            raise ValueError("junk at end of line, first unrecognized character is "
                             f"`{text[index]}'")
        index += 1
