"""Other files read while reading: ``.include`` (statements) and ``.incbin`` (bytes).

A file is looked for in the directory of the file that names it, then in the
include directories; every file read is recorded in ``dependencies`` so that a
cached program is rebuilt when one changes.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Callable
from pathlib import Path

from emu.asm.files import MAX_SOURCE_BYTES, FileRefused, read_limited
from emu.asm.reader.state import MAX_IMAGE_BYTES, Frame, ReaderState
from emu.asm.reader.syntax import parse_strings, split_operands
from emu.asm.source import SourceLocation

__all__ = ["FILE_DIRECTIVES", "FileReading"]

MAX_INCLUDE_DEPTH = 64


class FileReading(ReaderState):
    """``.include`` and ``.incbin`` (see the module docstring)."""

    def _d_include(self, name: str, operands: str, body: str) -> None:
        try:
            [file_name] = parse_strings(operands)
        except ValueError:
            self._fail(f"missing string -- `{body}'")
        depth = sum(1 for frame in self._frames if frame.kind == "file")
        if depth > MAX_INCLUDE_DEPTH:
            self._fail(f".include nested more than {MAX_INCLUDE_DEPTH} deep (recursive include?)")
        decoded = file_name.decode("utf-8", "replace")
        path = self._find_file(decoded)
        try:
            text = read_limited(path, MAX_SOURCE_BYTES).decode("utf-8", "replace")
        except FileRefused as err:
            self._fail(f"can't read {decoded}: {err.reason}")
        except OSError as err:
            self._fail(f"can't open {decoded} for reading: {err.strerror}")
        self.dependencies.append(path)
        shown = self.rename.get(str(path), str(path))
        lines = [(SourceLocation(shown, number), line)
                 for number, line in enumerate(text.splitlines(), start=1)]
        self._frames.append(Frame(deque(self._pieces(lines)), "file"))

    def _find_file(self, name: str) -> Path:
        candidate = Path(name)
        if candidate.is_absolute():
            return candidate
        here = Path(self._origin.location.file).parent
        for directory in [here, *self.include_dirs]:
            if (directory / name).is_file():
                return directory / name
        return candidate

    def _d_incbin(self, name: str, operands: str, body: str) -> None:
        parts = split_operands(operands)
        try:
            [file_name] = parse_strings(parts[0]) if parts and parts[0] else [b""]
        except ValueError as err:
            self._fail(str(err))
        path = self._find_file(file_name.decode("utf-8", "replace"))
        try:
            # Never more than the image may hold (checked again when emitted).
            data = read_limited(path, MAX_IMAGE_BYTES)
        except FileRefused as err:
            self._fail(f"can't read {file_name.decode('utf-8', 'replace')}: {err.reason}")
        except OSError as err:
            self._fail(f"file not found: {file_name.decode('utf-8', 'replace')} "
                       f"({err.strerror})")
        self.dependencies.append(path)
        skip = self._absolute_now(parts[1], "bad skip") if len(parts) > 1 else 0
        count = self._absolute_now(parts[2], "bad count") if len(parts) > 2 else len(data) - skip
        if not 0 <= skip <= len(data) or count < 0 or skip + count > len(data):
            self._fail(f"skip ({skip}) or count ({count}) invalid for file size ({len(data)})")
        chunk = data[skip:skip + count]
        if chunk:
            self._no_bss_data(name)
            self._emit("fill", len(chunk), body, data=chunk)


FILE_DIRECTIVES: dict[str, Callable[..., object]] = {
    ".include": FileReading._d_include,
    ".incbin": FileReading._d_incbin,
}
