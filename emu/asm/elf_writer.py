"""An assembled program as an ELF64 AArch64 executable, with symbols and DWARF lines.

:func:`elf_bytes` (and :func:`write_elf`, which writes them to a file) turn a
:class:`~emu.asm.program.Program` into much what ``aarch64-linux-gnu-ld``
gives for the same source assembled with ``-g``, enough for GDB, objdump,
addr2line and readelf to show the source behind every instruction:

* the program's bytes at their link address: one ``PT_LOAD`` segment per run
  of sections with the same permissions, and one section header per section
  of the program (``.bss`` as ``SHT_NOBITS``); the entry point is ``_start``
  when defined, else the first executable section;
* ``.symtab``/``.strtab``: every label and equate, ``.L`` local labels left
  out as GNU as leaves them out, global (or weak) where the source said so;
  a label at an instruction is ``STT_FUNC`` (the reader keeps no ``.type``,
  and GNU as would say ``STT_NOTYPE`` without one), one in a data section
  with a ``.size`` is ``STT_OBJECT``, others ``STT_NOTYPE``; equates are
  absolute.  The AArch64 mapping symbols ``$x``/``$d`` mark where
  instructions and data (literal pools) start in executable sections, so
  ``objdump -d`` shows pools as data;
* DWARF 4: a ``.debug_line`` program mapping each instruction's address to
  its source file and line, and a ``.debug_info`` compile unit (through
  ``.debug_abbrev``) with ``DW_AT_stmt_list``, ``DW_AT_name`` (the source),
  ``DW_AT_comp_dir``, ``DW_AT_low_pc``/``DW_AT_high_pc`` and
  ``DW_AT_language`` = ``DW_LANG_Mips_Assembler``, as GNU as writes for an
  assembly source.

The line information is the program's own line map (``Program.lines``,
``line_ends``, ``line_kinds`` and ``line_texts``): the reader records, for
each statement it lays out, the file:line cpp's line markers give it (so a
line of an ``#include``'d file is named as such) and, for a statement expanded
from a macro, the line that invoked the macro, as GNU as's line table does.
Only instructions get rows: data, literal pools, ``.bss`` and alignment
padding have none, as in GNU as's table (the rows are the ones GNU as writes;
tests/test_asm_elf.py compares them).  Consecutive instructions of one line
share a row, and each run of contiguous instructions is one line sequence,
which ends after its last instruction (GNU's runs on over what follows), so
addr2line gives ``?`` for data rather than the line before it.  File names are
written as the assembler named them, relative names being relative to
``comp_dir`` (by default the current directory, the one the source was named
from).

The physical alias (``physical_alias=True``, with a ``load_address`` other
than the link address): boot code runs at its physical address while the MMU
is off or identity-maps it (asm/head.S, linked at 0x8000200000 and loaded at
0x40000000, runs ``switch_ttbr_id`` at 0x40001000), where a table of link
addresses names nothing.  So the file also describes the program at
``load_address + (address - base)``:

* the line table has each sequence twice, at the link and at the physical
  addresses (same files and lines), and the compile unit covers both
  through ``DW_AT_ranges`` (``.debug_ranges``) instead of low/high pc;
* each section has an ``SHT_NOBITS`` twin named ``.phys`` + its name (same
  size, flags and alignment) at its physical address, in no segment, and
  each label in a section a copy (same name, type, binding, size) at its
  physical address in its section's twin: ``break switch_ttbr_id`` sets two
  locations, ``info symbol 0x40001000`` names ``switch_ttbr_id``.

The twins are what make the copies usable: GDB looks a pc's symbol up (frame
names, ``info symbol``, ``x/i``) and addr2line its line only within an
allocated section holding the pc, and GDB does not set a breakpoint on an
``SHN_ABS`` symbol (it takes it for data); a copy given its section's index
but lying outside that section, or an absolute one, names nothing there.  An
``SHT_NOBITS`` section takes no file space and is no part of a flat binary
(``objcopy -O binary``) or of what ``load`` writes, so the loadable bytes,
sections and ``PT_LOAD`` segments are those of the file without the alias;
readelf accepts such sections without a word.  Without a process GDB reads
them as zeros.  No alias is written when the physical and link ranges
overlap (an address would have two lines).

For a debugger session of the same program, ``bootemu debug --elf`` calls
:func:`write_elf` with the :class:`Program` being run and its physical alias.
"""

from __future__ import annotations

import os
import posixpath
import struct
from dataclasses import dataclass
from pathlib import Path

from emu.asm.program import Program, ProgramSection

__all__ = ["elf_bytes", "write_elf"]

# ELF constants (the System V ABI and the AArch64 ELF supplement).
_ET_EXEC = 2
_EM_AARCH64 = 183
_PT_LOAD = 1
_PF_X, _PF_W, _PF_R = 1, 2, 4
_SHT_PROGBITS, _SHT_SYMTAB, _SHT_STRTAB, _SHT_NOBITS = 1, 2, 3, 8
_SHF_WRITE, _SHF_ALLOC, _SHF_EXECINSTR = 1, 2, 4
_SHN_ABS = 0xFFF1
_STB_LOCAL, _STB_GLOBAL, _STB_WEAK = 0, 1, 2
_STT_NOTYPE, _STT_OBJECT, _STT_FUNC, _STT_FILE = 0, 1, 2, 4
_SEGMENT_ALIGN = 0x10000  # GNU ld's max-page-size for AArch64

_EHDR = struct.Struct("<16sHHIQQQIHHHHHH")
_PHDR = struct.Struct("<IIQQQQQQ")
_SHDR = struct.Struct("<IIQQQQIIQQ")
_SYM = struct.Struct("<IBBHQQ")

# DWARF constants (DWARF 4).
_DW_TAG_compile_unit = 0x11
_DW_CHILDREN_no = 0
_DW_AT_name, _DW_AT_stmt_list, _DW_AT_low_pc, _DW_AT_high_pc = 0x03, 0x10, 0x11, 0x12
_DW_AT_language, _DW_AT_comp_dir, _DW_AT_producer = 0x13, 0x1B, 0x25
_DW_AT_ranges = 0x55
_DW_FORM_addr, _DW_FORM_data2, _DW_FORM_data8 = 0x01, 0x05, 0x07
_DW_FORM_string, _DW_FORM_sec_offset = 0x08, 0x17
_DW_LANG_Mips_Assembler = 0x8001
_DW_LNS_copy, _DW_LNS_advance_pc, _DW_LNS_advance_line, _DW_LNS_set_file = 1, 2, 3, 4
_DW_LNE_end_sequence, _DW_LNE_set_address = 1, 2
_LINE_BASE, _LINE_RANGE, _OPCODE_BASE = -5, 14, 13
_STANDARD_OPCODE_LENGTHS = bytes([0, 1, 1, 1, 1, 0, 0, 0, 1, 0, 0, 1])

_PRODUCER = "bootemu asm"
# Padding in code (nops) is no statement of its own in GNU as's line table.
_ALIGNMENT_DIRECTIVES = frozenset({".align", ".balign", ".p2align", ".balignw", ".balignl",
                                   ".p2alignw", ".p2alignl"})
_MASK64 = (1 << 64) - 1
# The section at the physical alias of a section ".text" is ".phys.text".
_ALIAS_PREFIX = ".phys"


# --------------------------------------------------------------------------
# Public API


def elf_bytes(program: Program, *, comp_dir: str | None = None,
              load_address: int | None = None, physical_alias: bool = False) -> bytes:
    """The ELF64 AArch64 executable of ``program`` (see the module docstring).

    ``comp_dir`` is the directory relative source names are relative to (the
    DWARF ``DW_AT_comp_dir``); by default the current directory.
    ``load_address`` is the physical address the program's first byte is
    loaded at (the segments' ``p_paddr``, as a linker script's ``AT()``
    gives); by default the link address, as GNU ld gives.

    ``physical_alias`` also describes the program where it runs before the
    MMU maps it (see "The physical alias" in the module docstring): with a
    ``load_address`` other than the link address, the line table and the
    symbol table name each instruction and label at its physical address
    too.  The loaded bytes and segments are the same either way.
    """
    return _ElfWriter(program, os.getcwd() if comp_dir is None else comp_dir,
                      program.base if load_address is None else load_address,
                      physical_alias).build()


def write_elf(program: Program, path: str | Path, *, comp_dir: str | None = None,
              load_address: int | None = None, physical_alias: bool = False) -> None:
    """Write :func:`elf_bytes` of ``program`` to ``path``."""
    Path(path).write_bytes(elf_bytes(program, comp_dir=comp_dir, load_address=load_address,
                                     physical_alias=physical_alias))


# --------------------------------------------------------------------------
# Encoding helpers


def _uleb(value: int) -> bytes:
    out = bytearray()
    while True:
        byte = value & 0x7F
        value >>= 7
        if value:
            out.append(byte | 0x80)
        else:
            out.append(byte)
            return bytes(out)


def _sleb(value: int) -> bytes:
    out = bytearray()
    while True:
        byte = value & 0x7F
        value >>= 7
        if (value == 0 and not byte & 0x40) or (value == -1 and byte & 0x40):
            out.append(byte)
            return bytes(out)
        out.append(byte | 0x80)


def _cstr(text: str) -> bytes:
    return text.encode("utf-8", "surrogateescape") + b"\0"


class _StringTable:
    """An ELF string table: offset 0 is the empty string, equal names share bytes."""

    def __init__(self) -> None:
        self.data = bytearray(b"\0")
        self._offsets: dict[str, int] = {"": 0}

    def add(self, name: str) -> int:
        offset = self._offsets.get(name)
        if offset is None:
            offset = self._offsets[name] = len(self.data)
            self.data += _cstr(name)
        return offset


def _align(value: int, alignment: int) -> int:
    return -(-value // alignment) * alignment


# --------------------------------------------------------------------------
# Line rows


@dataclass(frozen=True)
class _Sequence:
    """Contiguous instructions: rows of (address, file, line), up to ``end``."""

    rows: list[tuple[int, str, int]]
    end: int


def _is_alignment(program: Program, index: int) -> bool:
    text = program.line_texts[index] if index < len(program.line_texts) else ""
    words = text.split(None, 1)
    return bool(words) and words[0].lower() in _ALIGNMENT_DIRECTIVES


def _code_statements(program: Program) -> list[tuple[int, int, str, int]]:
    """(start, end, file, line) of each statement that emitted instructions, by address.

    Alignment padding (nops) is left out: it has no line, as with GNU as.
    """
    statements = []
    count = len(program.lines)
    kinds_known = len(program.line_kinds) == count
    for index, (start, location) in enumerate(program.lines):
        if program.line_ends:
            end = program.line_ends[index]
        else:
            end = program.lines[index + 1][0] if index + 1 < count else program.end
        code = program.line_kinds[index] == "code" if kinds_known else program.is_code(start)
        if code and end > start and not _is_alignment(program, index):
            statements.append((start, end, location.file, location.line))
    statements.sort()
    return statements


def _sequences(program: Program) -> list[_Sequence]:
    """The line sequences: each run of contiguous instructions, a row where the line changes."""
    sequences: list[_Sequence] = []
    rows: list[tuple[int, str, int]] = []
    end = None
    for start, stop, file, line in _code_statements(program):
        if end is not None and start != end:
            sequences.append(_Sequence(rows, end))
            rows = []
        if not rows or rows[-1][1:] != (file, line):
            rows.append((start, file, line))
        end = stop
    if rows and end is not None:
        sequences.append(_Sequence(rows, end))
    return sequences


# --------------------------------------------------------------------------
# DWARF


def _line_program(sequences: list[_Sequence], file_numbers: dict[str, int]) -> bytes:
    out = bytearray()
    for sequence in sequences:
        address, file_number, line = sequence.rows[0][0], 1, 1
        out += bytes([0, 9, _DW_LNE_set_address]) + struct.pack("<Q", address)
        for row_address, file, row_line in sequence.rows:
            if file_numbers[file] != file_number:
                file_number = file_numbers[file]
                out += bytes([_DW_LNS_set_file]) + _uleb(file_number)
            line_delta, address_delta = row_line - line, row_address - address
            special = (line_delta - _LINE_BASE) + _LINE_RANGE * address_delta + _OPCODE_BASE
            if 0 <= line_delta - _LINE_BASE < _LINE_RANGE and special <= 255:
                out.append(special)
            else:
                if line_delta:
                    out += bytes([_DW_LNS_advance_line]) + _sleb(line_delta)
                if address_delta:
                    out += bytes([_DW_LNS_advance_pc]) + _uleb(address_delta)
                out.append(_DW_LNS_copy)
            address, line = row_address, row_line
        out += bytes([_DW_LNS_advance_pc]) + _uleb(sequence.end - address)
        out += bytes([0, 1, _DW_LNE_end_sequence])
    return bytes(out)


def _debug_line(sequences: list[_Sequence]) -> bytes:
    """A DWARF 4 line-number unit: directories and files as named, then the rows."""
    directories: dict[str, int] = {}
    file_entries = bytearray()
    file_numbers: dict[str, int] = {}
    for sequence in sequences:
        for _address, file, _line in sequence.rows:
            if file in file_numbers:
                continue
            directory, name = posixpath.split(file)
            if directory and not name:
                directory, name = "", file
            index = 0
            if directory:
                index = directories.setdefault(directory, len(directories) + 1)
            file_numbers[file] = len(file_numbers) + 1
            file_entries += _cstr(name) + _uleb(index) + _uleb(0) + _uleb(0)
    header = (struct.pack("<BBBbBB", 1, 1, 1, _LINE_BASE, _LINE_RANGE, _OPCODE_BASE)
              + _STANDARD_OPCODE_LENGTHS
              + b"".join(_cstr(directory) for directory in directories) + b"\0"
              + bytes(file_entries) + b"\0")
    unit = (struct.pack("<HI", 4, len(header)) + header
            + _line_program(sequences, file_numbers))
    return struct.pack("<I", len(unit)) + unit


def _debug_abbrev(ranges: bool = False) -> bytes:
    """The compile unit's abbreviation: its extent as low/high pc, or as ranges."""
    extent = ([(_DW_AT_low_pc, _DW_FORM_addr), (_DW_AT_ranges, _DW_FORM_sec_offset)] if ranges
              else [(_DW_AT_low_pc, _DW_FORM_addr), (_DW_AT_high_pc, _DW_FORM_data8)])
    attributes = [(_DW_AT_stmt_list, _DW_FORM_sec_offset), *extent,
                  (_DW_AT_name, _DW_FORM_string), (_DW_AT_comp_dir, _DW_FORM_string),
                  (_DW_AT_producer, _DW_FORM_string), (_DW_AT_language, _DW_FORM_data2)]
    out = bytearray(_uleb(1) + _uleb(_DW_TAG_compile_unit) + bytes([_DW_CHILDREN_no]))
    for attribute, form in attributes:
        out += _uleb(attribute) + _uleb(form)
    out += b"\0\0\0"  # end of the attributes, end of the abbreviations
    return bytes(out)


def _debug_info(name: str, comp_dir: str, low: int, high: int, ranges: bool = False) -> bytes:
    """The compile unit: over ``low``..``high``, or (``ranges``) over ``.debug_ranges``' list.

    With ranges, ``DW_AT_low_pc`` is 0 (the base address of the list's
    absolute entries) and ``DW_AT_ranges`` the list's offset, 0, as GNU as
    writes them for a unit in several sections.
    """
    extent = struct.pack("<QI", 0, 0) if ranges else struct.pack("<QQ", low, high - low)
    die = (_uleb(1) + struct.pack("<I", 0) + extent + _cstr(name) + _cstr(comp_dir)
           + _cstr(_PRODUCER) + struct.pack("<H", _DW_LANG_Mips_Assembler))
    unit = struct.pack("<HIB", 4, 0, 8) + die
    return struct.pack("<I", len(unit)) + unit


def _debug_ranges(ranges: list[tuple[int, int]]) -> bytes:
    """A DWARF 4 range list: (start, end) pairs in address order, then the end of list."""
    return b"".join(struct.pack("<QQ", start, end) for start, end in sorted(ranges)) + bytes(16)


# --------------------------------------------------------------------------
# The file


@dataclass
class _Section:
    name: str
    kind: int
    flags: int
    address: int
    data: bytes
    size: int
    align: int
    link: int = 0
    info: int = 0
    entsize: int = 0
    offset: int = 0


def _section_flags(section: ProgramSection) -> int:
    flags = _SHF_ALLOC
    if "w" in section.flags:
        flags |= _SHF_WRITE
    if "x" in section.flags or section.kind == "text":
        flags |= _SHF_EXECINSTR
    return flags


class _ElfWriter:
    def __init__(self, program: Program, comp_dir: str, load_address: int,
                 physical_alias: bool = False) -> None:
        self.program = program
        self.comp_dir = comp_dir
        self.load_address = load_address
        self.image_offset = 0  # file offset of the program's first byte, set by build()
        # physical address - link address, when the physical alias is described
        self.alias = self._alias_offset() if physical_alias else None

    def _alias_offset(self) -> int | None:
        """How far the physical alias is from the link address; None for no alias.

        No alias when the program is loaded at its link address, nor when the
        two ranges overlap (an address would then have two lines and two
        labels), nor when the alias would not fit below 2**64.
        """
        program = self.program
        size = max([len(program.code), *(section.end - program.base
                                          for section in program.sections)])
        start, base = self.load_address, program.base
        if start < 0 or start + size > 1 << 64 or (start < base + size and base < start + size):
            return None
        return start - base

    def _alias_sections(self, sections: list[_Section]) -> list[_Section]:
        """An ``SHT_NOBITS`` twin of each section at its physical alias.

        The alias symbols are in these rather than ``SHN_ABS`` or in the
        linked sections (see "The physical alias" in the module docstring):
        gdb and addr2line name only addresses inside an allocated section,
        and gdb breaks on no absolute symbol.
        """
        assert self.alias is not None
        return [_Section(_ALIAS_PREFIX + section.name, _SHT_NOBITS, section.flags,
                         (section.address + self.alias) & _MASK64, b"", section.size,
                         section.align) for section in sections]

    # Sections of the program --------------------------------------------

    def _program_sections(self) -> list[_Section]:
        program = self.program
        sections = []
        for section in program.sections:
            nobits = section.kind == "bss"
            start = section.address - program.base
            data = b"" if nobits else program.code[start:start + section.size]
            sections.append(_Section(section.name, _SHT_NOBITS if nobits else _SHT_PROGBITS,
                                     _section_flags(section), section.address, data,
                                     section.size, max(section.align, 1)))
        return sections

    @staticmethod
    def _segment_groups(sections: list[_Section]) -> list[list[_Section]]:
        """Runs of consecutive (non-empty) sections with the same permissions."""
        groups: list[list[_Section]] = []
        permissions = _SHF_WRITE | _SHF_EXECINSTR
        for section in sections:
            if section.size == 0:
                continue
            if groups and groups[-1][-1].flags & permissions == section.flags & permissions:
                groups[-1].append(section)
            else:
                groups.append([section])
        return groups

    def _program_header(self, group: list[_Section]) -> bytes:
        """The PT_LOAD of one group of sections (the image's file offset must be known)."""
        start = group[0].address
        memory_end = max(section.address + section.size for section in group)
        file_end = max((section.address + section.size for section in group
                        if section.kind != _SHT_NOBITS), default=start)
        flags = _PF_R
        if group[0].flags & _SHF_WRITE:
            flags |= _PF_W
        if group[0].flags & _SHF_EXECINSTR:
            flags |= _PF_X
        paddr = (self.load_address + start - self.program.base) & _MASK64
        return _PHDR.pack(_PT_LOAD, flags, self.image_offset + start - self.program.base, start,
                          paddr, file_end - start, memory_end - start, _SEGMENT_ALIGN)

    # Symbols ---------------------------------------------------------------

    def _symbols(self, sections: list[_Section], strtab: _StringTable) -> tuple[bytes, int]:
        """``.symtab``'s bytes (section indexes from 1 in ``sections``), first global index.

        With the physical alias, each label in a section has a copy (same name,
        type, binding and size) at its physical address, in the alias of its
        section, whose index follows all of ``sections``.
        """
        program = self.program
        index_of = {section.name: number for number, section in enumerate(sections, 1)}

        def containing(address: int) -> int:
            for number, section in enumerate(sections, 1):
                if section.address <= address < section.address + section.size:
                    return number
            return _SHN_ABS

        local: list[tuple[int, str, int, int, int]] = []  # (value, name, type, shndx, size)
        bound: list[tuple[int, str, int, int, int, int]] = []
        alias_local: list[tuple[int, str, int, int, int]] = []
        alias_bound: list[tuple[int, str, int, int, int, int]] = []
        source = program.source or "program"
        local.append((0, posixpath.basename(source) or source, _STT_FILE, _SHN_ABS, 0))
        entries: dict[str, tuple[int, int]] = {}
        for name, value in program.constants.items():
            entries[name] = (value & _MASK64, _SHN_ABS)
        for name, value in program.symbols.items():
            section_name = program.symbol_sections.get(name)
            shndx = index_of.get(section_name, 0) if section_name else 0
            entries[name] = (value & _MASK64, shndx or containing(value))
        kinds = {section.name: section.kind for section in program.sections}
        for name, (value, shndx) in sorted(entries.items(), key=lambda item: (item[1], item[0])):
            if name.startswith(".L"):
                continue
            size = program.sizes.get(name, 0)
            kind = _STT_NOTYPE
            if shndx != _SHN_ABS and name in program.symbols:
                section = sections[shndx - 1]
                if section.flags & _SHF_EXECINSTR and program.is_code(value):
                    kind = _STT_FUNC
                elif kinds.get(section.name) != "text" and size:
                    kind = _STT_OBJECT
            binding = (_STB_WEAK if name in program.weak_symbols
                       else _STB_GLOBAL if name in program.global_symbols else _STB_LOCAL)
            if binding == _STB_LOCAL:
                local.append((value, name, kind, shndx, size))
            else:
                bound.append((value, name, kind, shndx, size, binding))
            if self.alias is not None and shndx != _SHN_ABS and name in program.symbols:
                alias = ((value + self.alias) & _MASK64, name, kind, shndx + len(sections), size)
                if binding == _STB_LOCAL:
                    alias_local.append(alias)
                else:
                    alias_bound.append((*alias, binding))
        local.extend(alias_local)
        bound.extend(alias_bound)
        local.extend(self._mapping_symbols(sections))
        table = bytearray(_SYM.size)  # the null symbol
        for value, name, kind, shndx, size in local:
            table += _SYM.pack(strtab.add(name), (_STB_LOCAL << 4) | kind, 0, shndx, value, size)
        first_global = len(local) + 1
        for value, name, kind, shndx, size, binding in bound:
            table += _SYM.pack(strtab.add(name), (binding << 4) | kind, 0, shndx, value, size)
        return bytes(table), first_global

    def _mapping_symbols(self, sections: list[_Section]) -> list[tuple[int, str, int, int, int]]:
        """``$x`` where instructions start and ``$d`` where data starts, in code sections."""
        found = []
        ranges = self.program.code_ranges
        for number, section in enumerate(sections, 1):
            if not section.flags & _SHF_EXECINSTR or section.size == 0:
                continue
            start, end = section.address, section.address + section.size
            position, in_code = start, False
            for low, high in ranges:
                if high <= start or low >= end:
                    continue
                low, high = max(low, start), min(high, end)
                if low > position:
                    found.append((position, "$d", _STT_NOTYPE, number, 0))
                if low > position or not in_code:
                    found.append((low, "$x", _STT_NOTYPE, number, 0))
                position, in_code = high, True
            if position < end:
                found.append((position, "$d", _STT_NOTYPE, number, 0))
        return found

    # Assembly of the file -------------------------------------------------

    def _entry(self) -> int:
        program = self.program
        if "_start" in program.symbols:
            return program.symbols["_start"] & _MASK64
        for section in program.sections:
            if "x" in section.flags or section.kind == "text":
                return section.address
        return program.base

    def build(self) -> bytes:
        program = self.program
        sections = self._program_sections()
        alias_sections = [] if self.alias is None else self._alias_sections(sections)
        sequences = _sequences(program)
        if sequences:
            low = sequences[0].rows[0][0]
            high = max(sequence.end for sequence in sequences)
        else:
            low = high = program.base
        # The physical alias: the same rows again, at the physical addresses,
        # and a compile unit over both ranges (gdb and addr2line look an
        # address up in the unit's ranges before its line table).
        ranges = self.alias is not None and bool(sequences)
        if ranges:
            assert self.alias is not None
            delta = self.alias
            sequences = sequences + [
                _Sequence([(address + delta, file, line) for address, file, line in sequence.rows],
                          sequence.end + delta) for sequence in sequences]
        debug = [
            _Section(".debug_abbrev", _SHT_PROGBITS, 0, 0, _debug_abbrev(ranges), 0, 1),
            _Section(".debug_info", _SHT_PROGBITS, 0, 0,
                     _debug_info(program.source, self.comp_dir, low, high, ranges), 0, 1),
            _Section(".debug_line", _SHT_PROGBITS, 0, 0, _debug_line(sequences), 0, 1),
        ]
        if ranges:
            debug.append(_Section(".debug_ranges", _SHT_PROGBITS, 0, 0,
                                  _debug_ranges([(low, high), (low + delta, high + delta)]),
                                  0, 1))
        strtab = _StringTable()
        symtab_data, first_global = self._symbols(sections, strtab)
        symtab_index = len(sections) + len(alias_sections) + len(debug) + 1
        symtab = _Section(".symtab", _SHT_SYMTAB, 0, 0, symtab_data, 0, 8,
                          link=symtab_index + 1, info=first_global, entsize=_SYM.size)
        strtab_section = _Section(".strtab", _SHT_STRTAB, 0, 0, b"", 0, 1)
        shstrtab = _StringTable()
        shstrtab_section = _Section(".shstrtab", _SHT_STRTAB, 0, 0, b"", 0, 1)
        every = [*sections, *alias_sections, *debug, symtab, strtab_section, shstrtab_section]
        names = [shstrtab.add(section.name) for section in every]
        strtab_section.data = bytes(strtab.data)
        shstrtab_section.data = bytes(shstrtab.data)

        # Layout: header, program headers, the image, the other sections, section headers.
        # The image sits at a file offset congruent to the link address modulo
        # the segments' alignment, as a loader needs.
        groups = self._segment_groups(sections)
        phnum = len(groups)
        headers_end = _EHDR.size + phnum * _PHDR.size
        self.image_offset = (_align(headers_end - program.base % _SEGMENT_ALIGN, _SEGMENT_ALIGN)
                             + program.base % _SEGMENT_ALIGN)
        image = program.image
        for section in sections:
            section.offset = self.image_offset + section.address - program.base
        if alias_sections:
            for section, alias in zip(sections, alias_sections, strict=True):
                alias.offset = section.offset  # nominal, as for any SHT_NOBITS section
        offset = self.image_offset + len(image)
        for section in [*debug, symtab, strtab_section, shstrtab_section]:
            offset = _align(offset, section.align)
            section.offset = offset
            section.size = len(section.data)
            offset += section.size
        shoff = _align(offset, 8)

        out = bytearray()
        ident = b"\x7fELF" + bytes([2, 1, 1, 0, 0]) + bytes(7)
        out += _EHDR.pack(ident, _ET_EXEC, _EM_AARCH64, 1, self._entry(), _EHDR.size if phnum
                          else 0, shoff, 0, _EHDR.size, _PHDR.size, phnum, _SHDR.size,
                          len(every) + 1, len(every))
        for group in groups:
            out += self._program_header(group)
        out += bytes(self.image_offset - len(out))
        out += image
        for section in [*debug, symtab, strtab_section, shstrtab_section]:
            out += bytes(section.offset - len(out))
            out += section.data
        out += bytes(shoff - len(out))
        out += bytes(_SHDR.size)  # the null section
        for name, section in zip(names, every, strict=True):
            out += _SHDR.pack(name, section.kind, section.flags, section.address, section.offset,
                              section.size, section.link, section.info, section.align,
                              section.entsize)
        return bytes(out)
