"""System.map: a kernel's symbol table as text, to name a raw or Image build.

A System.map is what ``nm -n`` prints for the linked kernel, one symbol a line:
``ADDRESS TYPE NAME``, the address in hexadecimal, the type one of nm's
letters (upper case global, lower case local; ``T`` text, ``D`` data, ``B``
BSS, ``R`` read-only data, ``A`` absolute, ``W``/``V`` weak, ...).  Linux
builds one next to ``vmlinux``.  :func:`read_system_map` turns one into the
same record an ELF build gives (:class:`~emu.image.elf.ElfSymbols`), so
``--symbols`` takes either; :mod:`emu.image.load` tells them apart.

What is kept mirrors what :func:`~emu.image.elf.read_elf_symbols` keeps of
``.symtab``:

* named addresses of the program: every type but undefined (``U``, and weak
  ``w``/``v`` lines without an address), debugging (``N``), non-data sections
  (``n``), unwind tables (``p``) and unknown (``?``);
* absolute symbols (``A``) only where their value lies among the program's
  own addresses (from its lowest to its highest section symbol): the ELF
  reader keeps those inside a loaded segment, and a System.map knows no
  segments; constants such as sizes fall outside and are dropped;
* of two symbols with one name, the first, unless a later one is global.

The link address of the image's first byte (where an Image's offset 0 is
linked, which gives each symbol's physical alias) is ``_text`` when the map
has one, as Linux's has, else the lowest address kept.  A System.map holds no
bytes of the image, so nothing checks that it belongs to the Image it names.

Debian's linux-image packages ship a placeholder, one line saying that the
real System.map is in the ``-dbg`` package; that is refused, saying so.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from emu.image.boot_image import ImageError
from emu.image.elf import ElfSymbols

# nm's symbol types (binutils' nm(1)).
_KEPT_TYPES = frozenset("BbCcDdGgiIRrSsTtuVvWw")
_ABSOLUTE_TYPES = frozenset("Aa")
_SKIPPED_TYPES = frozenset("NnpU?-")
_WEAK_UNDEFINED = frozenset("Uvw")
_GLOBAL_TYPES = frozenset("ABCDGIRSTVWu")  # upper case, and u: a unique global
_MAX_ADDRESS_DIGITS = 16
_PLACEHOLDER = re.compile(r"The real System\.map is in the (\S+) package")
IMAGE_START = "_text"  # Linux: the link address of the Image's first byte


@dataclass(frozen=True)
class MapSymbols(ElfSymbols):
    """Symbols read from a System.map: an :class:`ElfSymbols` without image bytes.

    ``head`` is empty: the map holds no bytes to compare with the image it
    names, so :meth:`check_same_build` cannot tell a wrong pairing and
    accepts any image.
    """

    def check_same_build(self, data: bytes, name: str) -> None:
        """Accept ``data``: a System.map carries nothing to check it against."""


def read_system_map(data: bytes, name: str) -> MapSymbols:
    """The symbols of a System.map (``nm -n`` output), for a raw or Image build.

    Raises :class:`ImageError`, naming the file and line, for a line that is
    not ``ADDRESS TYPE NAME``, and for Debian's placeholder map.
    """
    try:
        text = data.decode("ascii")
    except UnicodeDecodeError as err:
        line = data.count(b"\n", 0, err.start) + 1
        raise ImageError(f"{name}:{line}: not a System.map: byte {data[err.start]:#04x} "
                         "is not text (expected lines ADDRESS TYPE NAME)") from None
    placeholder = _PLACEHOLDER.search(text)
    if placeholder is not None:
        line = text.count("\n", 0, placeholder.start()) + 1
        raise ImageError(f"{name}:{line}: Debian's placeholder System.map, not a symbol "
                         f"table: it says the real System.map is in the "
                         f"{placeholder.group(1)} package; give that one (or its vmlinux)")

    located: list[tuple[str, str, int]] = []  # (name, type, address), file order
    for number, line in enumerate(text.splitlines(), 1):
        entry = _parse_line(line, name, number)
        if entry is not None:
            located.append(entry)

    placed = [address for _name, kind, address in located if kind in _KEPT_TYPES]
    if not placed:
        raise ImageError(f"{name}: no symbols with addresses in the program "
                         "(an empty System.map, or only absolute and undefined ones)")
    low, high = min(placed), max(placed)
    table: dict[str, int] = {}
    for symbol, kind, address in located:
        if kind in _ABSOLUTE_TYPES and not low <= address <= high:
            continue  # a constant, not an address in the image
        if symbol not in table or kind in _GLOBAL_TYPES:
            table[symbol] = address
    return MapSymbols(name, table, table.get(IMAGE_START, low), b"")


def _parse_line(line: str, name: str, number: int) -> tuple[str, str, int] | None:
    """One line as (name, type, address); None for a blank line or a symbol
    without an address in the program (undefined, debugging, ...)."""
    fields = line.split(maxsplit=2)
    if not fields:
        return None
    if len(fields) == 2 and len(fields[0]) == 1 and fields[0] in _WEAK_UNDEFINED:
        return None  # nm leaves the address of an undefined symbol blank
    if len(fields) != 3:
        raise ImageError(f"{name}:{number}: not a System.map line (ADDRESS TYPE NAME): "
                         f"{line.strip()!r}")
    address_text, kind, symbol = fields
    if (len(address_text) > _MAX_ADDRESS_DIGITS
            or not all(c in "0123456789abcdefABCDEF" for c in address_text)):
        raise ImageError(f"{name}:{number}: {address_text!r} is not a hexadecimal address "
                         f"of at most {_MAX_ADDRESS_DIGITS} digits")
    if len(kind) != 1 or kind not in _KEPT_TYPES | _ABSOLUTE_TYPES | _SKIPPED_TYPES:
        raise ImageError(f"{name}:{number}: {kind!r} is not one of nm's symbol types "
                         "(T, t, D, d, B, b, R, r, A, W, ...)")
    if " " in symbol or "\t" in symbol:
        raise ImageError(f"{name}:{number}: not a System.map line (ADDRESS TYPE NAME): "
                         f"{line.strip()!r}")
    if kind in _SKIPPED_TYPES or symbol.startswith("$"):
        return None  # no address in the program, or an ELF mapping symbol ($x, $d)
    return symbol, kind, int(address_text, 16)
