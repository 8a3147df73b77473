"""``bootemu asm --elf``: the ELF executable, its symbols and its DWARF lines, read by GNU tools.

Every expectation comes from outside bootemu: the line of an instruction is
found by searching the source text for it (its address by GNU objdump's
disassembly or readelf's symbol table of the ELF), and the ELF is read by
``aarch64-linux-gnu-readelf``/``objdump``/``addr2line``/``objcopy`` and by
``gdb-multiarch``.  Where GNU's cross gcc is installed, the symbol table and
the whole decoded line table are also compared with those of the same source
assembled by ``gcc -g -x assembler-with-cpp`` (GNU as) and linked by GNU ld at
the same address.
"""

from __future__ import annotations

import io
import re
import shutil
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest
from click.testing import CliRunner
from elftools.elf.elffile import ELFFile

from emu.asm import assembler
from emu.asm.assembler import assemble_file
from emu.asm.elf_writer import elf_bytes, write_elf
from emu.asm.program import Program
from emu.cli.main import main

ROOT = Path(__file__).resolve().parent.parent
HEAD = ROOT / "asm" / "head.S"
BINUTILS = ("aarch64-linux-gnu-readelf", "aarch64-linux-gnu-objdump",
            "aarch64-linux-gnu-addr2line", "aarch64-linux-gnu-objcopy")
GDB = "gdb-multiarch"
GNU_CC = ("aarch64-linux-gnu-gcc", "aarch64-linux-gnu-ld")

pytestmark = pytest.mark.skipif(
    any(shutil.which(tool) is None for tool in BINUTILS),
    reason="GNU aarch64 binutils missing (apt-get install binutils-aarch64-linux-gnu)")
needs_gdb = pytest.mark.skipif(shutil.which(GDB) is None,
                               reason="gdb-multiarch missing (apt-get install gdb-multiarch)")
needs_gnu_cc = pytest.mark.skipif(
    any(shutil.which(tool) is None for tool in GNU_CC),
    reason="GNU aarch64 gcc/ld missing (apt-get install gcc-aarch64-linux-gnu)")

# A source with an #include'd file (holding an instruction and a macro), a
# .include'd one, a macro expansion, a .L label, a literal pool, and data,
# rodata and bss.
INCLUDED = """\
/* inc.h: a constant, a macro, and a routine */
#define ANSWER 42
.macro bump reg
    add     \\reg, \\reg, #1
    add     \\reg, \\reg, #2
.endm
helper:
    ret
"""
MAIN = """\
#include "inc.h"
    .global entry
    .weak   spare
    .text
entry:
    mov     x0, #ANSWER
    bump    x0
    ldr     x1, =value
    bl      helper
.Lspin:
    b       .Lspin
    .ltorg
spare:
    nop
    .include "part.s"
    .section .rodata
message:
    .asciz  "hi"
    .data
    .balign 8
value:
    .quad   0x1234
    .bss
    .balign 16
buffer:
    .space  64
"""
PART = """\
part:
    sub     x0, x0, #1
    ret
"""
SMALL_BASE = 0x4008_0000
FIXTURES = ROOT / "fixtures" / "asm"


@pytest.fixture(scope="module", autouse=True)
def isolated_cache(tmp_path_factory: pytest.TempPathFactory) -> Iterator[None]:
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("BOOTEMU_CACHE_DIR", str(tmp_path_factory.mktemp("cache")))
        assembler.clear_cache()
        yield
        assembler.clear_cache()


def run(*command: str | Path) -> str:
    """A tool's stdout; it must succeed and print nothing on stderr."""
    result = subprocess.run([str(part) for part in command], capture_output=True, text=True,
                            timeout=60)
    assert result.returncode == 0, result.stderr
    assert result.stderr == "", result.stderr
    return result.stdout


def bootemu_asm_elf(source: Path, out: Path, *extra: str) -> None:
    result = CliRunner().invoke(main, ["asm", str(source), "--elf", str(out), *extra])
    assert result.exit_code == 0, result.output
    assert f"wrote ELF to {out}" in result.stdout


def line_of(path: Path, pattern: str, after: int = 0) -> int:
    """The 1-based number of the first line of ``path`` after line ``after`` matching."""
    for number, text in enumerate(path.read_text().splitlines(), 1):
        if number > after and re.search(pattern, text):
            return number
    raise AssertionError(f"{pattern!r} not in {path}")


def symbols(elf: Path) -> dict[str, tuple[int, str, str, str]]:
    """readelf -s: name -> (value, type, binding, section index), without mapping symbols."""
    table = {}
    for row in run("aarch64-linux-gnu-readelf", "-sW", elf).splitlines():
        parts = row.split()
        if (len(parts) == 8 and parts[0][:-1].isdigit() and parts[0].endswith(":")
                and not parts[7].startswith("$")):
            table[parts[7]] = (int(parts[1], 16), parts[3], parts[4], parts[6])
    return table


def disassembly(elf: Path) -> list[tuple[int, str]]:
    """objdump -d: (address, instruction text) of every row."""
    rows = []
    for row in run("aarch64-linux-gnu-objdump", "-d", elf).splitlines():
        match = re.match(r"\s+([0-9a-f]+):\t[0-9a-f]{8} \t(.*)", row)
        if match:
            rows.append((int(match.group(1), 16), match.group(2).replace("\t", " ")))
    return rows


def addr2line(elf: Path, addresses: list[int]) -> list[tuple[str, str]]:
    """(file name, line) of each address, as addr2line prints them."""
    out = run("aarch64-linux-gnu-addr2line", "-e", elf, *[f"{a:#x}" for a in addresses])
    return [(Path(row.rsplit(":", 1)[0]).name, row.rsplit(":", 1)[1]) for row in
            out.splitlines()]


def decoded_lines(elf: Path) -> list[tuple[str, int, int]]:
    """objdump --dwarf=decodedline: (file name, line, address) of each row, end rows aside."""
    rows = []
    for row in run("aarch64-linux-gnu-objdump", "--dwarf=decodedline", elf).splitlines():
        parts = row.split()
        if len(parts) >= 3 and parts[1].isdigit() and re.fullmatch(r"0x[0-9a-f]+|0", parts[2]):
            rows.append((parts[0], int(parts[1]), int(parts[2], 16)))
    return rows


def gdb(elf: Path, *commands: str) -> str:
    arguments = [GDB, "-nx", "-batch", "-iex", "set debuginfod enabled off"]
    for command in commands:
        arguments += ["-ex", command]
    return run(*arguments, elf)


def gnu_build(source: Path, base: int, sections: list[str], out: Path) -> Path:
    """``source`` assembled with -g by GNU as (through gcc's cpp) and linked by GNU ld at base."""
    obj, elf, script = out / "gnu.o", out / "gnu.elf", out / "gnu.ld"
    includes = [f"-I{directory}" for directory in (source.parent, source.parent / "include")]
    run("aarch64-linux-gnu-gcc", "-c", "-g", "-x", "assembler-with-cpp", "-undef", "-nostdinc",
        "-D__aarch64__=1", "-D__AARCH64EL__=1", *includes, source, "-o", obj)
    body = "".join(f"  {name} : {{ *({name}) }}\n" for name in sections)
    script.write_text(f"SECTIONS {{\n  . = {base:#x};\n{body}}}\n")
    subprocess.run(["aarch64-linux-gnu-ld", "--no-warn-rwx-segments", "-T", str(script),
                    str(obj), "-o", str(elf)], check=True, capture_output=True)
    return elf


# --------------------------------------------------------------------------
# asm/head.S


@pytest.fixture(scope="module")
def head(tmp_path_factory: pytest.TempPathFactory) -> tuple[Program, Path]:
    out = tmp_path_factory.mktemp("head") / "head.elf"
    bootemu_asm_elf(HEAD, out)
    return assemble_file(HEAD), out


def test_head_elf_is_an_aarch64_executable_at_the_link_address(
        head: tuple[Program, Path]) -> None:
    program, elf = head
    out = run("aarch64-linux-gnu-readelf", "-hlSW", elf)
    assert re.search(r"Type:\s+EXEC", out) and re.search(r"Machine:\s+AArch64", out)
    assert re.search(r"Class:\s+ELF64", out)
    start = symbols(elf)["_start"][0]
    assert re.search(rf"Entry point address:\s+{start:#x}\n", out)
    text = re.search(r"\] \.text\s+PROGBITS\s+([0-9a-f]+) ([0-9a-f]+) ([0-9a-f]+) .* AX ", out)
    assert text and int(text.group(1), 16) == start == program.base
    assert re.search(rf"LOAD\s+0x{int(text.group(2), 16):06x} {start:#018x} {start:#018x} "
                     rf"0x00e000 0x00e000 R E", out)
    for section in (".symtab", ".strtab", ".debug_info", ".debug_abbrev", ".debug_line"):
        assert f"] {section} " in out


def test_readelf_reads_all_of_it_without_a_warning(head: tuple[Program, Path]) -> None:
    _, elf = head
    out = run("aarch64-linux-gnu-readelf", "-a", "-W", "--debug-dump", elf)
    assert "warning" not in out.lower()
    assert "DW_LANG_Mips_Assembler" in out or "MIPS assembler" in out


def test_head_text_bytes_are_the_assembled_image(head: tuple[Program, Path],
                                                 tmp_path: Path) -> None:
    program, elf = head
    flat = tmp_path / "head.bin"
    run("aarch64-linux-gnu-objcopy", "-O", "binary", elf, flat)
    assert flat.read_bytes() == program.image
    with elf.open("rb") as stream:
        text = ELFFile(stream).get_section_by_name(".text")
        assert text["sh_addr"] == program.base
        assert text.data() == program.code[:text["sh_size"]] == program.image


def test_head_labels_are_symbols_at_the_addresses_objdump_disassembles(
        head: tuple[Program, Path]) -> None:
    _, elf = head
    table = symbols(elf)
    for name in ("_start", "enable_mmu", "switch_ttbr_id", "start_c", "boot_failure"):
        assert table[name][1:3] == ("FUNC", "LOCAL"), name
    assert table["boot_pgtable"][1:3] == ("NOTYPE", "LOCAL")
    labels = {int(address, 16): name for address, name in re.findall(
        r"^([0-9a-f]{16}) <([^>]+)>:$", run("aarch64-linux-gnu-objdump", "-d", elf), re.M)}
    assert labels[table["switch_ttbr_id"][0]] == "switch_ttbr_id"
    assert labels[table["_start"][0]] == "_start"


def test_head_lines_are_where_the_source_text_says(head: tuple[Program, Path]) -> None:
    _, elf = head
    table = symbols(elf)
    rows = disassembly(elf)
    switch = table["switch_ttbr_id"][0]
    label = line_of(HEAD, r"^switch_ttbr_id:")
    dsb = line_of(HEAD, r"^\s+dsb\s+sy\b", after=label)
    isb = line_of(HEAD, r"^\s+isb\b", after=dsb)
    start_line = line_of(HEAD, r"^\s+mov\s+x21, x0\b", after=line_of(HEAD, r"^_start:"))
    # read_pa_range (a .macro) expands to five instructions from its mrs on;
    # STATIC_REGIONS(CHECK_IDMAP_SLOT) (cpp) to three per region, ending in b.ls.
    read_pa = [address for address, text in rows if "id_aa64mmfr0_el1" in text.lower()]
    invocations = [line_of(HEAD, r"^\s+read_pa_range\s+x0, x1"),
                   line_of(HEAD, r"^\s+read_pa_range\s+x1, x2")]
    assert len(read_pa) == 2
    checks = [address for address, text in rows
              if text.startswith("b.ls") and "idmap_clash" in text]
    assert len(checks) >= 2
    regions = line_of(HEAD, r"^\s+STATIC_REGIONS\(CHECK_IDMAP_SLOT\)")
    addresses = [switch, switch + 4, table["_start"][0]]
    expected = [dsb, isb, start_line]
    for mrs, invocation in zip(read_pa, invocations, strict=True):
        addresses += [mrs + 4 * k for k in range(5)]
        expected += [invocation] * 5
    for branch in checks:
        addresses += [branch - 8, branch - 4, branch]
        expected += [regions] * 3
    assert addr2line(elf, addresses) == [("head.S", str(line)) for line in expected]


@needs_gnu_cc
def test_head_line_table_and_symbols_equal_gnu_as(head: tuple[Program, Path],
                                                  tmp_path: Path) -> None:
    program, elf = head
    gnu = gnu_build(HEAD, program.base, [section.name for section in program.sections],
                    tmp_path)
    # GNU ld's table ends the last sequence at the section's end, ours at the
    # last instruction's: the rows themselves are the same.
    rows = decoded_lines(elf)
    assert len(rows) > 100 and {file for file, _line, _address in rows} == {"head.S"}
    assert rows == decoded_lines(gnu)
    ours, theirs = symbols(elf), symbols(gnu)
    for name, (value, kind, binding, section) in theirs.items():
        if kind in ("SECTION", "FILE"):
            continue
        assert ours[name][0] == value and ours[name][2:] == (binding, section), name


@needs_gdb
def test_gdb_shows_the_source_line_and_the_label(head: tuple[Program, Path]) -> None:
    _, elf = head
    switch = symbols(elf)["switch_ttbr_id"][0]
    dsb = line_of(HEAD, r"^\s+dsb\s+sy\b", after=line_of(HEAD, r"^switch_ttbr_id:"))
    isb = line_of(HEAD, r"^\s+isb\b", after=dsb)
    out = gdb(elf, f"info line *{switch + 4:#x}", "info address switch_ttbr_id",
              f"list {isb},{isb}")
    assert (f'Line {isb} of "{HEAD}" starts at address {switch + 4:#x} <switch_ttbr_id+4> '
            f'and ends at {switch + 8:#x} <switch_ttbr_id+8>.') in out
    assert f'Symbol "switch_ttbr_id" is at {switch:#x} in a file compiled without debugging.' \
        in out
    assert re.search(rf"^{isb}\s+isb$", out, re.M)


# --------------------------------------------------------------------------
# A source with an #include and a macro


@pytest.fixture(scope="module")
def small(tmp_path_factory: pytest.TempPathFactory) -> tuple[Program, Path, Path]:
    directory = tmp_path_factory.mktemp("small")
    (directory / "inc.h").write_text(INCLUDED)
    (directory / "part.s").write_text(PART)
    source = directory / "main.S"
    source.write_text(MAIN)
    out = directory / "main.elf"
    bootemu_asm_elf(source, out, "--base", f"{SMALL_BASE:#x}")
    return assemble_file(source, base=SMALL_BASE), source, out


def test_included_and_macro_lines(small: tuple[Program, Path, Path]) -> None:
    _, source, elf = small
    header = source.parent / "inc.h"
    table = symbols(elf)
    entry, helper, part = table["entry"][0], table["helper"][0], table["part"][0]
    invocation = line_of(source, r"^\s+bump\s+x0")
    assert addr2line(elf, [part + 4, helper, entry, entry + 4, entry + 8, entry + 12,
                           entry + 16]) == [
        ("part.s", str(line_of(source.parent / "part.s", r"^\s+ret"))),
        ("inc.h", str(line_of(header, r"^\s+ret"))),
        ("main.S", str(line_of(source, r"mov\s+x0, #ANSWER"))),
        ("main.S", str(invocation)), ("main.S", str(invocation)),
        ("main.S", str(line_of(source, r"ldr\s+x1, =value"))),
        ("main.S", str(line_of(source, r"bl\s+helper"))),
    ]


def test_small_symbols_sections_and_bytes(small: tuple[Program, Path, Path],
                                          tmp_path: Path) -> None:
    program, _, elf = small
    table = symbols(elf)
    assert table["entry"][1:3] == ("FUNC", "GLOBAL")
    assert table["spare"][1:3] == ("FUNC", "WEAK")
    assert table["helper"][1:3] == ("FUNC", "LOCAL")
    assert table["value"][2] == table["message"][2] == table["buffer"][2] == "LOCAL"
    assert not any(name.startswith(".L") for name in table)
    out = run("aarch64-linux-gnu-readelf", "-SW", elf)
    for name, kind, flags in ((".text", "PROGBITS", "AX"), (".rodata", "PROGBITS", "A"),
                              (".data", "PROGBITS", "WA"), (".bss", "NOBITS", "WA")):
        section = next(s for s in program.sections if s.name == name)
        assert re.search(rf"\] {re.escape(name)}\s+{kind}\s+{section.address:016x} [0-9a-f]+ "
                         rf"{section.size:06x} 00\s+{flags} ", out), name
    # objdump tells the literal pool from instructions by the $d mapping symbol.
    rows = dict(disassembly(elf))
    value = table["value"][0]
    pool = [text for text in rows.values() if text.startswith(".word")]
    assert f".word {value & 0xFFFF_FFFF:#010x}" in pool and len(pool) <= 4
    assert rows[table["spare"][0]] == "nop"
    flat = tmp_path / "main.bin"
    run("aarch64-linux-gnu-objcopy", "-O", "binary", elf, flat)
    assert flat.read_bytes() == program.image
    text = run("aarch64-linux-gnu-readelf", "-a", "-W", "--debug-dump", elf).lower()
    assert "warning" not in text


@needs_gnu_cc
def test_small_line_table_equals_gnu_as(small: tuple[Program, Path, Path],
                                        tmp_path: Path) -> None:
    program, source, elf = small
    gnu = gnu_build(source, program.base, [section.name for section in program.sections],
                    tmp_path)
    rows = decoded_lines(elf)
    assert {file for file, _line, _address in rows} == {"main.S", "inc.h", "part.s"}
    assert rows == decoded_lines(gnu)


@needs_gnu_cc
@pytest.mark.parametrize("name", ["forms.S", "ranges.S", "branch_limits.S", "xen_style.S"])
def test_fixture_line_tables_equal_gnu_as(name: str, tmp_path: Path) -> None:
    source = FIXTURES / name
    program = assemble_file(source, base=0x4000_0000)
    ours = tmp_path / "ours.elf"
    write_elf(program, ours)
    gnu = gnu_build(source, program.base, [section.name for section in program.sections],
                    tmp_path)
    rows = decoded_lines(ours)
    assert rows and rows == decoded_lines(gnu)
    flat = tmp_path / "ours.bin"
    run("aarch64-linux-gnu-objcopy", "-O", "binary", ours, flat)
    assert flat.read_bytes() == program.image
    assert "warning" not in run("aarch64-linux-gnu-readelf", "-a", "-W", "--debug-dump",
                                ours).lower()


@needs_gdb
def test_gdb_names_the_included_file(small: tuple[Program, Path, Path]) -> None:
    _, source, elf = small
    header = source.parent / "inc.h"
    helper = symbols(elf)["helper"][0]
    ret = line_of(header, r"^\s+ret")
    out = gdb(elf, f"info line *{helper:#x}")
    assert f'Line {ret} of "{header}" starts at address {helper:#x} <helper>' in out


# --------------------------------------------------------------------------
# The library function


def test_compile_unit_attributes(small: tuple[Program, Path, Path]) -> None:
    program, source, _ = small
    data = elf_bytes(program, comp_dir="/somewhere")
    dwarf = ELFFile(io.BytesIO(data)).get_dwarf_info()
    unit = next(dwarf.iter_CUs())
    die = unit.get_top_DIE()
    attributes = {name: value.value for name, value in die.attributes.items()}
    text = next(s for s in program.sections if s.name == ".text")
    assert die.tag == "DW_TAG_compile_unit"
    assert attributes["DW_AT_language"] == 0x8001  # DW_LANG_Mips_Assembler
    assert attributes["DW_AT_name"] == str(source).encode()
    assert attributes["DW_AT_comp_dir"] == b"/somewhere"
    assert attributes["DW_AT_low_pc"] == text.address
    assert attributes["DW_AT_high_pc"] == text.size  # an offset from low_pc (DWARF 4)
    assert attributes["DW_AT_stmt_list"] == 0


def test_load_address_sets_the_physical_addresses(head: tuple[Program, Path],
                                                  tmp_path: Path) -> None:
    program, _ = head
    out = tmp_path / "loaded.elf"
    write_elf(program, out, load_address=0x4000_0000)
    assert re.search(rf"LOAD\s+0x[0-9a-f]+ {program.base:#018x} 0x0000000040000000 ",
                     run("aarch64-linux-gnu-readelf", "-lW", out))


# --------------------------------------------------------------------------
# The physical alias: head.S linked at 0x8000200000, run at 0x40000000 first

LOAD = 0x4000_0000


@pytest.fixture(scope="module")
def head_alias(head: tuple[Program, Path],
               tmp_path_factory: pytest.TempPathFactory) -> tuple[Program, Path]:
    program, _ = head
    out = tmp_path_factory.mktemp("alias") / "head.elf"
    write_elf(program, out, load_address=LOAD, physical_alias=True)
    return program, out


def symbol_rows(elf: Path, name: str) -> list[tuple[int, str, str, str]]:
    """readelf -s: (value, type, binding, section index) of every symbol called ``name``."""
    rows = []
    for row in run("aarch64-linux-gnu-readelf", "-sW", elf).splitlines():
        parts = row.split()
        if len(parts) == 8 and parts[0][:-1].isdigit() and parts[7] == name:
            rows.append((int(parts[1], 16), parts[3], parts[4], parts[6]))
    return rows


def test_alias_addr2line_names_head_s_lines_at_both_addresses(
        head: tuple[Program, Path], head_alias: tuple[Program, Path]) -> None:
    program, linked = head
    _, elf = head_alias
    switch = symbols(linked)["switch_ttbr_id"][0]
    physical = LOAD + switch - program.base
    assert (switch, physical) == (0x80_0020_1000, 0x4000_1000)
    dsb = line_of(HEAD, r"^\s+dsb\s+sy\b", after=line_of(HEAD, r"^switch_ttbr_id:"))
    isb = line_of(HEAD, r"^\s+isb\b", after=dsb)
    start = symbols(linked)["_start"][0]
    start_line = line_of(HEAD, r"^\s+mov\s+x21, x0\b", after=line_of(HEAD, r"^_start:"))
    assert addr2line(elf, [physical, switch, physical + 4, switch + 4, LOAD, start]) == [
        ("head.S", str(line)) for line in (dsb, dsb, isb, isb, start_line, start_line)]
    # Past the last instruction, as at the link address: no line.
    end = max(address for address, _text in disassembly(linked)) + 4
    assert addr2line(elf, [LOAD + end - program.base]) == addr2line(linked, [end])


def test_alias_symbols_and_loadable_contents(head: tuple[Program, Path],
                                             head_alias: tuple[Program, Path],
                                             tmp_path: Path) -> None:
    program, linked = head
    _, elf = head_alias
    out = run("aarch64-linux-gnu-readelf", "-a", "-W", "--debug-dump", elf)
    assert "warning" not in out.lower()
    # Each label twice: at its link address and, in the NOBITS twin of .text,
    # at its physical one.
    switch = symbols(linked)["switch_ttbr_id"][0]
    sections = run("aarch64-linux-gnu-readelf", "-SW", elf)
    twin = re.search(r"\[\s*(\d+)\] \.phys\.text\s+NOBITS\s+0*40000000 ", sections)
    assert twin, sections
    assert symbol_rows(elf, "switch_ttbr_id") == [
        (switch, "FUNC", "LOCAL", "1"), (0x4000_1000, "FUNC", "LOCAL", twin.group(1))]
    table = symbols(linked)["boot_pgtable"][0]
    assert [row[0] for row in symbol_rows(elf, "boot_pgtable")] == [
        table, LOAD + table - program.base]
    # The same loadable bytes and segments as without the alias.
    plain = tmp_path / "plain.elf"
    write_elf(program, plain, load_address=LOAD)
    segments = re.findall(r"^\s+LOAD\s.*$", run("aarch64-linux-gnu-readelf", "-lW", elf), re.M)
    assert segments == re.findall(r"^\s+LOAD\s.*$",
                                  run("aarch64-linux-gnu-readelf", "-lW", plain), re.M)
    assert len(segments) == 1
    assert re.search(rf"LOAD\s+0x[0-9a-f]+ {program.base:#018x} {LOAD:#018x} ", segments[0])
    flat = tmp_path / "alias.bin"
    run("aarch64-linux-gnu-objcopy", "-O", "binary", elf, flat)
    assert flat.read_bytes() == program.image
    assert disassembly(elf) == disassembly(linked)


@needs_gdb
def test_gdb_names_the_physical_alias(head_alias: tuple[Program, Path]) -> None:
    program, elf = head_alias
    dsb = line_of(HEAD, r"^\s+dsb\s+sy\b", after=line_of(HEAD, r"^switch_ttbr_id:"))
    out = gdb(elf, "info line *0x40001000", "break switch_ttbr_id", "info symbol 0x40001004",
              "info breakpoints")
    assert (f'Line {dsb} of "{HEAD}" starts at address 0x40001000 <switch_ttbr_id> '
            f'and ends at 0x40001004 <switch_ttbr_id+4>.') in out
    assert re.search(r"Breakpoint 1 at 0x[0-9a-f]+: switch_ttbr_id\. \(2 locations\)", out)
    assert re.search(r"^switch_ttbr_id \+ 4 in section \S+$", out, re.M)
    locations = re.findall(rf"^1\.\d\s+y\s+(0x[0-9a-f]+)\s+{re.escape(str(HEAD))}:(\d+)$",
                           out, re.M)
    assert sorted(locations) == [(f"{0x4000_1000:#018x}", str(dsb)),
                                 (f"{program.base + 0x1000:#018x}", str(dsb))]


def test_alias_only_where_the_physical_range_is_apart(small: tuple[Program, Path, Path]) -> None:
    program, _, _ = small
    plain = elf_bytes(program)
    # Default off; at the link address or overlapping it, there is no alias.
    assert elf_bytes(program, physical_alias=True) == plain
    assert elf_bytes(program, load_address=program.base, physical_alias=True) == plain
    assert (elf_bytes(program, load_address=program.base + 8, physical_alias=True)
            == elf_bytes(program, load_address=program.base + 8))
    far = 0x80_0000_0000
    alias = ELFFile(io.BytesIO(elf_bytes(program, load_address=far, physical_alias=True)))
    loaded = ELFFile(io.BytesIO(elf_bytes(program, load_address=far)))
    assert [s.header for s in alias.iter_segments()] == [s.header for s in
                                                          loaded.iter_segments()]
    twins = {s.name: s for s in alias.iter_sections() if s.name.startswith(".phys")}
    for section in program.sections:
        twin = twins[".phys" + section.name]
        assert twin["sh_type"] == "SHT_NOBITS" and twin["sh_size"] == section.size
        assert twin["sh_addr"] == far + section.address - program.base
    entries = [(sym.name, sym["st_value"], sym["st_info"]["bind"])
               for sym in alias.get_section_by_name(".symtab").iter_symbols()]
    for name, binding in (("entry", "STB_GLOBAL"), ("spare", "STB_WEAK"),
                          ("helper", "STB_LOCAL"), ("value", "STB_LOCAL")):
        value = program.symbols[name]
        assert sorted(row for row in entries if row[0] == name) == [
            (name, value, binding), (name, far + value - program.base, binding)]
    # The compile unit covers both ranges.
    dwarf = alias.get_dwarf_info()
    unit = next(dwarf.iter_CUs())
    offset = unit.get_top_DIE().attributes["DW_AT_ranges"].value
    spans = [(entry.begin_offset, entry.end_offset)
             for entry in dwarf.range_lists().get_range_list_at_offset(offset)]
    text = next(s for s in program.sections if s.name == ".text")
    assert spans == [(text.address, text.end),
                     (far + text.address - program.base, far + text.end - program.base)]
