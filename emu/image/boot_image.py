"""BootImage: what goes into physical memory, where, and how to name it.

An image is bytes linked for one (virtual) address and loaded at another
(physical) one.  Names of addresses come from the link-time symbol table; a
physical address inside the loaded image is named through its link alias, so
a PC is named the same before the MMU is on (physical) and after (virtual).

Images come from an assembled program (:func:`image_from_program`), an ELF
file (:func:`image_from_elf`: PT_LOAD segments at their physical addresses),
an arm64 ``Image`` as the Linux boot protocol defines it, possibly gzipped
(:func:`image_from_arm64`), or a raw binary (:func:`image_from_raw`).  The
last two can borrow the symbols of an ELF build of the same program
(:func:`read_elf_symbols`).
"""

from __future__ import annotations

import bisect
import io
import re
import struct
import zlib
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

from elftools.common.exceptions import ELFError
from elftools.elf.elffile import ELFFile
from elftools.elf.sections import SymbolTableSection

if TYPE_CHECKING:
    from emu.asm.assembler import Program

TWO_MIB = 2 << 20

_FAILURE_CODE = re.compile(
    r"^\s*#\s*define\s+(BOOT_ERR_\w+)\s+(\d+|0x[0-9a-fA-F]+)\s*/\*\s*(.*?)\s*\*/", re.MULTILINE
)


class ImageError(ValueError):
    """An image that cannot be placed or booted as asked (a user mistake)."""


@dataclass(frozen=True)
class FailureCode:
    """A code the boot program leaves in x0 when it gives up, with its meaning."""

    value: int
    name: str
    description: str


@dataclass(frozen=True)
class Segment:
    """Bytes placed at one physical address and linked for one virtual address.

    ``memory_size`` may exceed ``len(data)``: the rest is zero-filled, as an
    ELF loader does for a segment's BSS part.
    """

    physical: int
    virtual: int
    data: bytes
    memory_size: int

    @property
    def physical_end(self) -> int:
        return self.physical + self.memory_size


@dataclass(frozen=True)
class Arm64Header:
    """The 64-byte header of an arm64 ``Image`` (Linux's boot protocol)."""

    code0: int
    code1: int
    text_offset: int
    image_size: int
    flags: int

    @property
    def big_endian(self) -> bool:
        return bool(self.flags & 1)

    @property
    def page_size(self) -> int | None:
        """The kernel's page size from flags bits 1-2 (None: unspecified)."""
        return {1: 4096, 2: 16384, 3: 65536}.get((self.flags >> 1) & 3)

    @property
    def place_anywhere(self) -> bool:
        """Flags bit 3: the 2 MiB-aligned base may be anywhere in RAM, not only low."""
        return bool(self.flags & 8)


@dataclass
class BootImage:
    """Bytes to place in physical memory and the facts needed to boot and name them.

    A simple image is one ``payload`` at ``load_address``, linked at
    ``link_address``; an ELF image lists its ``segments`` instead, each with
    its own physical and virtual address.
    """

    name: str
    payload: bytes
    load_address: int
    link_address: int
    memory_size: int
    entry_link: int
    symbols: dict[str, int]
    bss: tuple[int, int] | None = None
    program: Program | None = None
    failure_codes: dict[int, FailureCode] = field(default_factory=dict)
    failure_symbol: str = "boot_failure"
    segments: tuple[Segment, ...] = ()
    kind: str = "program"
    header: Arm64Header | None = None
    _index: tuple[int, list[int], list[str]] | None = field(
        default=None, init=False, repr=False, compare=False)

    @property
    def phys_offset(self) -> int:
        """Physical minus link address of the image's first byte (of every byte,
        unless its segments say otherwise)."""
        return self.load_address - self.link_address

    @property
    def entry(self) -> int:
        """Physical address of the first instruction."""
        return self.physical(self.entry_link)

    def regions(self) -> tuple[Segment, ...]:
        """What to write into RAM: the segments, or the payload as one segment."""
        if self.segments:
            return self.segments
        return (Segment(self.load_address, self.link_address, self.payload,
                        len(self.payload)),)

    def physical(self, link_address: int) -> int:
        for segment in self.segments:
            if segment.virtual <= link_address < segment.virtual + segment.memory_size:
                return segment.physical + (link_address - segment.virtual)
        return link_address + self.phys_offset

    def link(self, physical: int) -> int:
        """The link (virtual) address of a physical address in the image."""
        for segment in self.segments:
            if segment.physical <= physical < segment.physical_end:
                return segment.virtual + (physical - segment.physical)
        return physical - self.phys_offset

    def symbol_physical(self, name: str) -> int:
        return self.physical(self.symbols[name])

    def in_image(self, address: int, *, physical: bool) -> bool:
        if self.segments:
            return any(
                (s.physical if physical else s.virtual) <= address
                < (s.physical if physical else s.virtual) + s.memory_size
                for s in self.segments
            )
        start = self.load_address if physical else self.link_address
        return start <= address < start + self.memory_size

    def symbolize(self, va: int, pa: int | None = None) -> str:
        """``name+0xoff`` for an address: as a link address, then via its PA, then
        as an identity alias (VA == PA) of the loaded image."""
        for candidate, physical in ((va, False), (pa, True), (va, True)):
            if candidate is None or not self.in_image(candidate, physical=physical):
                continue
            link = self.link(candidate) if physical else candidate
            if self.program is not None:
                named = self.program.symbolize(link)
            else:
                named = self._nearest(link)
            if named is not None:
                name, offset = named
                return f"{name}+{offset:#x}" if offset else name
        return "?"

    def _nearest(self, address: int) -> tuple[str, int] | None:
        # ELF images can have a hundred thousand symbols and tracing names
        # every instruction: keep a sorted index, rebuilt if the table changes.
        if self._index is None or self._index[0] != len(self.symbols):
            best: dict[int, str] = {}
            for _rank, value, name in sorted((_symbol_rank(name), value, name)
                                             for name, value in self.symbols.items()):
                best.setdefault(value, name)
            values = sorted(best)
            self._index = (len(self.symbols), values, [best[v] for v in values])
        _count, values, names = self._index
        position = bisect.bisect_right(values, address) - 1
        if position < 0:
            return None
        return names[position], address - values[position]


def _symbol_rank(name: str) -> bool:
    """Of several names for one address, prefer plain ones to ``_``/``.L`` helpers."""
    return name.startswith(("_", ".", "$"))


def failure_codes_in(paths: list[Path]) -> dict[int, FailureCode]:
    """Collect ``#define BOOT_ERR_X N /* meaning */`` lines from sources and headers."""
    codes: dict[int, FailureCode] = {}
    for path in paths:
        try:
            text = path.read_text(errors="replace")
        except OSError:
            continue
        for name, value, description in _FAILURE_CODE.findall(text):
            number = int(value, 0)
            codes.setdefault(number, FailureCode(number, name, description))
    return codes


def image_from_program(
    program: Program,
    load_address: int,
    *,
    include_dirs: list[Path] | None = None,
    entry_symbol: str = "_start",
) -> BootImage:
    """Place an assembled program at a physical load address.

    Bytes from ``__bss_start`` on are not copied: a loader does not promise
    they are zero, and the boot code must clear them itself.
    """
    if load_address % 4:
        raise ImageError(f"load address {load_address:#x} is not 4-byte aligned")
    code = program.code
    bss: tuple[int, int] | None = None
    payload_size = len(code)
    start, end = program.symbols.get("__bss_start"), program.symbols.get("__bss_end")
    if start is not None and end is not None and program.base <= start <= end:
        payload_size = start - program.base
        bss = (load_address + payload_size, load_address + (end - program.base))
    source = Path(program.source)
    headers = [source]
    for directory in [source.parent / "include", *(include_dirs or [])]:
        headers.extend(sorted(Path(directory).glob("*.h")))
    return BootImage(
        name=source.name,
        payload=code[:payload_size],
        load_address=load_address,
        link_address=program.base,
        memory_size=max(len(code), (bss[1] - load_address) if bss else 0),
        entry_link=program.symbols.get(entry_symbol, program.base),
        symbols=dict(program.symbols),
        bss=bss,
        program=program,
        failure_codes=failure_codes_in(headers),
    )


# -- arm64 Image ---------------------------------------------------------------

ARM64_MAGIC = b"ARM\x64"
ARM64_HEADER_SIZE = 64
# Before Linux 3.17 image_size was 0 and text_offset meant 0x80000.
LEGACY_TEXT_OFFSET = 0x80000
_B_MASK, _B = 0xFC000000, 0x14000000
_MZ = b"MZ"  # EFI stub: code0 is "add x13, x18, #0x16", whose first bytes read "MZ"
GZIP_MAGIC = b"\x1f\x8b"


def parse_arm64_header(data: bytes, name: str) -> Arm64Header:
    """Read and validate an Image header; :class:`ImageError` says what is wrong."""
    if len(data) < ARM64_HEADER_SIZE:
        raise ImageError(f"{name}: truncated arm64 Image header: {len(data)} bytes, "
                         f"the header is {ARM64_HEADER_SIZE}")
    code0, code1, text_offset, image_size, flags = struct.unpack_from("<IIQQQ", data)
    magic = data[0x38:0x3C]
    if magic != ARM64_MAGIC:
        raise ImageError(f"{name}: not an arm64 Image: magic at offset 0x38 is {magic!r}, "
                         f"expected {ARM64_MAGIC!r}")
    branch = code1 if data[:2] == _MZ else code0
    if branch & _B_MASK != _B:
        raise ImageError(f"{name}: not an arm64 Image: no branch instruction at offset "
                         f"{4 if data[:2] == _MZ else 0} (found {branch:#010x})")
    header = Arm64Header(code0, code1, text_offset, image_size, flags)
    if header.big_endian:
        raise ImageError(f"{name}: big-endian arm64 Image (flags bit 0); bootemu runs "
                         "little-endian kernels only")
    if image_size == 0:
        header = Arm64Header(code0, code1, LEGACY_TEXT_OFFSET, 0, flags)
    elif image_size < len(data):
        raise ImageError(f"{name}: header's image_size {image_size:#x} is smaller than the "
                         f"file ({len(data):#x} bytes)")
    return header


def gunzip(data: bytes, name: str, limit: int) -> bytes:
    """Decompress a gzip stream of at most ``limit`` bytes, or say why it cannot be."""
    stream = zlib.decompressobj(wbits=16 + zlib.MAX_WBITS)
    try:
        out = stream.decompress(data, limit + 1)
    except zlib.error as err:
        raise ImageError(f"{name}: corrupt gzip stream ({err})") from None
    if len(out) > limit:
        raise ImageError(f"{name}: decompresses to more than {limit:#x} bytes, "
                         "larger than RAM")
    if not stream.eof:
        raise ImageError(f"{name}: gzip stream is cut short ({len(data)} compressed bytes "
                         f"gave {len(out)} before the data ended)")
    return out


@dataclass(frozen=True)
class ElfSymbols:
    """Symbols of an ELF build, to name the addresses of a raw or Image build of it."""

    path: str
    symbols: dict[str, int]
    link_start: int   # link address of the first loadable byte (the Image's offset 0)
    head: bytes       # the first loadable bytes, to check the pairing


def image_from_arm64(data: bytes, name: str, base: int, *,
                     symbols: ElfSymbols | None = None) -> BootImage:
    """Place an arm64 Image ``text_offset`` bytes above the 2 MiB-aligned ``base``.

    Bytes between the end of the file and ``image_size`` (the kernel's BSS and
    early data) are left as garbage: the boot protocol makes clearing them
    the kernel's job.
    """
    header = parse_arm64_header(data, name)
    if base % TWO_MIB:
        raise ImageError(f"{name}: load base {base:#x} is not 2 MiB aligned, as the arm64 "
                         "boot protocol requires (the Image goes text_offset above it)")
    load = base + header.text_offset
    size = max(header.image_size, len(data))
    image = _flat_image(data, name, load, symbols, kind="image")
    image.memory_size = size
    image.header = header
    if size > len(data):
        image.bss = (load + len(data), load + size)
    return image


def image_from_raw(data: bytes, name: str, load_address: int, *,
                   symbols: ElfSymbols | None = None) -> BootImage:
    """A raw binary at ``load_address``, entered at its first byte."""
    if load_address % 4:
        raise ImageError(f"{name}: load address {load_address:#x} is not 4-byte aligned")
    if not data:
        raise ImageError(f"{name}: the file is empty")
    return _flat_image(data, name, load_address, symbols, kind="raw")


def _flat_image(data: bytes, name: str, load: int, symbols: ElfSymbols | None,
                kind: str) -> BootImage:
    if symbols is not None:
        count = min(len(symbols.head), len(data), ARM64_HEADER_SIZE)
        if count == 0 or data[:count] != symbols.head[:count]:
            raise ImageError(f"{symbols.path}: its first loadable bytes differ from "
                             f"{name}'s: not an ELF build of the same image")
        link, table = symbols.link_start, dict(symbols.symbols)
    else:
        # No symbol table: name addresses after the file, as offsets into it.
        link, table = load, {Path(name).name: load}
    return BootImage(name=name, payload=data, load_address=load, link_address=link,
                     memory_size=len(data), entry_link=link, symbols=table, kind=kind)


# -- ELF -------------------------------------------------------------------------

EM_AARCH64 = "EM_AARCH64"


@contextmanager
def _elf_errors(name: str) -> Iterator[None]:
    """Turn pyelftools' (and struct's) complaints about a malformed file into ImageError."""
    try:
        yield
    except ImageError:
        raise
    except (ELFError, OverflowError, struct.error, ValueError, IndexError, KeyError) as err:
        raise ImageError(f"{name}: malformed ELF file ({err})") from None


def _open_elf(data: bytes, name: str) -> ELFFile:
    try:
        elf = ELFFile(io.BytesIO(data))
    except ELFError as err:
        raise ImageError(f"{name}: not a valid ELF file ({err})") from None
    if elf.elfclass != 64 or not elf.little_endian or elf["e_machine"] != EM_AARCH64:
        raise ImageError(f"{name}: ELF for {elf['e_machine']} ({elf.elfclass}-bit, "
                         f"{'little' if elf.little_endian else 'big'}-endian), not "
                         "little-endian AArch64")
    return elf


def _load_segments(elf: ELFFile, data: bytes, name: str) -> list[Segment]:
    segments = []
    try:
        for number, phdr in enumerate(elf.iter_segments()):
            if phdr["p_type"] != "PT_LOAD" or phdr["p_memsz"] == 0:
                continue
            offset, filesz, memsz = phdr["p_offset"], phdr["p_filesz"], phdr["p_memsz"]
            if offset + filesz > len(data) or filesz > memsz:
                raise ImageError(f"{name}: segment {number} claims bytes "
                                 f"[{offset:#x}, {offset + filesz:#x}) of a "
                                 f"{len(data):#x}-byte file")
            segments.append(Segment(phdr["p_paddr"], phdr["p_vaddr"],
                                    data[offset:offset + filesz], memsz))
    except ELFError as err:
        raise ImageError(f"{name}: malformed ELF program headers ({err})") from None
    return sorted(segments, key=lambda s: s.physical)


def _elf_symbol_table(elf: ELFFile, segments: list[Segment]) -> dict[str, int]:
    """Named code and data symbols of ``.symtab`` whose value lies in a loaded segment."""
    table: dict[str, int] = {}
    section = elf.get_section_by_name(".symtab")
    if not isinstance(section, SymbolTableSection):
        return table
    spans = [(s.virtual, s.virtual + s.memory_size) for s in segments]
    for symbol in section.iter_symbols():
        name = symbol.name
        if (not name or name.startswith("$") or symbol["st_shndx"] == "SHN_UNDEF"
                or symbol["st_info"]["type"] in ("STT_SECTION", "STT_FILE")):
            continue
        value = symbol["st_value"]
        if not any(start <= value <= end for start, end in spans):
            continue  # an absolute constant, not an address in the image
        if name not in table or symbol["st_info"]["bind"] == "STB_GLOBAL":
            table[name] = value
    return table


def image_from_elf(data: bytes, name: str) -> BootImage:
    """An ELF executable: PT_LOAD segments at their physical addresses (p_paddr),
    entered at ``e_entry`` (a link address), named by ``.symtab``."""
    with _elf_errors(name):
        return _image_from_elf(data, name)


def _image_from_elf(data: bytes, name: str) -> BootImage:
    elf = _open_elf(data, name)
    segments = _load_segments(elf, data, name)
    if not segments:
        raise ImageError(f"{name}: ELF file has no loadable (PT_LOAD) segment")
    for first, second in zip(segments, segments[1:], strict=False):
        if second.physical < first.physical_end:
            raise ImageError(f"{name}: segments at physical [{first.physical:#x}, "
                             f"{first.physical_end:#x}) and [{second.physical:#x}, "
                             f"{second.physical_end:#x}) overlap")
    entry = elf["e_entry"]
    if not any(s.virtual <= entry < s.virtual + s.memory_size
               or s.physical <= entry < s.physical_end for s in segments):
        raise ImageError(f"{name}: entry point {entry:#x} is in no loadable segment")
    if not any(s.virtual <= entry < s.virtual + s.memory_size for s in segments):
        # Linked physical: e_entry is a physical address; name it as such.
        entry = next(s.virtual + entry - s.physical for s in segments
                     if s.physical <= entry < s.physical_end)
    first = segments[0]
    return BootImage(
        name=name,
        payload=first.data,
        load_address=first.physical,
        link_address=first.virtual,
        memory_size=max(s.physical_end for s in segments) - first.physical,
        entry_link=entry,
        symbols=_elf_symbol_table(elf, segments),
        segments=tuple(segments),
        kind="elf",
    )


def read_elf_symbols(data: bytes, name: str) -> ElfSymbols:
    """The symbols of an ELF file, for a raw or Image build of the same program."""
    with _elf_errors(name):
        elf = _open_elf(data, name)
        segments = sorted(_load_segments(elf, data, name), key=lambda s: s.virtual)
        loaded = [s for s in segments if s.data]
        if not loaded:
            raise ImageError(f"{name}: ELF file has no loadable (PT_LOAD) segment")
        table = _elf_symbol_table(elf, segments)
    if not table:
        raise ImageError(f"{name}: ELF file has no symbols (.symtab missing or stripped)")
    return ElfSymbols(name, table, loaded[0].virtual, loaded[0].data[:ARM64_HEADER_SIZE])
