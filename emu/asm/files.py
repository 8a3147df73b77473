"""Reading a user's file without hanging or running out of memory.

Every file bootemu reads on a user's say-so (a source, an ``.include`` or
``.incbin``, an image, a device tree, a symbols file) goes through here: a
FIFO would block the read forever, ``/dev/zero`` would never end, and a
directory or ``/dev/null`` is not what the user meant, so anything but a
regular file is refused by kind, and a regular file larger than its kind's
limit is refused before it is read.  It lives in the assembler's layer, the
lowest that reads files, so that the image and board layers share it.
"""

from __future__ import annotations

import os
import stat
from pathlib import Path

__all__ = [
    "MAX_IMAGE_FILE_BYTES",
    "MAX_SMALL_FILE_BYTES",
    "MAX_SOURCE_BYTES",
    "FileRefused",
    "check_regular_file",
    "named",
    "read_limited",
]

MIB = 1 << 20
# A boot source and its includes: real ones are kilobytes.
MAX_SOURCE_BYTES = 64 * MIB
# An image (a kernel, firmware, an ELF build with debug information): real
# ones are tens to a few hundred MiB.
MAX_IMAGE_FILE_BYTES = 1024 * MIB
# A device tree blob (Linux takes at most 2 MiB) or a System.map.
MAX_SMALL_FILE_BYTES = 64 * MIB
# How much read_limited asks for at a time.
_CHUNK_BYTES = MIB

_KINDS = (
    (stat.S_ISDIR, "a directory"),
    (stat.S_ISFIFO, "a FIFO"),
    (stat.S_ISCHR, "a character device"),
    (stat.S_ISBLK, "a block device"),
    (stat.S_ISSOCK, "a socket"),
)


class FileRefused(ValueError):
    """A file that is not a regular file, or is too large; ``str()`` names it."""

    def __init__(self, path: str | Path, reason: str) -> None:
        self.path = str(path)
        self.reason = reason
        super().__init__(f"{path}: {reason}")


def _kind(mode: int) -> str:
    for test, kind in _KINDS:
        if test(mode):
            return kind
    return "not a regular file"


def _check(path: str | Path, status: os.stat_result, limit: int) -> None:
    if not stat.S_ISREG(status.st_mode):
        raise FileRefused(path, f"is {_kind(status.st_mode)}, not a regular file")
    if status.st_size > limit:
        raise FileRefused(path, f"is {status.st_size} bytes, more than the "
                                f"{limit >> 20} MiB bootemu reads")


def check_regular_file(path: str | Path, limit: int) -> None:
    """Refuse ``path`` unless it is a regular file of at most ``limit`` bytes.

    For files another program (cpp) opens.  ``stat`` follows symbolic links and
    never blocks, not even on a FIFO.  Raises :class:`OSError` when the file
    cannot be found, :class:`FileRefused` for the rest.
    """
    _check(path, os.stat(path), limit)


def read_limited(path: str | Path, limit: int) -> bytes:
    """The bytes of the regular file ``path``, refused beyond ``limit`` bytes.

    The file is opened non-blocking, so that opening a FIFO does not wait for a
    writer, and checked on the open descriptor, so that it cannot be swapped
    between the check and the read; at most ``limit + 1`` bytes are read, so
    that a file growing meanwhile is refused too, and no more at a time than the
    file holds (or 1 MiB), so that memory follows the file's size, not the
    limit.  Raises :class:`OSError` naming ``path`` when it cannot be opened
    or read, :class:`FileRefused` for the rest.
    """
    try:
        return _read(path, limit)
    except OSError as err:
        raise named(err, path) from None


def named(err: OSError, path: str | Path) -> OSError:
    """``err``, naming ``path`` if it names no file: an error of ``read()``
    itself (``EIO`` from ``/proc/self/mem``) comes without a file name."""
    if err.filename is not None:
        return err
    return OSError(err.errno, err.strerror or str(err), str(path))  # its errno's subclass


def _read(path: str | Path, limit: int) -> bytes:
    descriptor = os.open(path, os.O_RDONLY | os.O_NONBLOCK | getattr(os, "O_NOCTTY", 0))
    try:
        status = os.fstat(descriptor)
        _check(path, status, limit)  # before fdopen, which refuses a directory itself
    except BaseException:
        os.close(descriptor)
        raise
    with os.fdopen(descriptor, "rb", buffering=0) as stream:
        chunks: list[bytes] = []
        total = 0
        # The size fstat gave and a byte more first, so that a regular file
        # comes in one read and one buffer; then chunks (a file that grew, or
        # one of /proc's, whose size is 0); never more than ``limit + 1`` bytes.
        wanted = max(min(status.st_size, limit) + 1, _CHUNK_BYTES)
        while total <= limit:
            chunk = stream.read(min(wanted, limit + 1 - total))
            if not chunk:
                break
            chunks.append(chunk)
            total += len(chunk)
            wanted = _CHUNK_BYTES
    if total > limit:
        raise FileRefused(path, f"is more than the {limit >> 20} MiB bootemu reads")
    return chunks[0] if len(chunks) == 1 else b"".join(chunks)
