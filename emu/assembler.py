"""Keystone front-end: preprocess, assemble, recover symbols and source lines.

The pipeline is ``cpp`` (C preprocessor, line markers kept) → statements with
their source locations → a keystone source with a few rewrites → keystone, run
in a child process → a :class:`Program`.

Keystone gives back bytes only, and lacks a few things GNU as has, so the
front-end adds them around it:

* numeric local labels (``1:``, ``b 1b``, ``cbz x0, 2f``) are rewritten to
  unique named labels with GNU semantics;
* every label's address, and the address of every source statement, is read
  back in the same keystone pass: each statement gets a synthetic label and a
  table of ``.quad label`` entries is appended after the program (after a
  ``.ltorg``, so the literal pool lands where keystone would put it anyway) and
  cut off again;
* ``.error "message"`` (which keystone silently ignores) fails the assembly
  with that message;
* keystone aborts or crashes on some inputs (DESIGN.md §3), so it runs in a
  child process; a failure is located by assembling variants of the program
  (bisection over the statements) and reported as ``file:line: message``.
"""

from __future__ import annotations

import ast
import bisect
import functools
import json
import operator
import re
import shutil
import signal
import subprocess
import sys
import tempfile
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

__all__ = [
    "AssemblyError",
    "Program",
    "SourceLocation",
    "assemble_file",
    "assemble_text",
    "eval_c_integer",
    "parse_define",
]

_CHILD_SCRIPT = Path(__file__).with_name("_keystone_child.py")
# Every name the front-end invents starts with this, so it never clashes with a
# user's label and is easy to drop from the symbol table.
_PREFIX = "__bootemu_"
_LINK_SENTINEL = _PREFIX + "link_address__"
_KEYSTONE_TIMEOUT = 120.0
_MASK64 = (1 << 64) - 1


@dataclass(frozen=True)
class SourceLocation:
    """A line of a source file, as the user named the file."""

    file: str
    line: int

    def __str__(self) -> str:
        return f"{self.file}:{self.line}"


class AssemblyError(Exception):
    """A source that cannot be assembled: a user's mistake, never a traceback.

    ``str()`` gives ``file:line: message``, or ``file: message`` when no line
    is known, in the style of GNU as.
    """

    def __init__(
        self, message: str, location: SourceLocation | None, *, file: str | None = None
    ) -> None:
        self.message = message
        self.location = location
        self.file = location.file if location is not None else file
        super().__init__(str(self))

    def __str__(self) -> str:
        if self.location is not None:
            return f"{self.location}: {self.message}"
        if self.file:
            return f"{self.file}: {self.message}"
        return self.message


@dataclass
class Program:
    """An assembled program: bytes at a link address, symbols and source lines."""

    code: bytes
    base: int
    symbols: dict[str, int]
    lines: list[tuple[int, SourceLocation]]
    defines: dict[str, str]
    source: str
    # End address (exclusive) of each entry of ``lines``; empty means each entry
    # runs up to the next one.  Needed because bytes keystone adds on its own (a
    # literal pool at the end of the input) belong to no statement.
    line_ends: list[int] = field(default_factory=list, repr=False)

    @property
    def end(self) -> int:
        """Link address just past the last byte of ``code``."""
        return self.base + len(self.code)

    def location_of(self, address: int) -> SourceLocation | None:
        """The source statement that emitted the byte at a link address."""
        index = bisect.bisect_right(self.lines, address, key=operator.itemgetter(0)) - 1
        if index < 0 or not self.base <= address < self.end:
            return None
        if self.line_ends:
            end = self.line_ends[index]
        elif index + 1 < len(self.lines):
            end = self.lines[index + 1][0]
        else:
            end = self.end
        return self.lines[index][1] if address < end else None

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


# --------------------------------------------------------------------------
# Definitions and C integer expressions


_IDENTIFIER = re.compile(r"[A-Za-z_]\w*\Z", re.ASCII)


def parse_define(text: str) -> tuple[str, str]:
    """Split a ``-D`` argument, ``NAME=VALUE`` or ``NAME`` (meaning ``NAME=1``)."""
    name, equals, value = text.partition("=")
    name = name.strip()
    if not _IDENTIFIER.match(name):
        raise ValueError(
            f"invalid definition {text!r}: expected NAME or NAME=VALUE, "
            "NAME being a C identifier (letters, digits, underscores)"
        )
    return name, (value if equals else "1")


_C_INTEGER = re.compile(
    r"(?<![\w.])(0[xX][0-9a-fA-F]+|0[bB][01]+|\d+)(?:[uU](?:ll|LL|l|L)?|(?:ll|LL|l|L)[uU]?)?(?![\w.])"
)


def _python_literal(match: re.Match[str]) -> str:
    digits = match.group(1)
    # C's octal 017 is Python's 0o17; a lone 0 stays 0.
    if len(digits) > 1 and digits[0] == "0" and digits[1].isdigit():
        return "0o" + digits[1:]
    return digits


def eval_c_integer(text: str) -> int:
    """Value of a C integer constant expression, as an unsigned 64-bit number.

    Accepts numbers (decimal, hex, octal, binary) with optional ``U``/``L``
    suffixes, ``+ - * / % << >> & | ^ ~`` and parentheses, which is what
    layout headers use.  Evaluated over the parsed tree, never with ``eval``.
    Raises ``ValueError`` for anything else.
    """
    converted = _C_INTEGER.sub(_python_literal, text.strip())
    try:
        tree = ast.parse(converted, mode="eval")
    except SyntaxError:
        raise ValueError(f"not an integer expression: {text.strip()!r}") from None

    def value(node: ast.AST) -> int:
        if isinstance(node, ast.Constant) and type(node.value) is int:
            return node.value
        if isinstance(node, ast.UnaryOp) and isinstance(node.op, ast.USub | ast.UAdd | ast.Invert):
            operand = value(node.operand)
            if isinstance(node.op, ast.USub):
                return -operand
            return ~operand if isinstance(node.op, ast.Invert) else operand
        if isinstance(node, ast.BinOp):
            left, right = value(node.left), value(node.right)
            return binary(node.op, left, right)
        raise ValueError(f"not an integer expression: {text.strip()!r}")

    def binary(op: ast.operator, left: int, right: int) -> int:
        simple: dict[type[ast.operator], Callable[[int, int], int]] = {
            ast.Add: operator.add,
            ast.Sub: operator.sub,
            ast.Mult: operator.mul,
            ast.BitAnd: operator.and_,
            ast.BitOr: operator.or_,
            ast.BitXor: operator.xor,
        }
        if type(op) in simple:
            return simple[type(op)](left, right)
        if isinstance(op, ast.LShift | ast.RShift):
            # Bounded so that a typo like 1 << 100000000 cannot eat memory.
            if not 0 <= right < 64:
                raise ValueError(f"shift count {right} out of range in {text.strip()!r}")
            return left << right if isinstance(op, ast.LShift) else (left & _MASK64) >> right
        if isinstance(op, ast.Div | ast.Mod):
            if right == 0:
                raise ValueError(f"division by zero in {text.strip()!r}")
            # C divides towards zero; Python's // rounds down.
            quotient = abs(left) // abs(right) * (1 if (left < 0) == (right < 0) else -1)
            return quotient if isinstance(op, ast.Div) else left - quotient * right
        raise ValueError(f"not an integer expression: {text.strip()!r}")

    return value(tree.body) & _MASK64


# --------------------------------------------------------------------------
# Preprocessing


@dataclass
class _Preprocessed:
    """The C preprocessor's output, split into source lines."""

    lines: list[tuple[SourceLocation, str]]
    defines: dict[str, str]
    link_address: str | None  # LINK_ADDRESS fully expanded, None when not defined


_LINE_MARKER = re.compile(r'#\s*(\d+)\s+"((?:[^"\\]|\\.)*)"')
_DEFINE_LINE = re.compile(r"#define\s+(\w+)(\([^)]*\))?\s?(.*)\Z")
_CPP_DIAGNOSTIC = re.compile(
    r"^(?P<file>.+?):(?P<line>\d+):(?:\d+:)?\s*(?:fatal error|error):\s*(?P<message>.*)$",
    re.MULTILINE,
)


def _unescape_marker_name(name: str) -> str:
    return re.sub(r"\\(.)", r"\1", name)


def _find_cpp() -> str:
    cpp = shutil.which("cpp")
    if cpp is None:
        raise AssemblyError(
            "the C preprocessor 'cpp' was not found on PATH; it is needed to "
            "preprocess assembly sources (on Debian: apt-get install cpp)",
            None,
        )
    return cpp


def _preprocess(
    main: str,
    rename: Mapping[str, str],
    include_dirs: Sequence[str | Path],
    defines: Mapping[str, str],
) -> _Preprocessed:
    """Run cpp on ``main`` and map every output line back to its file and line.

    cpp reads a two-line wrapper from stdin: an ``#include`` of the main file
    (so cpp names it as given and searches includes from its directory) and a
    sentinel line that expands ``LINK_ADDRESS`` after the whole source was read.
    ``-dD`` keeps ``#define`` lines in place, so the macros come out of the same
    pass; ``-undef`` keeps host macros such as ``linux`` from rewriting tokens.
    """
    display = rename.get(main, main)
    if '"' in main or "\n" in main:
        raise AssemblyError("source file names with quotes or newlines are not supported", None,
                            file=display)
    command = [_find_cpp(), "-x", "assembler-with-cpp", "-undef", "-nostdinc", "-dD"]
    command += [f"-I{directory}" for directory in include_dirs]
    for name, value in defines.items():
        if not _IDENTIFIER.match(name):
            raise AssemblyError(f"invalid macro name {name!r} in definitions", None, file=display)
        command.append(f"-D{name}={value}")
    command.append("-")
    wrapper = f'#include "{main}"\n{_LINK_SENTINEL} LINK_ADDRESS\n'
    result = subprocess.run(command, input=wrapper, capture_output=True, text=True)
    if result.returncode != 0:
        raise _cpp_error(result.stderr, rename, display)

    lines: list[tuple[SourceLocation, str]] = []
    macros: dict[str, str] = {}
    sentinel_text: str | None = None
    current_file, next_line = "<stdin>", 1
    for raw in result.stdout.splitlines():
        marker = _LINE_MARKER.match(raw)
        if marker:
            current_file = _unescape_marker_name(marker.group(2))
            next_line = int(marker.group(1))
            continue
        line_number = next_line
        next_line += 1
        if raw.startswith(("#define ", "#undef ")):
            if current_file != "<built-in>":
                _record_macro(raw, macros)
            continue
        if current_file in ("<built-in>", "<command-line>"):
            continue
        if current_file == "<stdin>":
            if raw.startswith(_LINK_SENTINEL):
                sentinel_text = raw[len(_LINK_SENTINEL):].strip()
            continue
        lines.append((SourceLocation(rename.get(current_file, current_file), line_number), raw))
    link = sentinel_text if "LINK_ADDRESS" in macros else None
    return _Preprocessed(lines=lines, defines=macros, link_address=link)


def _record_macro(raw: str, macros: dict[str, str]) -> None:
    if raw.startswith("#undef "):
        macros.pop(raw.split()[1], None)
        return
    match = _DEFINE_LINE.match(raw)
    if match:
        name, parameters, replacement = match.groups()
        # Function-like macros keep their parameter list in front of the body.
        macros[name] = f"{parameters} {replacement}".strip() if parameters else replacement


def _cpp_error(stderr: str, rename: Mapping[str, str], display: str) -> AssemblyError:
    match = _CPP_DIAGNOSTIC.search(stderr)
    if match is None:
        detail = next((line for line in stderr.splitlines() if line.strip()), "cpp failed")
        return AssemblyError(f"preprocessor: {detail.strip()}", None, file=display)
    file = match.group("file")
    message = match.group("message").strip()
    if file == "<stdin>":
        # Only the wrapper's #include of the main file can fail there.
        return AssemblyError(f"cannot read the source ({message})", None, file=display)
    return AssemblyError(message, SourceLocation(rename.get(file, file), int(match.group("line"))))


# --------------------------------------------------------------------------
# Statements


@dataclass
class _Statement:
    """One assembler statement (``;`` separates several on a line)."""

    location: SourceLocation
    labels: list[str]
    body: str
    mnemonic: str  # first word of the body, lower case; '' for a label-only statement
    context: str  # "top", "macro" (inside a .macro definition) or "rept" (.rept/.irp body)
    conditional: bool  # inside an .if block
    unit: int  # index of the top-level statement or block it belongs to
    error_message: str | None = None  # set for a rewritten .error/.err


_LABEL = re.compile(r"\s*([A-Za-z_.$][\w.$]*|\d+)\s*:(?!:)")
_NUMERIC_REFERENCE = re.compile(r"(?<![\w.$])(\d+)([bf])(?![\w.$])")
_CONDITIONAL_DIRECTIVES = (".if", ".else", ".elseif", ".endif")


def _split_statements(text: str) -> list[str]:
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


def _outside_strings(text: str, function: Callable[[str], str]) -> str:
    """Apply ``function`` to the parts of ``text`` that are not string literals."""
    pieces = re.split(r'("(?:[^"\\]|\\.)*")', text)
    return "".join(piece if index % 2 else function(piece) for index, piece in enumerate(pieces))


def _parse_statements(lines: list[tuple[SourceLocation, str]]) -> tuple[list[_Statement], set[str]]:
    """Statements with their block context; also the names of the macros defined."""
    statements: list[_Statement] = []
    macros: set[str] = set()
    macro_depth = repeat_depth = conditional_depth = 0
    unit = -1
    for location, text in lines:
        for piece in _split_statements(text):
            labels: list[str] = []
            rest = piece
            while match := _LABEL.match(rest):
                labels.append(match.group(1))
                rest = rest[match.end():]
            body = rest.strip()
            mnemonic = body.split(None, 1)[0].rstrip(",").lower() if body else ""
            if macro_depth == repeat_depth == conditional_depth == 0:
                unit += 1
            context = "macro" if macro_depth else ("rept" if repeat_depth else "top")
            statement = _Statement(location, labels, body, mnemonic, context,
                                   conditional_depth > 0, unit)
            statements.append(statement)
            # The opening directive belongs to the outer context, the closing one
            # to the inner context: both are assigned before the depth changes.
            if mnemonic == ".macro":
                if macro_depth == 0 and len(body.split(None, 1)) > 1:
                    macros.add(re.split(r"[\s,]+", body.split(None, 1)[1])[0].lower())
                macro_depth += 1
            elif mnemonic == ".endm":
                macro_depth = max(macro_depth - 1, 0)
            elif macro_depth == 0:
                if mnemonic in (".rept", ".irp", ".irpc"):
                    repeat_depth += 1
                elif mnemonic == ".endr":
                    repeat_depth = max(repeat_depth - 1, 0)
                elif mnemonic.startswith(".if"):
                    conditional_depth += 1
                elif mnemonic == ".endif":
                    conditional_depth = max(conditional_depth - 1, 0)
            if mnemonic == ".end" and context == "top":
                statements.pop()
                return statements, macros
    return statements, macros


def _rewrite_numeric_labels(statements: list[_Statement]) -> None:
    """Give numeric local labels unique names (GNU semantics), in place.

    ``Nb`` is the nearest definition of ``N`` at or before the statement (a
    label on the statement itself counts), ``Nf`` the nearest one after it.
    Keystone rejects numeric labels outright, and it has no ``\\@`` counter, so
    inside a macro or repetition body (expanded several times) they cannot be
    renamed and are reported instead.
    """
    definitions: dict[str, list[tuple[int, str]]] = {}
    for index, statement in enumerate(statements):
        for position, label in enumerate(statement.labels):
            if not label.isdigit():
                continue
            if statement.context != "top":
                raise AssemblyError(
                    f"numeric local label '{label}:' inside a .macro or .rept body is not "
                    "supported by the keystone front-end; use a named label",
                    statement.location,
                )
            ordinal = len(definitions.setdefault(label, []))
            name = f"{_PREFIX}n{label}_{ordinal}"
            definitions[label].append((index, name))
            statement.labels[position] = name

    for index, statement in enumerate(statements):
        if not statement.body or statement.mnemonic.startswith(".macro"):
            continue

        def resolve(match: re.Match[str], index: int = index,
                    statement: _Statement = statement) -> str:
            number, direction = match.groups()
            if statement.context != "top":
                raise AssemblyError(
                    f"numeric local label reference '{match.group(0)}' inside a .macro or "
                    ".rept body is not supported by the keystone front-end; use a named label",
                    statement.location,
                )
            candidates = definitions.get(number, [])
            if direction == "b":
                found = [name for where, name in candidates if where <= index]
                name = found[-1] if found else None
            else:
                name = next((name for where, name in candidates if where > index), None)
            if name is None:
                way = "backward" if direction == "b" else "forward"
                raise AssemblyError(
                    f"undefined local label '{match.group(0)}' (no {way} definition of "
                    f"'{number}:')", statement.location)
            return name

        # Only operands are rewritten: the mnemonic itself is never a reference.
        parts = re.match(r"(\S+)(\s*)(.*)", statement.body, re.S)
        assert parts is not None  # the body is not empty
        mnemonic, spacing, operands = parts.groups()
        if operands and _NUMERIC_REFERENCE.search(operands):
            rewritten = _outside_strings(
                operands, lambda text, resolve=resolve: _NUMERIC_REFERENCE.sub(resolve, text))
            statement.body = mnemonic + spacing + rewritten


def _rewrite_error_directives(statements: list[_Statement]) -> None:
    """Turn ``.error "text"`` / ``.err`` into a statement keystone rejects.

    Keystone accepts ``.error`` and ignores it, so a build-time assertion such
    as ``.if size > limit; .error "too big"; .endif`` would pass silently.  In a
    macro body it is left alone: there the message could not be tied to a line.
    """
    for index, statement in enumerate(statements):
        if statement.mnemonic in (".error", ".err") and statement.context != "macro":
            argument = statement.body[len(statement.mnemonic):].strip()
            if argument.startswith('"') and argument.endswith('"') and len(argument) >= 2:
                argument = argument[1:-1]
            statement.error_message = argument or ".err encountered"
            statement.body = f"{_PREFIX}error_{index}"


def _anchored(statement: _Statement) -> bool:
    """Whether a statement gets a synthetic label to recover its address."""
    return (
        statement.context == "top"
        and bool(statement.body)
        and not statement.mnemonic.startswith(_CONDITIONAL_DIRECTIVES)
        and statement.mnemonic != ".macro"
    )


def _user_labels(statements: list[_Statement]) -> list[str]:
    names: list[str] = []
    for statement in statements:
        for label in statement.labels:
            if not label.startswith(_PREFIX) and "\\" not in label and label not in names:
                names.append(label)
    return names


def _render_body(
    statements: list[_Statement],
    replace: Callable[[int, _Statement], str] | None = None,
    anchors: bool = False,
) -> list[str]:
    """Keystone source lines for the statements, each on its own line.

    ``replace`` may substitute a statement's body; ``anchors`` puts a
    synthetic label before every statement whose address is wanted.
    """
    out: list[str] = []
    for index, statement in enumerate(statements):
        if anchors and _anchored(statement):
            out.append(f"{_PREFIX}s{index}:")
        out.extend(f"{label}:" for label in statement.labels)
        body = replace(index, statement) if replace else statement.body
        if body:
            out.append(body)
    return out


def _symbol_table(names: list[str]) -> list[str]:
    # A label inside a false .if (or an uninvoked macro) is never defined:
    # .ifdef keeps the table one .quad per name either way.
    out: list[str] = []
    for name in names:
        out += [f".ifdef {name}", f".quad {name}", ".else", ".quad -1", ".endif"]
    return out


# --------------------------------------------------------------------------
# Keystone in a child process


@dataclass(frozen=True)
class _Failure:
    """Why one keystone run produced no bytes."""

    kind: str  # "error" (KsError), "crash" (abort or signal), "child" (the child itself broke)
    message: str
    errno: int = 0


# KsError numbers from 512 up are keystone's AArch64 operand-match codes,
# which it reports as "Unknown error"; these were matched against GNU as's
# messages for the same statements.
_KEYSTONE_ERRNO_MESSAGES = {
    144: "undefined symbol",
    520: "immediate out of range",
    527: "immediate out of range",
    528: "immediate out of range",
    547: "offset out of range",
    548: "offset out of range",
    561: "immediate cannot be encoded",
    563: "unknown system register",
}


@functools.lru_cache(maxsize=64)
def _run_keystone(source: str, base: int) -> bytes | _Failure:
    """Assemble ``source`` at ``base`` in a fresh child process."""
    request = json.dumps({"source": source, "base": base})
    try:
        result = subprocess.run(
            [sys.executable, "-I", str(_CHILD_SCRIPT)],
            input=request, capture_output=True, text=True, timeout=_KEYSTONE_TIMEOUT,
        )
    except subprocess.TimeoutExpired:
        return _Failure("crash", f"keystone did not finish within {_KEYSTONE_TIMEOUT:.0f} s")
    # LLVM's fatal errors print "LLVM ERROR: ..." and exit(1) or abort();
    # a plain crash is a signal with nothing printed.
    llvm = [line.strip() for line in result.stderr.splitlines() if "LLVM ERROR" in line]
    if llvm:
        return _Failure("crash", f"keystone crashed ({llvm[-1]})")
    if result.returncode < 0:
        try:
            cause = signal.Signals(-result.returncode).name
        except ValueError:
            cause = f"signal {-result.returncode}"
        return _Failure("crash", f"keystone crashed ({cause})")
    if result.returncode != 0:
        detail = result.stderr.strip().splitlines()
        return _Failure("child", f"keystone could not run: {detail[-1] if detail else 'no output'}")
    answer = json.loads(result.stdout)
    if answer["ok"]:
        return bytes.fromhex(answer["code"])
    errno = int(answer["errno"])
    text = re.sub(r"\s*\(KS_ERR_\w+\)", "", answer["message"]).strip()
    message = _KEYSTONE_ERRNO_MESSAGES.get(errno) or (text[:1].lower() + text[1:])
    return _Failure("error", message, errno)


def _locate_failure(statements: list[_Statement], macros: set[str], base: int,
                    failure: _Failure) -> tuple[_Statement | None, _Failure]:
    """Find the statement that makes keystone fail, by bisection.

    First over statements, neutralising every instruction from the k-th on
    (each becomes a 4-byte ``.word 0``, so no address moves and a forward
    branch out of range is found too).  If the program still fails with every
    instruction neutralised, the culprit is a directive or a macro invocation:
    then over top-level units, assembling the first k of them with the labels
    of the rest defined as stubs.
    """
    candidates = [index for index, s in enumerate(statements) if s.context != "macro" and s.body]

    def neutralised(count: int) -> str:
        kept = set(candidates[:count])

        def replace(index: int, statement: _Statement) -> str:
            if index in kept or statement.context == "macro":
                return statement.body
            if statement.error_message is not None:
                return ""
            if statement.mnemonic.startswith(".") or statement.mnemonic in macros:
                return statement.body
            return ".word 0"

        return "\n".join(_render_body(statements, replace)) + "\n"

    def search(lo: int, hi: int, attempt: Callable[[int], bytes | _Failure],
               failing: _Failure) -> tuple[int, _Failure]:
        # Invariant: attempt(lo) assembles, attempt(hi) fails with ``failing``.
        while hi - lo > 1:
            middle = (lo + hi) // 2
            outcome = attempt(middle)
            if isinstance(outcome, _Failure):
                hi, failing = middle, outcome
            else:
                lo = middle
        return hi, failing

    def run_neutralised(count: int) -> bytes | _Failure:
        return _run_keystone(neutralised(count), base)

    if not isinstance(run_neutralised(0), _Failure):
        whole = run_neutralised(len(candidates))
        if not isinstance(whole, _Failure):
            return None, failure
        hi, culprit_failure = search(0, len(candidates), run_neutralised, whole)
        return statements[candidates[hi - 1]], culprit_failure

    units = statements[-1].unit + 1 if statements else 0

    def truncated(count: int) -> bytes | _Failure:
        head = [s for s in statements if s.unit < count]
        later = [label for s in statements if s.unit >= count and s.context == "top"
                 for label in s.labels]
        stubs = [f"{label}:" for label in dict.fromkeys(later)]
        return _run_keystone("\n".join(_render_body(head) + stubs) + "\n", base)

    if isinstance(truncated(0), _Failure):
        return None, failure
    hi, culprit_failure = search(0, units, truncated, failure)
    first = next(s for s in statements if s.unit == hi - 1)
    return first, culprit_failure


def _describe(statement: _Statement | None, failure: _Failure) -> str:
    if statement is not None and statement.error_message is not None:
        return statement.error_message
    return failure.message


# --------------------------------------------------------------------------
# Assembly


def _assemble(
    main: str,
    rename: Mapping[str, str],
    include_dirs: Sequence[str | Path],
    defines: Mapping[str, str] | None,
    base: int | None,
) -> Program:
    display = rename.get(main, main)
    pre = _preprocess(main, rename, include_dirs, defines or {})
    if base is None:
        if pre.link_address is not None:
            try:
                base = eval_c_integer(pre.link_address)
            except ValueError as err:
                raise AssemblyError(f"LINK_ADDRESS: {err}", None, file=display) from None
        else:
            base = 0
    if not 0 <= base <= _MASK64:
        raise AssemblyError(f"link address {base:#x} is not a 64-bit address", None, file=display)

    statements, macros = _parse_statements(pre.lines)
    _rewrite_numeric_labels(statements)
    _rewrite_error_directives(statements)

    anchors = [index for index, statement in enumerate(statements) if _anchored(statement)]
    labels = _user_labels(statements)
    pool, end = f"{_PREFIX}pool", f"{_PREFIX}end"
    table_names = [f"{_PREFIX}s{index}" for index in anchors] + labels + [pool, end]
    source_lines = _render_body(statements, anchors=True)
    # The final .ltorg emits the literal pool exactly where keystone would put
    # it at the end of the input; the symbol table follows it.
    source_lines += [f"{pool}:", ".ltorg", f"{end}:", ".balign 8"]
    source_lines += _symbol_table(table_names)
    outcome = _run_keystone("\n".join(source_lines) + "\n", base)

    if isinstance(outcome, _Failure):
        if outcome.kind == "child":
            raise AssemblyError(outcome.message, None, file=display)
        statement, failure = _locate_failure(statements, macros, base, outcome)
        location = statement.location if statement is not None else None
        raise AssemblyError(_describe(statement, failure), location, file=display)

    table_size = 8 * len(table_names)
    if len(outcome) < table_size:
        raise AssemblyError("internal error: keystone output shorter than the symbol table",
                            None, file=display)
    raw_table = outcome[len(outcome) - table_size:]
    values = [int.from_bytes(raw_table[i:i + 8], "little") for i in range(0, table_size, 8)]
    addresses = dict(zip(table_names, values, strict=True))
    code_size = addresses[end] - base
    if not 0 <= len(outcome) - table_size - code_size < 8:
        raise AssemblyError("internal error: symbol table does not line up with the code",
                            None, file=display)
    code = outcome[:code_size]

    undefined = _MASK64
    symbols = {name: addresses[name] for name in labels if addresses[name] != undefined}

    # Each anchored statement owns the bytes up to the next anchor (or up to
    # the final literal pool); only those that emitted bytes are listed.
    starts = [(addresses[f"{_PREFIX}s{index}"], statements[index].location) for index in anchors]
    starts = [(address, location) for address, location in starts if address != undefined]
    boundaries = [address for address, _ in starts[1:]] + [addresses[pool]]
    lines: list[tuple[int, SourceLocation]] = []
    line_ends: list[int] = []
    for (address, location), stop in zip(starts, boundaries, strict=True):
        if stop > address:
            lines.append((address, location))
            line_ends.append(stop)

    return Program(code=code, base=base, symbols=symbols, lines=lines, defines=pre.defines,
                   source=display, line_ends=line_ends)


def assemble_file(
    path: str | Path,
    *,
    defines: Mapping[str, str] | None = None,
    include_dirs: Sequence[str | Path] = (),
    base: int | None = None,
) -> Program:
    """Preprocess and assemble a source file.

    Includes are searched in the source's directory, its ``include/``
    subdirectory, then ``include_dirs``.  ``base`` is the link address; when
    None the source's ``LINK_ADDRESS`` macro gives it, else 0.
    """
    name = str(path)
    source = Path(path)
    if not source.is_file():
        raise AssemblyError("cannot read the source (no such file)", None, file=name)
    directories = [source.parent, source.parent / "include", *include_dirs]
    return _assemble(name, {}, directories, defines, base)


def assemble_text(
    text: str,
    *,
    filename: str,
    defines: Mapping[str, str] | None = None,
    include_dirs: Sequence[str | Path] = (),
    base: int | None = None,
) -> Program:
    """Like :func:`assemble_file` for a source held in memory, named ``filename``."""
    directories = [Path(filename).parent, Path(filename).parent / "include", *include_dirs]
    with tempfile.TemporaryDirectory(prefix="bootemu-asm-") as scratch:
        # cpp needs a real file to name in its line markers and to resolve
        # includes relative to; its name is mapped back to ``filename``.
        temporary = Path(scratch) / (Path(filename).name or "source.S")
        temporary.write_text(text)
        return _assemble(str(temporary), {str(temporary): filename}, directories, defines, base)
