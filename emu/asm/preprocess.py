"""C preprocessing of assembly sources, and the C integers of definitions.

The system ``cpp`` (GCC's, in ``assembler-with-cpp`` mode) is run with the
user's ``-I`` and ``-D``.  It is chosen over a Python preprocessor such as
pcpp because it *is* the preprocessor of the GNU build the output must match
byte for byte: its assembler mode treats ``#`` and ``'`` the way ``gcc -x
assembler-with-cpp`` does (an immediate ``#4``, an apostrophe in a comment),
which a C-only preprocessor does not, and its line markers map every output
line back to its file:line.  ``-undef`` and ``-nostdinc`` keep the host's
macros and headers out.

:func:`preprocess` returns the source lines with their locations, the macros
defined (``#define`` lines captured with ``-dD``) and ``LINK_ADDRESS``
expanded; :func:`parse_define` reads a ``-D`` argument and
:func:`eval_c_integer` the value of a C integer constant expression (what
layout headers define).
"""

from __future__ import annotations

import ast
import contextlib
import operator
import os
import re
import resource
import selectors
import shutil
import signal
import subprocess
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

from emu.asm.files import MAX_SOURCE_BYTES, FileRefused, check_regular_file
from emu.asm.source import AssemblyError, SourceLocation

__all__ = ["Preprocessed", "eval_c_integer", "is_binary", "parse_define", "preprocess"]

# Every name the front-end invents starts with this, so it never clashes with a
# user's label.
_PREFIX = "__bootemu_"
_LINK_SENTINEL = _PREFIX + "link_address__"
_MASK64 = (1 << 64) - 1

# Bounds on one cpp run, so that a hostile source (a #define doubled thirty
# times, an #include of a FIFO or of /dev/zero) fails with an error instead of
# running until killed.  Real boot sources preprocess to kilobytes in well
# under a second.
MAX_PREPROCESSED_BYTES = MAX_SOURCE_BYTES
CPP_TIMEOUT_SECONDS = 30.0
CPP_MEMORY_BYTES = 512 << 20


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
    value = value if equals else "1"
    number = _C_INTEGER.fullmatch(value.strip())
    if number and int(_python_literal(number), 0) >> 64:
        # The assembler would wrap it: XEN_VIRT_START=0x10000000000000000 becoming 0.
        raise ValueError(f"invalid definition {text!r}: {value.strip()} does not fit "
                         "in 64 bits")
    return name, value


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
class Preprocessed:
    """The C preprocessor's output, split into source lines."""

    lines: list[tuple[SourceLocation, str]]
    defines: dict[str, str]
    link_address: str | None  # LINK_ADDRESS fully expanded, None when not defined
    files: list[str]  # every file cpp read (for the cache)


_LINE_MARKER = re.compile(r'#\s*(\d+)\s+"((?:[^"\\]|\\.)*)"')
_DEFINE_LINE = re.compile(r"#define\s+(\w+)(\([^)]*\))?\s?(.*)\Z")
_CPP_DIAGNOSTIC = re.compile(
    r"^(?P<file>.+?):(?P<line>\d+):(?:\d+:)?\s*"
    r"(?P<kind>fatal error|error|internal compiler error):\s*(?P<message>.*)$",
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


def preprocess(
    main: str,
    rename: Mapping[str, str],
    include_dirs: Sequence[str | Path],
    defines: Mapping[str, str],
) -> Preprocessed:
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
    returncode, out, err = _run_cpp(command, wrapper.encode(), display, rename)
    # Undecodable bytes (a binary file) become U+FFFD and are reported by line.
    stdout = out.decode("utf-8", "replace")
    if returncode != 0:
        raise _cpp_error(err.decode("utf-8", "replace"), rename, display)

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
    return Preprocessed(lines=lines, defines=macros, link_address=link, files=list(files))


def _limit_cpp_memory() -> None:
    # In the child before exec: cpp and the cc1 it starts inherit the limit.
    resource.setrlimit(resource.RLIMIT_AS, (CPP_MEMORY_BYTES, CPP_MEMORY_BYTES))


def _run_cpp(command: list[str], stdin: bytes, display: str,
             rename: Mapping[str, str]) -> tuple[int, bytes, bytes]:
    """Run cpp, killing it past :data:`MAX_PREPROCESSED_BYTES` of output or
    :data:`CPP_TIMEOUT_SECONDS`; its exit status, stdout and (bounded) stderr."""
    # A session of its own: cpp runs cc1, which is what blocks on a FIFO or
    # grows; killing the group leaves neither behind.
    process = subprocess.Popen(command, stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                               stderr=subprocess.PIPE, preexec_fn=_limit_cpp_memory,
                               start_new_session=True)
    try:
        return _read_cpp(process, stdin, display, rename)
    finally:
        if process.poll() is None or _group_left(process):
            _kill_group(process)


def _group_left(process: subprocess.Popen[bytes]) -> bool:
    """Whether cpp's process group still has members (its cc1) after cpp ended."""
    try:
        os.killpg(process.pid, 0)
    except (ProcessLookupError, PermissionError):
        return False
    return True


def _kill_group(process: subprocess.Popen[bytes]) -> None:
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(process.pid, signal.SIGKILL)
    process.wait()


def _read_cpp(process: subprocess.Popen[bytes], stdin: bytes, display: str,
              rename: Mapping[str, str]) -> tuple[int, bytes, bytes]:
    assert process.stdin is not None and process.stdout is not None
    assert process.stderr is not None
    try:
        # Two short lines: they fit in the pipe's buffer, so this cannot block.
        process.stdin.write(stdin)
        process.stdin.close()
    except BrokenPipeError:
        pass
    out_fd, err_fd = process.stdout.fileno(), process.stderr.fileno()
    chunks: dict[int, list[bytes]] = {out_fd: [], err_fd: []}
    sizes = dict.fromkeys(chunks, 0)
    deadline = time.monotonic() + CPP_TIMEOUT_SECONDS
    problem: str | None = None
    with selectors.DefaultSelector() as selector:
        selector.register(process.stdout, selectors.EVENT_READ)
        selector.register(process.stderr, selectors.EVENT_READ)
        while selector.get_map() and problem is None:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                problem = (f"the preprocessor ran for more than {CPP_TIMEOUT_SECONDS:g} s "
                           "(an #include of a FIFO or a device, or runaway macros?)")
                break
            for key, _events in selector.select(remaining):
                descriptor = key.fd
                data = os.read(descriptor, 1 << 16)
                if not data:
                    selector.unregister(key.fileobj)
                    continue
                sizes[descriptor] += len(data)
                if sizes[descriptor] > MAX_PREPROCESSED_BYTES:
                    problem = (f"the preprocessed source is larger than "
                               f"{MAX_PREPROCESSED_BYTES >> 20} MiB (runaway #define "
                               "expansion, or a huge #include?)")
                    break
                chunks[descriptor].append(data)
    if problem is not None:
        _kill_group(process)
    returncode = process.wait()
    process.stdout.close()
    process.stderr.close()
    stderr = b"".join(chunks[err_fd])
    if problem is None and returncode != 0 and (b"out of memory" in stderr
                                                     or b"memory exhausted" in stderr):
        problem = (f"the preprocessor ran out of memory ({CPP_MEMORY_BYTES >> 20} MiB; "
                   "runaway #define expansion, or an #include of a device?)")
    if problem is not None:
        where = _last_location(b"".join(chunks[out_fd]))
        if where is None:
            raise AssemblyError(problem, None, file=display)
        file, line = where
        raise AssemblyError(problem,
                            SourceLocation(rename.get(file, file), line))
    return returncode, b"".join(chunks[out_fd]), stderr


_LAST_MARKER = re.compile(rb'#\s*(\d+)\s+"((?:[^"\\\n]|\\.)*)"')


def _last_location(output: bytes) -> tuple[str, int] | None:
    """The source line cpp's (partial) output had reached: its last line marker
    and the lines after it (approximate, as cpp's output is buffered); None when
    that is only its own wrapper."""
    end = len(output)
    while True:
        # rfind and count run at C speed even over a runaway expansion's
        # megabytes of one line.
        start = output.rfind(b"\n#", 0, end) + 1
        marker = _LAST_MARKER.match(output, start)
        if marker is not None:
            break
        if start == 0:
            return None
        end = start - 1
    file = _unescape_marker_name(marker.group(2).decode("utf-8", "replace"))
    if file in _CPP_PSEUDO_FILES:
        return None
    newline = output.find(b"\n", marker.end())
    after = 0 if newline < 0 else output.count(b"\n", newline + 1)
    return file, int(marker.group(1)) + after


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
    shown = rename.get(file, file)
    if match.group("kind") == "internal compiler error" and _is_binary(file):
        # cpp crashes on some binary input (a file of NUL bytes) instead of saying so.
        return AssemblyError("binary file (it holds NUL bytes), not assembly text",
                             SourceLocation(shown, int(match.group("line"))))
    return AssemblyError(message, SourceLocation(shown, int(match.group("line"))))


def is_binary(data: bytes) -> bool:
    """Whether the start of a file is binary rather than text: it holds a NUL byte."""
    return b"\0" in data[:1 << 16]


def _is_binary(path: str) -> bool:
    try:
        check_regular_file(path, MAX_SOURCE_BYTES)
        with open(path, "rb") as stream:
            return is_binary(stream.read(1 << 16))
    except (OSError, FileRefused):
        return False
