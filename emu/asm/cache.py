"""Where assembled programs are remembered: in memory and on disk, by content hash.

A key is the SHA-256 of everything that decides the result (the preprocessed
source with its file:line map, the link address, the definitions, the
front-end's own code and keystone's version), so a stale entry can only be
reached by a hash collision.  Files read by ``.include``/``.incbin`` are not
in the preprocessed text; each record lists them with their hashes, and a
record whose files changed is ignored.

The disk cache lives in ``$BOOTEMU_CACHE_DIR``, else
``$XDG_CACHE_HOME/bootemu``, else ``~/.cache/bootemu``; ``BOOTEMU_CACHE=off``
turns it off.  Any failure to read or write it is ignored: the cache only
ever saves time.
"""

from __future__ import annotations

import base64
import contextlib
import functools
import hashlib
import json
import os
import tempfile
import zlib
from collections import OrderedDict
from collections.abc import Iterable
from pathlib import Path
from typing import Any

__all__ = ["DiskCache", "MemoryCache", "cache_directory", "digest", "file_digests",
           "frontend_version", "pack_bytes", "unpack_bytes"]

_FORMAT = 1
# The front-end's own sources: every module of emu/asm, and the system-register
# tables it encodes from.
_PACKAGE = Path(__file__).resolve().parent
_FRONTEND_SOURCES = (*sorted(_PACKAGE.rglob("*.py")), _PACKAGE.parent / "arch" / "sysregs.py")


def cache_directory() -> Path | None:
    """The on-disk cache directory, or None when the disk cache is turned off."""
    if os.environ.get("BOOTEMU_CACHE", "").strip().lower() in ("0", "off", "no", "false"):
        return None
    explicit = os.environ.get("BOOTEMU_CACHE_DIR")
    if explicit:
        return Path(explicit)
    xdg = os.environ.get("XDG_CACHE_HOME")
    return (Path(xdg) if xdg else Path.home() / ".cache") / "bootemu"


@functools.lru_cache(maxsize=1)
def frontend_version() -> str:
    """A hash of the front-end's own source: editing it invalidates every cache entry."""
    from emu.asm.keystone_runner import keystone_version

    hasher = hashlib.sha256(f"{_FORMAT}:{keystone_version()}".encode())
    for source in _FRONTEND_SOURCES:
        with contextlib.suppress(OSError):
            hasher.update(source.read_bytes())
    return hasher.hexdigest()[:16]


def digest(*parts: object) -> str:
    """SHA-256 of a JSON rendering of ``parts``."""
    return hashlib.sha256(json.dumps(parts, sort_keys=True, default=str).encode()).hexdigest()


def file_digests(paths: Iterable[str | Path]) -> list[tuple[str, str]] | None:
    """(path, SHA-256 of its bytes) for each file; None if one cannot be read."""
    result: list[tuple[str, str]] = []
    for path in dict.fromkeys(str(p) for p in paths):
        try:
            result.append((path, hashlib.sha256(Path(path).read_bytes()).hexdigest()))
        except OSError:
            return None
    return result


def pack_bytes(data: bytes) -> str:
    return base64.b64encode(zlib.compress(data, 1)).decode("ascii")


def unpack_bytes(text: str) -> bytes:
    return zlib.decompress(base64.b64decode(text))


class MemoryCache:
    """A small least-recently-used map from key to any value."""

    def __init__(self, size: int = 256) -> None:
        self.size = size
        self._entries: OrderedDict[str, Any] = OrderedDict()

    def get(self, key: str) -> Any | None:
        value = self._entries.get(key)
        if value is not None:
            self._entries.move_to_end(key)
        return value

    def put(self, key: str, value: Any) -> None:
        self._entries[key] = value
        self._entries.move_to_end(key)
        while len(self._entries) > self.size:
            self._entries.popitem(last=False)

    def clear(self) -> None:
        self._entries.clear()


class DiskCache:
    """JSON records under the cache directory, one file per key, written atomically."""

    def get(self, key: str) -> dict[str, Any] | None:
        directory = cache_directory()
        if directory is None:
            return None
        try:
            record = json.loads((directory / f"{key}.json").read_text())
        except (OSError, ValueError):
            return None
        return record if isinstance(record, dict) else None

    def put(self, key: str, record: dict[str, Any]) -> None:
        directory = cache_directory()
        if directory is None:
            return
        try:
            directory.mkdir(parents=True, exist_ok=True)
            handle, temporary = tempfile.mkstemp(dir=directory, prefix=".tmp-", suffix=".json")
            with os.fdopen(handle, "w") as stream:
                json.dump(record, stream)
            os.replace(temporary, directory / f"{key}.json")
        except OSError:
            with contextlib.suppress(OSError, UnboundLocalError):
                os.unlink(temporary)
