"""Assembler front-end: C preprocessing, GNU as semantics, keystone isolated.

``assemble_file`` / ``assemble_text`` turn boot code written the way Xen's and
Linux's ``head.S`` are written into a :class:`Program`: bytes at a link
address, sections, a symbol table (with ``.size``), and the source file:line
of every instruction and datum.  The pipeline:

1. **C preprocessor.**  The system ``cpp`` (GCC's, in ``assembler-with-cpp``
   mode), run with the user's ``-I`` and ``-D``.  It is chosen over a Python
   preprocessor such as pcpp because it *is* the preprocessor of the GNU build
   the output must match byte for byte: its assembler mode treats ``#`` and
   ``'`` the way ``gcc -x assembler-with-cpp`` does (an immediate ``#4``, an
   apostrophe in a comment), which a C-only preprocessor does not, and its line
   markers map every output line back to its file:line.  ``-undef`` and
   ``-nostdinc`` keep the host's macros and headers out.
2. **Reading** (``emu.asm.reader``): macros, repetitions, conditionals,
   ``.include``, equates, sections and literal pools, with GNU as's rules, each
   statement laid out at an offset of its section.
3. **Encoding** (``emu.asm.encode``): sections placed in order (``.text*``,
   ``.rodata*``, ``.data*``, ``.bss*``, as a simple linker script would), every
   expression evaluated, PC-relative instructions and ``:lo12:`` operands
   resolved with GNU's range checks, and the remaining instructions, with
   numeric operands only, encoded by keystone in a child process
   (``emu.asm.keystone_runner``), so that keystone's aborts and crashes become
   :class:`KeystoneCrash` errors naming the statement.
4. **Caching** (``emu.asm.cache``): results, errors included, are kept by a
   hash of the preprocessed source, the link address, the definitions and the
   front-end's and keystone's versions, in memory and on disk; a file seen
   before is recognised without even running cpp.

Why keystone only encodes single instructions.  Keystone segfaults on a
section switch, aborts on ``:lo12:`` and on an out-of-range branch, encodes
``adrp`` from page 0 instead of the PC's page when the base is not 0, turns
``ldr x0, =small`` into ``mov``, evaluates expressions with C precedence and
has no numeric local labels.  Rewriting section switches into one keystone
stream, or assembling each section separately, would still leave labels,
fixups and ranges to keystone.  So the front-end does the assembler's own work
(layout of every section, every address, every expression, every PC-relative
field, GNU as's checks in GNU as's words) and keystone never sees a label or a
section: it gets one instruction at a time with numeric operands, which it
encodes correctly (tests/test_assembler_gnu.py compares 316 forms with GNU as
and lists what keystone alone gets wrong).  Every range is checked before
keystone sees anything, and what is left of keystone's failures (an unknown
crash) still only costs its child process.

Every error is an :class:`AssemblyError` reading ``file:line: message`` with
GNU as's wording where GNU as has one.
"""

from __future__ import annotations

import ast
import bisect
import dataclasses
import functools
import hashlib
import operator
import re
import shutil
import subprocess
import tempfile
import threading
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from emu.asm.cache import (
    DiskCache,
    MemoryCache,
    digest,
    file_digests,
    frontend_version,
    pack_bytes,
    unpack_bytes,
)
from emu.asm.encode import Encoded, Failure, encode_program, first_keystone_error
from emu.asm.keystone_runner import KeystoneUnavailable
from emu.asm.reader import Reader, ReadError
from emu.asm.source import AssemblyError, KeystoneCrash, Origin, SourceLocation

__all__ = [
    "AssemblyError",
    "KeystoneCrash",
    "Program",
    "ProgramSection",
    "SourceLocation",
    "assemble_file",
    "assemble_text",
    "clear_cache",
    "eval_c_integer",
    "parse_define",
]

# Every name the front-end invents starts with this, so it never clashes with a
# user's label.
_PREFIX = "__bootemu_"
_LINK_SENTINEL = _PREFIX + "link_address__"
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
    files: list[str]  # every file cpp read (for the cache)


_LINE_MARKER = re.compile(r'#\s*(\d+)\s+"((?:[^"\\]|\\.)*)"')
_DEFINE_LINE = re.compile(r"#define\s+(\w+)(\([^)]*\))?\s?(.*)\Z")
_CPP_DIAGNOSTIC = re.compile(
    r"^(?P<file>.+?):(?P<line>\d+):(?:\d+:)?\s*(?:fatal error|error):\s*(?P<message>.*)$",
    re.MULTILINE,
)
_CPP_PSEUDO_FILES = ("<stdin>", "<built-in>", "<command-line>")
_TARGET_MACROS = ("__aarch64__", "__AARCH64EL__")


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
    # -undef also drops the target's own macros; put back what
    # aarch64-linux-gnu-gcc defines for the architecture (the host cpp is not
    # an aarch64 one).  __ASSEMBLER__ stays: assembler mode defines it.
    command += [f"-D{name}=1" for name in _TARGET_MACROS]
    command += [f"-I{directory}" for directory in include_dirs]
    for name, value in defines.items():
        if not _IDENTIFIER.match(name):
            raise AssemblyError(f"invalid macro name {name!r} in definitions", None, file=display)
        command.append(f"-D{name}={value}")
    command.append("-")
    wrapper = f'#include "{main}"\n{_LINK_SENTINEL} LINK_ADDRESS\n'
    result = subprocess.run(command, input=wrapper.encode(), capture_output=True)
    # Undecodable bytes (a binary file) become U+FFFD and are reported by line.
    stdout = result.stdout.decode("utf-8", "replace")
    if result.returncode != 0:
        raise _cpp_error(result.stderr.decode("utf-8", "replace"), rename, display)

    lines: list[tuple[SourceLocation, str]] = []
    macros: dict[str, str] = {}
    files: dict[str, None] = {}
    sentinel_text: str | None = None
    current_file, next_line = "<stdin>", 1
    # Split on newlines only: str.splitlines() would also split at form feeds
    # and other control characters and put every later line number off.
    for raw in stdout.split("\n"):
        marker = _LINE_MARKER.match(raw)
        if marker:
            current_file = _unescape_marker_name(marker.group(2))
            next_line = int(marker.group(1))
            if current_file not in _CPP_PSEUDO_FILES:
                files[current_file] = None
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
    for name in _TARGET_MACROS:
        if name not in defines and macros.get(name) == "1":
            del macros[name]  # the compiler's, not the program's
    return _Preprocessed(lines=lines, defines=macros, link_address=link, files=list(files))


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
# Assembly


def _error(failure: ReadError | Failure) -> AssemblyError:
    origin: Origin | None = failure.origin
    crash = isinstance(failure, Failure) and failure.crash
    kind = KeystoneCrash if crash else AssemblyError
    if origin is None:
        return kind(failure.message, None)
    return kind(origin.describe(failure.message), origin.location)


def _build(pre: _Preprocessed, base: int, display: str, rename: Mapping[str, str],
           include_dirs: Sequence[str | Path]) -> tuple[Program, list[Path]]:
    """Read, lay out and encode the preprocessed source (no caching here)."""
    reader = Reader(include_dirs, rename)
    try:
        reader.read(pre.lines)
    except ReadError as failure:
        # GNU as reports errors in order; keystone may reject an instruction
        # read before the statement where reading stopped.
        try:
            earlier = first_keystone_error(reader, failure.seq)
        except KeystoneUnavailable:
            earlier = None
        error = _error(earlier if earlier is not None else failure)
        error.dependencies = reader.dependencies  # type: ignore[attr-defined]
        error.transient = bool(earlier and earlier.transient)  # type: ignore[attr-defined]
        raise error from None
    if not any(item.size and item.section.kind != "none" for item in reader.items):
        last = pre.lines[-1][0] if pre.lines else SourceLocation(display, 1)
        error = AssemblyError("nothing to assemble: the source has no instructions or data",
                              SourceLocation(last.file, 1))
        error.dependencies = reader.dependencies  # type: ignore[attr-defined]
        raise error
    try:
        encoded = encode_program(reader, base)
    except Failure as failure:
        error = _error(failure)
        if failure.origin is None:
            error = AssemblyError(failure.message, None, file=display)
        error.dependencies = reader.dependencies  # type: ignore[attr-defined]
        error.transient = failure.transient  # type: ignore[attr-defined]
        raise error from None
    except KeystoneUnavailable as err:
        raise AssemblyError(str(err), None, file=display) from None
    return _program(encoded, pre, display, reader), reader.dependencies


def _program(encoded: Encoded, pre: _Preprocessed, display: str, reader: Reader) -> Program:
    entries = []
    for item in encoded.items:
        if item.origin is None:
            continue
        start = item.section.address + item.offset  # type: ignore[operator]
        kind = "code" if id(item) in encoded.code_items else "data"
        entries.append((start, start + item.size, item.origin.location, item.text, kind))
    entries.sort(key=operator.itemgetter(0))
    code_ranges: list[tuple[int, int]] = []
    for item in encoded.items:
        if id(item) not in encoded.code_items:
            continue
        start = item.section.address + item.offset  # type: ignore[operator]
        if code_ranges and code_ranges[-1][1] == start:
            code_ranges[-1] = (code_ranges[-1][0], start + item.size)
        else:
            code_ranges.append((start, start + item.size))
    code_ranges.sort()
    sections = [ProgramSection(section.name, section.address, section.size,  # type: ignore[arg-type]
                               section.kind, section.flags, section.align)
                for section in encoded.sections]
    return Program(
        code=bytes(encoded.code), base=encoded.base, symbols=encoded.symbols,
        lines=[(start, location) for start, _end, location, _text, _kind in entries],
        defines=pre.defines, source=display,
        line_ends=[end for _start, end, _location, _text, _kind in entries],
        line_texts=[text for *_rest, text, _kind in entries],
        line_kinds=[kind for *_rest, kind in entries],
        sections=sections, sizes=encoded.sizes, constants=encoded.constants,
        symbol_sections=encoded.symbol_sections, global_symbols=list(reader.globals),
        weak_symbols=sorted(reader.weak), code_ranges=code_ranges,
        warnings=reader.warnings + encoded.warnings,
    )


# --------------------------------------------------------------------------
# Caching

_memory = MemoryCache()
_disk = DiskCache()
_recent: dict[tuple[Any, ...], tuple[list[tuple[str, str]], str]] = {}
_cache_lock = threading.Lock()


def clear_cache() -> None:
    """Forget the programs cached in memory (the disk cache stays)."""
    with _cache_lock:
        _memory.clear()
        _recent.clear()


def _error_record(error: AssemblyError) -> dict[str, Any]:
    location = error.location
    return {"type": "crash" if isinstance(error, KeystoneCrash) else "error",
            "message": error.message, "file": error.file,
            "line": None if location is None else [location.file, location.line]}


def _raise_recorded(record: Mapping[str, Any]) -> None:
    kind = KeystoneCrash if record["type"] == "crash" else AssemblyError
    line = record["line"]
    location = None if line is None else SourceLocation(line[0], line[1])
    raise kind(record["message"], location, file=record["file"])


def _lookup(key: str) -> Program | dict[str, Any] | None:
    """A cached program (or error record) whose extra input files did not change."""
    entry = _memory.get(key)
    if entry is not None:
        program, dependencies = entry
        if file_digests(path for path, _ in dependencies) == dependencies:
            return program
        return None
    record = _disk.get(key)
    if record is None:
        return None
    dependencies = [tuple(pair) for pair in record.get("dependencies", [])]
    if file_digests(path for path, _ in dependencies) != dependencies:
        return None
    if "error" in record:
        return record["error"]
    try:
        program = Program.from_dict(record["program"])
    except (KeyError, TypeError, ValueError):
        return None
    _memory.put(key, (program, dependencies))
    return program


def _assemble(
    main: str,
    rename: Mapping[str, str],
    include_dirs: Sequence[str | Path],
    defines: Mapping[str, str] | None,
    base: int | None,
    cache: bool,
    quick_key: tuple[Any, ...],
    scratch_files: frozenset[str] = frozenset(),
) -> Program:
    """Assemble with caching.

    ``quick_key`` names the request without running cpp (the source's path or
    text, directories, definitions, base): if the files cpp read for it last
    time are unchanged, the cached program is returned at once.
    ``scratch_files`` are files whose content ``quick_key`` already covers.
    """
    display = rename.get(main, main)
    if cache:
        with _cache_lock:
            recent = _recent.get(quick_key)
            if recent is not None:
                files, key = recent
                entry = _memory.get(key)
                if entry is not None and file_digests(path for path, _ in files) == files:
                    return entry[0].copy()
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

    key = digest(frontend_version(), base, sorted((defines or {}).items()), display,
                 [[loc.file, loc.line, text] for loc, text in pre.lines], pre.defines,
                 [str(directory) for directory in include_dirs])
    cpp_files = [name for name in pre.files if name not in scratch_files]
    if cache:
        with _cache_lock:
            found = _lookup(key)
            if isinstance(found, Program):
                extra = [path for path, _ in _memory.get(key)[1]]
                _remember(quick_key, cpp_files + extra, key)
                return found.copy()
        if found is not None:
            _raise_recorded(found)

    try:
        program, extra_paths = _build(pre, base, display, rename, include_dirs)
    except AssemblyError as error:
        if cache and not getattr(error, "transient", False):
            dependencies = file_digests(getattr(error, "dependencies", []))
            if dependencies is not None:
                _disk.put(key, {"error": _error_record(error), "dependencies": dependencies})
        raise
    if not cache:
        return program
    dependencies = file_digests(extra_paths)
    if dependencies is not None:
        with _cache_lock:
            _memory.put(key, (program, dependencies))
            _remember(quick_key, cpp_files + [str(path) for path in extra_paths], key)
        _disk.put(key, {"program": program.to_dict(), "dependencies": dependencies})
    return program.copy()


def _remember(quick_key: tuple[Any, ...], files: list[str], key: str) -> None:
    """Note the files a quick (no cpp) lookup must find unchanged to reuse ``key``."""
    digests = file_digests(files)
    if digests is not None:
        _recent[quick_key] = (digests, key)


def assemble_file(
    path: str | Path,
    *,
    defines: Mapping[str, str] | None = None,
    include_dirs: Sequence[str | Path] = (),
    base: int | None = None,
    cache: bool = True,
) -> Program:
    """Preprocess and assemble a source file.

    Includes are searched in the source's directory, its ``include/``
    subdirectory, then ``include_dirs``.  ``base`` is the link address; when
    None the source's ``LINK_ADDRESS`` macro gives it, else 0.  Results are
    cached (see the module docstring); ``cache=False`` assembles afresh.
    Raises :class:`AssemblyError` (or its subclass :class:`KeystoneCrash`).
    """
    name = str(path)
    source = Path(path)
    if not source.is_file():
        raise AssemblyError("cannot read the source (no such file)", None, file=name)
    directories = [source.parent, source.parent / "include", *include_dirs]
    quick = ("file", str(source.resolve()), name, tuple(map(str, directories)),
             tuple(sorted((defines or {}).items())), base)
    return _assemble(name, {}, directories, defines, base, cache, quick)


def assemble_text(
    text: str,
    *,
    filename: str,
    defines: Mapping[str, str] | None = None,
    include_dirs: Sequence[str | Path] = (),
    base: int | None = None,
    cache: bool = True,
) -> Program:
    """Like :func:`assemble_file` for a source held in memory, named ``filename``."""
    directories = [Path(filename).parent, Path(filename).parent / "include", *include_dirs]
    quick = ("text", hashlib.sha256(text.encode("utf-8", "surrogateescape")).hexdigest(),
             filename, tuple(map(str, directories)), tuple(sorted((defines or {}).items())),
             base)
    with tempfile.TemporaryDirectory(prefix="bootemu-asm-") as scratch:
        # cpp needs a real file to name in its line markers and to resolve
        # includes relative to; its name is mapped back to ``filename``.
        temporary = Path(scratch) / (Path(filename).name or "source.S")
        temporary.write_text(text, errors="surrogateescape")
        return _assemble(str(temporary), {str(temporary): filename}, directories, defines,
                         base, cache, quick, frozenset({str(temporary)}))
