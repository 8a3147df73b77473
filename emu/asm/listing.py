"""Listings of assembled programs: objdump-like text, and JSON.

The text listing shows, section by section, every instruction with its
address, encoding (the 32-bit word, as objdump prints it), capstone's
disassembly, its source file:line and the statement that produced it, with
a ``<symbol>:`` line where a label starts.  Data is shown as ``.word`` or
``.byte``; runs of zeros (page tables, ``.space``) are folded into one line.
"""

from __future__ import annotations

import bisect
from pathlib import Path
from typing import Any

from emu.asm.program import Program, ProgramSection

__all__ = ["format_listing", "program_json"]

_ZERO_RUN = 16  # fold runs of at least this many zero bytes
_DATA_ROW = 8  # bytes of data per row
_NOP = bytes.fromhex("1f2003d5")
_ALIGNMENT_DIRECTIVES = (".align", ".balign", ".p2align", ".balignw", ".balignl", ".p2alignw",
                         ".p2alignl")


class _Disassembler:
    """Capstone, created on first use (a listing of data needs none)."""

    def __init__(self) -> None:
        self._engine: Any = None

    def text(self, word: bytes, address: int) -> str:
        if self._engine is None:
            import capstone

            self._engine = capstone.Cs(capstone.CS_ARCH_ARM64, capstone.CS_MODE_ARM)
        for instruction in self._engine.disasm(word, address, 1):
            return f"{instruction.mnemonic} {instruction.op_str}".strip()
        return f".inst {int.from_bytes(word, 'little'):#010x}"


def _is_alignment(program: Program, index: int) -> bool:
    text = program.line_texts[index] if index < len(program.line_texts) else ""
    return text.split(None, 1)[0].lower() in _ALIGNMENT_DIRECTIVES if text else False


def _source_column(program: Program, index: int) -> str:
    location = program.lines[index][1]
    return f"{Path(location.file).name}:{location.line}"


def _section_rows(program: Program, section: ProgramSection, disassembler: _Disassembler,
                  symbol_names: dict[int, list[str]]) -> list[str]:
    rows: list[str] = []
    starts = [address for address, _ in program.lines]
    symbol_addresses = sorted(address for address in symbol_names
                              if section.address <= address < section.end)
    address = section.address
    end = section.end
    while address < end:
        names = symbol_names.get(address)
        if names:
            rows.append("")
            rows.append(f"{address:016x} <{', '.join(names)}>:")
        index = bisect.bisect_right(starts, address) - 1
        statement_start = index >= 0 and starts[index] == address
        source = ""
        if statement_start:
            text = program.line_texts[index] if index < len(program.line_texts) else ""
            source = f"{_source_column(program, index):<22} {text}"
        # The next place a row must stop: a statement, a symbol or the section end.
        following = [end]
        position = bisect.bisect_right(starts, address)
        if position < len(starts):
            following.append(starts[position])
        position = bisect.bisect_right(symbol_addresses, address)
        if position < len(symbol_addresses):
            following.append(symbol_addresses[position])
        boundary = min(following)
        offset = address - program.base
        if program.is_code(address) and address + 4 <= end:
            word = program.code[offset:offset + 4]
            rows.append(f"  {address:x}:  {int.from_bytes(word, 'little'):08x}   "
                        f"{disassembler.text(word, address):<32} {source}".rstrip())
            address += 4
            # Alignment padding in code is a run of nops: one row says how many.
            if word == _NOP and statement_start and _is_alignment(program, index):
                stop = min(program.line_ends[index], end)
                repeats = (stop - address) // 4
                if repeats and program.code[offset + 4:stop - program.base] == _NOP * repeats:
                    rows.append(f"  {address:x}:  {'...':<8}   ({repeats} more nop, "
                                f"{4 * repeats:#x} bytes)")
                    address = stop
            continue
        limit = boundary
        for start, _stop in program.code_ranges[bisect.bisect_right(program.code_ranges,
                                                                    (address, 1 << 65)):][:1]:
            limit = min(limit, start)
        chunk = program.code[offset:limit - program.base]
        zeros = len(chunk) - len(chunk.lstrip(b"\0"))
        if zeros >= _ZERO_RUN or section.kind == "bss":
            size = zeros if section.kind != "bss" else len(chunk)
            rows.append(f"  {address:x}:  {'...':<8}   {f'({size:#x} zero bytes)':<32} "
                        f"{source}".rstrip())
            address += size
            continue
        width = min(_DATA_ROW - address % _DATA_ROW, len(chunk))
        data = chunk[:width]
        if width >= 4 and address % 4 == 0:
            width = 4 if width < 8 else 8
            data = chunk[:width]
            words = [int.from_bytes(data[i:i + 4], "little") for i in range(0, width, 4)]
            shown = ".word " + ", ".join(f"{word:#010x}" for word in words)
            encoding = " ".join(f"{word:08x}" for word in words)
        else:
            shown = ".byte " + ", ".join(f"{byte:#04x}" for byte in data)
            encoding = data.hex()
        rows.append(f"  {address:x}:  {encoding:<8}   {shown:<32} {source}".rstrip())
        address += width
    return rows


def format_listing(program: Program) -> str:
    """An objdump-like listing of the whole program (see the module docstring)."""
    symbol_names: dict[int, list[str]] = {}
    for name, value in program.symbols.items():
        symbol_names.setdefault(value, []).append(name)
    disassembler = _Disassembler()
    lines = [
        f"{program.source}: linked at {program.base:#x}, {len(program.code):#x} bytes in memory, "
        f"{len(program.image):#x} in the file",
    ]
    for section in program.sections:
        lines.append("")
        lines.append(f"Section {section.name} ({section.kind}, \"{section.flags}\", align "
                     f"{section.align}): {section.address:#018x} - {section.end:#018x}, "
                     f"{section.size:#x} bytes" + (", not in the file"
                                                   if section.kind == "bss" else ""))
        lines.extend(_section_rows(program, section, disassembler, symbol_names))
    lines.append("")
    lines.append("Symbols (GNU nm style):")
    for value, letter, name in program.nm():
        size = program.sizes.get(name)
        shown = f"{value:016x}" if value is not None else " " * 16
        lines.append(f"  {shown} {letter} {name}" + (f"  size {size:#x}" if size else ""))
    for warning in program.warnings:
        lines.append(f"warning: {warning}")
    return "\n".join(lines) + "\n"


def program_json(program: Program) -> dict[str, Any]:
    """The program without its bytes, for ``bootemu asm --json``."""
    return {
        "source": program.source,
        "base": program.base,
        "end": program.end,
        "file_size": len(program.image),
        "sections": [{"name": s.name, "address": s.address, "size": s.size, "kind": s.kind,
                      "flags": s.flags, "align": s.align} for s in program.sections],
        "symbols": [{"name": name, "value": value, "type": letter,
                     "size": program.sizes.get(name)} for value, letter, name in program.nm()],
        "lines": [{"address": address, "end": end, "file": location.file,
                   "line": location.line, "text": text, "kind": kind}
                  for (address, location), end, text, kind in zip(
                      program.lines, program.line_ends, program.line_texts, program.line_kinds,
                      strict=False)],
        "warnings": program.warnings,
    }
