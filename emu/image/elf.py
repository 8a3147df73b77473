"""ELF: an AArch64 executable, read with pyelftools.

Takes the PT_LOAD segments (placed at their physical addresses, p_paddr, and
linked at their virtual ones, p_vaddr), the entry point (e_entry, a link
address) and the named code and data symbols of ``.symtab``.  The symbols of an
ELF build can also name a raw or Image build of the same program
(:func:`read_elf_symbols`).
"""

from __future__ import annotations

import io
import struct
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass

from elftools.common.exceptions import ELFError
from elftools.elf.elffile import ELFFile
from elftools.elf.sections import SymbolTableSection

from emu.image.arm64 import ARM64_HEADER_SIZE
from emu.image.boot_image import BootImage, ImageError, Segment

ELF_MAGIC = b"\x7fELF"
EM_AARCH64 = "EM_AARCH64"


@dataclass(frozen=True)
class ElfSymbols:
    """Symbols of an ELF build, to name the addresses of a raw or Image build of it."""

    path: str
    symbols: dict[str, int]
    link_start: int   # link address of the first loadable byte (the Image's offset 0)
    head: bytes       # the first loadable bytes (an Image header's worth), to check the pairing

    def check_same_build(self, data: bytes, name: str) -> None:
        """Raise :class:`ImageError` unless ``data`` (file ``name``) starts with this
        build's first loadable bytes."""
        count = min(len(self.head), len(data), ARM64_HEADER_SIZE)
        if count == 0 or data[:count] != self.head[:count]:
            raise ImageError(f"{self.path}: its first loadable bytes differ from "
                             f"{name}'s: not an ELF build of the same image")


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
            for kind, start in (("physical", phdr["p_paddr"]), ("virtual", phdr["p_vaddr"])):
                if start + memsz > 1 << 64:
                    raise ImageError(f"{name}: segment {number} at {kind} {start:#x} with "
                                     f"p_memsz {memsz:#x} runs past the top of the 64-bit "
                                     "address space")
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
