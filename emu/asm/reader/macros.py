"""Macros and repetitions: ``.macro``/``.endm``, ``.exitm``, ``.purgem``, ``.rept``/``.rep``,
``.irp``, ``.irpc`` and ``.endr``.

A definition's body is captured up to its matching ``.endm``/``.endr``;
expanding it pushes a frame of statements onto the input, with arguments
substituted as GNU as does (positional, keyword, ``:req``, ``:vararg`` and
default arguments, ``\\param``, ``&param``, ``\\@`` and ``\\()``).  Every
statement of an expansion keeps the location of the line that invoked the
macro and of its line in the macro's body.
"""

from __future__ import annotations

import re
from collections import deque
from collections.abc import Callable, Mapping, Sequence

from emu.asm.expr import ExpressionError, evaluate
from emu.asm.reader.items import ReadError
from emu.asm.reader.state import MAX_STATEMENTS, Frame, Macro, ReaderState
from emu.asm.reader.syntax import LABEL, split_operands, split_statements
from emu.asm.source import Origin

__all__ = ["MACRO_DIRECTIVES", "MacroReading"]

MAX_MACRO_DEPTH = 100  # GNU as's own limit ("macros nested too deeply")
# Bounds on what expansions produce, so that a macro passing its arguments on
# doubled (``m \a \a`` inside ``m``) fails at the line invoking it rather than
# growing 2^100-byte strings: real macro arguments are a few words, real
# expansions a few kilobytes.
MAX_MACRO_ARGUMENT_BYTES = 1 << 20
MAX_EXPANSION_BYTES = 16 << 20  # one expansion
MAX_EXPANDED_BYTES = 256 << 20  # all expansions of a source together
_REPEAT_OPENERS = (".rept", ".rep", ".irp", ".irpc")


class MacroReading(ReaderState):
    """Macro definitions, expansions and repetitions (see the module docstring)."""

    def _capture(self, opener: Callable[[str], bool], closer: str, what: str,
                 origin: Origin) -> list[tuple[Origin, str]]:
        """Statements up to the matching ``closer``, from the current input only."""
        frame = self._frames[-1]
        body: list[tuple[Origin, str]] = []
        depth = 1
        while frame.pieces:
            piece = frame.pieces.popleft()
            text = piece[1]
            stripped = text
            while match := LABEL.match(stripped):
                stripped = stripped[match.end():]
            word = stripped.strip().split(None, 1)[0].lower() if stripped.strip() else ""
            if opener(word):
                depth += 1
            elif word == closer:
                depth -= 1
                if depth == 0:
                    return body
            body.append(piece)
        raise ReadError(what, origin, self._seq)

    def _d_macro(self, name: str, operands: str, body: str) -> None:
        origin = self._origin
        match = re.match(r"([A-Za-z_.$][\w.$]*)\s*,?\s*(.*)\Z", operands, re.S)
        macro_name = match.group(1) if match else ""
        statements = self._capture(lambda word: word == ".macro", ".endm",
                                   f"unexpected end of file in macro `{macro_name}' definition",
                                   origin)
        if match is None:
            self._fail("Missing macro name")
        assert match is not None
        params = self._parameters(match.group(2), macro_name)
        key = macro_name.lower()
        if key in self._macros:
            self._fail(f"Macro `{macro_name}' was already defined")
        self._macros[key] = Macro(macro_name, params, statements, origin)

    def _parameters(self, text: str, macro_name: str) -> list[tuple[str, str, str]]:
        params: list[tuple[str, str, str]] = []
        index = 0
        text = text.strip()
        while index < len(text):
            match = re.match(r"\s*([A-Za-z_.$][\w.$]*)\s*", text[index:])
            if match is None:
                self._fail(f"Bad parameter list for macro `{macro_name}'")
            assert match is not None
            param = match.group(1)
            index += match.end()
            qualifier = ""
            qualified = re.match(r":\s*(\w+)\s*", text[index:])
            if qualified is not None:
                qualifier = qualified.group(1)
                if qualifier not in ("req", "vararg"):
                    self._fail(f"`{qualifier}' is not a valid parameter qualifier for "
                               f"`{param}' in macro `{macro_name}'")
                index += qualified.end()
            default = ""
            if index < len(text) and text[index] == "=":
                default, index = _macro_argument(text, index + 1)
            if any(existing == param for existing, _, _ in params):
                self._fail(f"A parameter named `{param}' already exists for macro "
                           f"`{macro_name}'")
            params.append((param, default, qualifier))
            if qualifier == "vararg":
                break
            index = _skip_comma(text, index)
        return params

    def _d_endm(self, name: str, operands: str, body: str) -> None:
        self.warnings.append(f"{self._origin.location}: Warning: .endm encountered without "
                             "preceding .macro")

    def _d_endr(self, name: str, operands: str, body: str) -> None:
        self.warnings.append(f"{self._origin.location}: Warning: .endr encountered without "
                             "preceding .rept, .irp, or .irpc")

    def _d_exitm(self, name: str, operands: str, body: str) -> None:
        while self._frames and self._frames[-1].kind != "macro":
            self._frames.pop()
        if not self._frames:
            self._fail(".exitm outside a macro")
        self._frames.pop()

    def _d_purgem(self, name: str, operands: str, body: str) -> None:
        for macro_name in split_operands(operands):
            if self._macros.pop(macro_name.lower(), None) is None:
                self.warnings.append(f"{self._origin.location}: Warning: Attempt to purge "
                                     f"non-existing macro `{macro_name}'")

    def _expand_macro(self, macro: Macro, operands: str, origin: Origin) -> None:
        depth = sum(1 for frame in self._frames if frame.kind == "macro")
        if depth >= MAX_MACRO_DEPTH:
            self._fail("macros nested too deeply")
        actuals: dict[str, str] = {}
        positional = iter(macro.params)
        keyword_seen = False
        index = 0
        text = operands.strip()
        while index < len(text):
            keyword = re.match(r"\s*([A-Za-z_.$][\w.$]*)\s*=(?!=)", text[index:])
            if keyword is not None:
                keyword_seen = True
                param = keyword.group(1)
                value, index = _macro_argument(text, index + keyword.end())
                if not any(p == param for p, _, _ in macro.params):
                    self._fail(f"Parameter named `{param}' does not exist for macro "
                               f"`{macro.name}'")
                actuals[param] = value
            else:
                if keyword_seen:
                    self._fail("can't mix positional and keyword arguments")
                spec = next(positional, None)
                if spec is None:
                    self._fail(f"too many positional arguments for macro `{macro.name}'")
                assert spec is not None
                if spec[2] == "vararg":
                    actuals[spec[0]] = text[index:].strip()
                    index = len(text)
                else:
                    value, index = _macro_argument(text, index)
                    actuals[spec[0]] = value
            index = _skip_comma(text, index)
        for param, _default, qualifier in macro.params:
            if qualifier == "req" and not actuals.get(param):
                self._fail(f"Missing value for required parameter `{param}' of macro "
                           f"`{macro.name}'")
        values = {param: (actuals.get(param) or default) for param, default, _ in macro.params}
        longest = max((len(value) for value in values.values()), default=0)
        if longest > MAX_MACRO_ARGUMENT_BYTES:
            self._fail(f"an argument of macro `{macro.name}' is longer than "
                       f"{MAX_MACRO_ARGUMENT_BYTES >> 20} MiB (runaway recursion?)")
        number = str(self._macro_number)
        self._macro_number += 1
        pieces: deque[tuple[Origin, str]] = deque()
        size = 0
        for body_origin, text_line in macro.body:
            # An upper bound before substituting: each backslash may bring in
            # the longest argument.
            size += len(text_line) + text_line.count("\\") * longest
            if size > MAX_EXPANSION_BYTES:
                self._fail(f"the expansion of macro `{macro.name}' would be larger than "
                           f"{MAX_EXPANSION_BYTES >> 20} MiB")
            expanded = _substitute(text_line, values, number)
            self._expanded_bytes += len(expanded)
            if self._expanded_bytes > MAX_EXPANDED_BYTES:
                self._fail(f"macro expansions produced more than {MAX_EXPANDED_BYTES >> 20} "
                           "MiB of text (runaway recursion?)")
            inner = Origin(origin.location, body_origin.body or body_origin.location,
                           body_origin.macro if body_origin.body else macro.name)
            for piece in split_statements(expanded):
                pieces.append((inner, piece))
        self._frames.append(Frame(pieces, "macro", macro.name))

    def _d_rept(self, name: str, operands: str, body: str) -> None:
        origin = self._origin
        statements = self._capture(lambda word: word in _REPEAT_OPENERS, ".endr",
                                   "REPT without ENDR (this .rept has no .endr)", origin)
        count = self._absolute_now(operands, "non-constant expression in \".rept\"")
        if count < 0:
            self.warnings.append(f"{origin.location}: Warning: negative count for REPT - "
                                 "ignored")
            count = 0
        # The statements the body reads, nested repetitions multiplied out: a
        # .rept 1000 of .rept 1000 of .rept 1000 fails here, at its line, not
        # after reading a million statements (most of a gigabyte) of it.
        if count * max(self._statements_in(statements), 1) > MAX_STATEMENTS:
            self._fail(f".rept {count} would expand to more than {MAX_STATEMENTS} statements"
                       " (with the repetitions and macros nested in it)")
        pieces: deque[tuple[Origin, str]] = deque()
        for _ in range(count):
            pieces.extend(statements)
        self._frames.append(Frame(pieces, "repeat"))

    def _statements_in(self, body: Sequence[tuple[Origin, str]],
                       sizes: dict[str, int] | None = None, depth: int = 0) -> int:
        """How many statements reading ``body`` would take, once nested
        ``.rept`` blocks are repeated and macros expanded (MAX_STATEMENTS + 1
        for any number above MAX_STATEMENTS), in one pass over it.

        An estimate made before expanding, to refuse a runaway nest early: a
        repeat count that cannot be evaluated now counts as 1, an ``.irp`` as
        one pass, a macro invoked recursively or nested more than
        MAX_MACRO_DEPTH deep as one statement, and the branches of conditionals
        all count.
        """
        cap = MAX_STATEMENTS + 1
        sizes = {} if sizes is None else sizes
        # For each repetition open at this point: the count so far around it,
        # and how many times it repeats.
        open_repetitions: list[tuple[int, int]] = []
        total = 0
        for _origin, text in body:
            word, operands = _word_and_operands(text)
            if word in _REPEAT_OPENERS:
                times = self._count_now(operands) if word in (".rept", ".rep") else 1
                open_repetitions.append((total + 1, times))
                total = 0
                continue
            if word == ".endr" and open_repetitions:
                around, times = open_repetitions.pop()
                total = min(around + times * total, cap)
                continue
            total += 1
            if word in self._macros:
                if word not in sizes:
                    sizes[word] = 1  # while it is counted: recursion counts as one
                    if depth < MAX_MACRO_DEPTH:
                        sizes[word] = self._statements_in(self._macros[word].body, sizes,
                                                          depth + 1)
                total = min(total + sizes[word], cap)
        while open_repetitions:  # unclosed: reading will fail at the .rept
            around, times = open_repetitions.pop()
            total = min(around + times * total, cap)
        return total

    def _count_now(self, operands: str) -> int:
        """A repeat count if it is a constant now, else 1 (for :meth:`_statements_in`)."""
        try:
            return max(int(operands, 0), 0)  # the usual case, without the evaluator
        except ValueError:
            pass
        try:
            value = evaluate(operands, self._resolve_now)
        except ExpressionError:
            return 1
        return 1 if value.section is not None else max(value.offset, 0)

    def _d_irp(self, name: str, operands: str, body: str) -> None:
        origin = self._origin
        statements = self._capture(lambda word: word in _REPEAT_OPENERS, ".endr",
                                   f"unexpected end of file in irp or irpc (this {name} has "
                                   "no .endr)", origin)
        match = re.match(r"\s*([A-Za-z_.$][\w.$]*)\s*(.*)\Z", operands, re.S)
        if match is None:
            self._fail("missing model parameter")
        assert match is not None
        param = match.group(1)
        rest = match.group(2).strip()
        if rest.startswith(","):
            rest = rest[1:].strip()
        values: list[str] = []
        if name == ".irpc":
            values = list(rest.strip('"').replace(" ", "")) if rest else [""]
        elif not rest:
            values = [""]
        else:
            index = 0
            while index < len(rest):
                value, index = _macro_argument(rest, index)
                values.append(value)
                index = _skip_comma(rest, index)
        pieces: deque[tuple[Origin, str]] = deque()
        for value in values:
            for piece_origin, text in statements:
                for piece in split_statements(_substitute(text, {param: value}, None)):
                    pieces.append((piece_origin, piece))
        self._frames.append(Frame(pieces, "repeat"))


def _word_and_operands(text: str) -> tuple[str, str]:
    """A statement's first word (lower case, after its labels) and the rest."""
    while match := LABEL.match(text):
        text = text[match.end():]
    parts = text.strip().split(None, 1)
    if not parts:
        return "", ""
    return parts[0].lower(), parts[1] if len(parts) > 1 else ""


def _skip_comma(text: str, index: int) -> int:
    while index < len(text) and text[index] in " \t":
        index += 1
    if index < len(text) and text[index] == ",":
        index += 1
    while index < len(text) and text[index] in " \t":
        index += 1
    return index


def _macro_argument(text: str, index: int) -> tuple[str, int]:
    """One macro argument as GNU as's ``get_any_string`` reads it: up to a comma or a
    blank outside brackets; a double-quoted argument loses its quotes."""
    while index < len(text) and text[index] in " \t":
        index += 1
    if index < len(text) and text[index] == '"':
        out: list[str] = []
        index += 1
        while index < len(text):
            char = text[index]
            if char == "\\" and index + 1 < len(text) and text[index + 1] == '"':
                out.append('"')
                index += 2
                continue
            if char == '"':
                index += 1
                if index < len(text) and text[index] == '"':
                    out.append('"')
                    index += 1
                    continue
                break
            out.append(char)
            index += 1
        return "".join(out), index
    out = []
    brackets: list[str] = []
    while index < len(text):
        char = text[index]
        if not brackets and (char in " \t,"):
            break
        if char in "([":
            brackets.append(char)
        elif char in ")]" and brackets and brackets[-1] == "([" [char == "]"]:
            brackets.pop()
        elif char in "\"'":
            end = text.find(char, index + 1)
            end = len(text) - 1 if end < 0 else end
            out.append(text[index:end + 1])
            index = end + 1
            continue
        out.append(char)
        index += 1
    return "".join(out), index


_SUBSTITUTION = re.compile(r"\\\(([^)]*)\)?|\\@|\\&|\\([A-Za-z_.$][\w.$]*)|&([A-Za-z_.$][\w.$]*)&?")


def _substitute(text: str, values: Mapping[str, str], number: str | None) -> str:
    """Expand ``\\param``, ``&param``, ``\\@`` and ``\\()`` in a macro or .irp body line."""

    def replace(match: re.Match[str]) -> str:
        whole = match.group(0)
        if whole.startswith("\\("):
            return match.group(1) or ""
        if whole == "\\@":
            return number if number is not None else whole
        if whole == "\\&":
            return whole
        name = match.group(2) or match.group(3)
        if name in values:
            return values[name]
        return whole

    return _SUBSTITUTION.sub(replace, text)


MACRO_DIRECTIVES: dict[str, Callable[..., object]] = {
    ".macro": MacroReading._d_macro, ".endm": MacroReading._d_endm,
    ".exitm": MacroReading._d_exitm, ".purgem": MacroReading._d_purgem,
    ".rept": MacroReading._d_rept, ".rep": MacroReading._d_rept,
    ".irp": MacroReading._d_irp, ".irpc": MacroReading._d_irp, ".endr": MacroReading._d_endr,
}
