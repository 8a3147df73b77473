"""Assembler front-end: C preprocessing, GNU as semantics, keystone isolated.

``assemble_file`` / ``assemble_text`` turn boot code written the way Xen's and
Linux's ``head.S`` are written into a :class:`~emu.asm.program.Program`: bytes
at a link address, sections, a symbol table (with ``.size``), and the source
file:line of every instruction and datum.  The pipeline:

1. **C preprocessor** (``emu.asm.preprocess``): the system ``cpp`` (GCC's, in
   ``assembler-with-cpp`` mode, the preprocessor of the GNU build the output
   must match), run with the user's ``-I`` and ``-D``; its line markers map
   every output line back to its file:line.
2. **Reading** (``emu.asm.reader``): macros, repetitions, conditionals,
   ``.include``, equates, sections and literal pools, with GNU as's rules, each
   statement laid out at an offset of its section.
3. **Linking** (``emu.asm.link``): sections placed in order (``.text*``,
   ``.rodata*``, ``.data*``, ``.bss*``, as a simple linker script would;
   ``emu.asm.placement``), every expression evaluated, PC-relative
   instructions and ``:lo12:`` operands resolved with GNU's range checks
   (``emu.asm.encode``), and the remaining instructions, with numeric operands
   only, encoded by keystone in a child process (``emu.asm.keystone_runner``),
   so that keystone's aborts and crashes become :class:`KeystoneCrash` errors
   naming the statement; the result becomes a ``Program`` (``emu.asm.program``).
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

import hashlib
import operator
import tempfile
import threading
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from emu.asm.cache import (
    DiskCache,
    MemoryCache,
    digest,
    file_digests,
    frontend_version,
)
from emu.asm.files import MAX_SOURCE_BYTES, FileRefused, check_regular_file
from emu.asm.keystone_runner import KeystoneUnavailable
from emu.asm.link import Encoded, Failure, encode_program, first_keystone_error
from emu.asm.preprocess import Preprocessed, eval_c_integer, preprocess
from emu.asm.program import Program, ProgramSection
from emu.asm.reader import Reader, ReadError
from emu.asm.source import AssemblyError, KeystoneCrash, Origin, SourceLocation

__all__ = ["assemble_file", "assemble_text", "clear_cache"]

_MASK64 = (1 << 64) - 1


# --------------------------------------------------------------------------
# Assembly


def _error(failure: ReadError | Failure) -> AssemblyError:
    origin: Origin | None = failure.origin
    crash = isinstance(failure, Failure) and failure.crash
    kind = KeystoneCrash if crash else AssemblyError
    if origin is None:
        return kind(failure.message, None)
    return kind(origin.describe(failure.message), origin.location)


def _build(pre: Preprocessed, base: int, display: str, rename: Mapping[str, str],
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


def _program(encoded: Encoded, pre: Preprocessed, display: str, reader: Reader) -> Program:
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
    pre = preprocess(main, rename, include_dirs, defines or {})
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
    _check_source(source, name)
    directories = [source.parent, source.parent / "include", *include_dirs]
    quick = ("file", str(source.resolve()), name, tuple(map(str, directories)),
             tuple(sorted((defines or {}).items())), base)
    return _assemble(name, {}, directories, defines, base, cache, quick)


def _check_source(source: Path, name: str) -> None:
    """Refuse, before cpp opens it, a source that is not a regular file of
    sensible size: cpp would block on a FIFO or read /dev/zero until killed.
    (Binary bytes are reported by line: by the reader, or where cpp crashes on
    them, by :mod:`emu.asm.preprocess`.)"""
    try:
        check_regular_file(source, MAX_SOURCE_BYTES)
    except FileNotFoundError:
        raise AssemblyError("cannot read the source (no such file)", None, file=name) from None
    except FileRefused as err:
        raise AssemblyError(err.reason, None, file=name) from None
    except OSError as err:
        raise AssemblyError(f"cannot read the source ({err.strerror})", None,
                            file=name) from None


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
