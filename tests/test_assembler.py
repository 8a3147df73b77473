"""Tests of the keystone front-end (emu.assembler) and of the defect fixtures."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from emu import assembler
from emu.assembler import (
    AssemblyError,
    Program,
    SourceLocation,
    assemble_file,
    assemble_text,
    eval_c_integer,
    parse_define,
)
from emu.mutate import BUNDLED_DEFECTS, Defect, Edit, apply_defect, load_defects, materialize

ROOT = Path(__file__).resolve().parent.parent
HEAD = ROOT / "asm" / "head.S"
INCLUDE = ROOT / "asm" / "include"
GNU_TOOLS = ("aarch64-linux-gnu-as", "aarch64-linux-gnu-ld", "aarch64-linux-gnu-objcopy",
             "aarch64-linux-gnu-nm")
needs_gnu = pytest.mark.skipif(
    any(shutil.which(tool) is None for tool in GNU_TOOLS),
    reason="GNU binutils for aarch64 (binutils-aarch64-linux-gnu) not installed",
)


def gnu_build(source: Path, base: int, out: Path, include_dirs: list[Path]) -> tuple[bytes, str]:
    """Preprocess, assemble and link ``source`` with GNU tools; (flat binary, nm output)."""
    preprocessed = out / "source.s"
    flags = [f"-I{directory}" for directory in include_dirs]
    with preprocessed.open("w") as handle:
        subprocess.run(["cpp", "-x", "assembler-with-cpp", "-undef", "-nostdinc", "-P", *flags,
                        str(source)], check=True, stdout=handle)
    obj, elf, binary = out / "source.o", out / "source.elf", out / "source.bin"
    subprocess.run(["aarch64-linux-gnu-as", str(preprocessed), "-o", str(obj)], check=True)
    subprocess.run(["aarch64-linux-gnu-ld", f"-Ttext={base:#x}", "-e", f"{base:#x}", str(obj),
                    "-o", str(elf)], check=True)
    subprocess.run(["aarch64-linux-gnu-objcopy", "-O", "binary", str(elf), str(binary)],
                   check=True)
    nm = subprocess.run(["aarch64-linux-gnu-nm", str(elf)], check=True, capture_output=True,
                        text=True).stdout
    return binary.read_bytes(), nm


def gnu_bytes(text: str, base: int, tmp_path: Path) -> bytes:
    source = tmp_path / "gnu.S"
    source.write_text(text)
    return gnu_build(source, base, tmp_path, [])[0]


# --------------------------------------------------------------------------
# Definitions, expressions, link address


def test_parse_define() -> None:
    assert parse_define("XEN_VIRT_START=0x200000") == ("XEN_VIRT_START", "0x200000")
    assert parse_define("DEBUG") == ("DEBUG", "1")
    assert parse_define("EMPTY=") == ("EMPTY", "")
    assert parse_define("EXPR=(1 << 21)") == ("EXPR", "(1 << 21)")
    for bad in ("", "=3", "1ABC=2", "A-B=1", "A B"):
        with pytest.raises(ValueError, match="NAME=VALUE"):
            parse_define(bad)


@pytest.mark.parametrize(
    ("text", "value"),
    [
        ("0x0000008000200000", 0x8000200000),
        ("(512ULL << 30) + (2UL << 20)", 0x8000200000),
        ("0x10u * 4", 0x40),
        ("017", 15),
        ("~0", (1 << 64) - 1),
        ("-1", (1 << 64) - 1),
        ("(7 / 2) + (-7 / 2) + (7 % 3)", 3 - 3 + 1),
        ("(0xf0 | 0x0f) ^ 0x11 & 0xff", 0xEE),
        ("1 << 63 >> 63", 1),
    ],
)
def test_eval_c_integer(text: str, value: int) -> None:
    assert eval_c_integer(text) == value


@pytest.mark.parametrize("text", ["__import__('os')", "FOO + 1", "1 << 64", "1 / 0", "3.5",
                                  "1 if 2 else 3", "x[0]", ""])
def test_eval_c_integer_rejects(text: str) -> None:
    with pytest.raises(ValueError):
        eval_c_integer(text)


@given(st.integers(0, 2**32), st.integers(0, 2**32), st.integers(0, 63))
def test_eval_c_integer_matches_python(a: int, b: int, shift: int) -> None:
    expected = ((a + b) * 3 - (a ^ b) + ((a << shift) & 0xFFFF) + (b >> (shift % 32))) % 2**64
    text = (f"({a}UL + {b}) * 3 - ({a:#x} ^ {b}) + (({a} << {shift}) & 0xFFFF)"
            f" + ({b} >> {shift % 32})")
    assert eval_c_integer(text) == expected


def test_link_address_from_macro_base_argument_and_default() -> None:
    text = "#define LINK_ADDRESS ((512ULL << 30) + 0x200000)\n_start: nop\n"
    assert assemble_text(text, filename="t.S").base == 0x8000200000
    assert assemble_text(text, filename="t.S", base=0x1000).base == 0x1000
    assert assemble_text("_start: nop\n", filename="t.S").base == 0
    program = assemble_text(text, filename="t.S")
    assert program.symbols["_start"] == 0x8000200000
    assert program.end == 0x8000200004


def test_link_address_not_an_integer() -> None:
    with pytest.raises(AssemblyError, match=r"^t\.S: LINK_ADDRESS: not an integer"):
        assemble_text("#define LINK_ADDRESS undefined_thing\nnop\n", filename="t.S")


def test_defines_and_includes(tmp_path: Path) -> None:
    (tmp_path / "include").mkdir()
    (tmp_path / "include" / "values.h").write_text("#define IMM 7\n")
    extra = tmp_path / "extra"
    extra.mkdir()
    (extra / "more.h").write_text("#define OTHER (IMM + 1)\n")
    source = tmp_path / "prog.S"
    source.write_text('#include "values.h"\n#include "more.h"\n'
                      "mov x0, #IMM\nmov x1, #OTHER\nmov x2, #FROM_CLI\n")
    program = assemble_file(source, defines={"FROM_CLI": "5"}, include_dirs=[extra])
    assert program.code == bytes.fromhex("e00080d2010180d2a20080d2")
    assert program.defines["IMM"] == "7"
    assert program.defines["OTHER"] == "(IMM + 1)"
    assert program.defines["FROM_CLI"] == "5"
    # Only the program's own macros: no compiler built-ins, no host macros.
    assert "__STDC__" not in program.defines and "linux" not in program.defines
    assert program.source == str(source)


def test_function_like_macro_keeps_its_parameters() -> None:
    program = assemble_text("#define TWICE(x) ((x) * 2)\nmov x0, #TWICE(3)\n", filename="t.S")
    assert program.defines["TWICE"] == "(x) ((x) * 2)"
    assert program.code == bytes.fromhex("c00080d2")


def test_head_defines_expose_the_layout() -> None:
    program = assemble_file(HEAD)
    assert program.base == 0x0000008000200000
    assert program.defines["LINK_ADDRESS"] == "XEN_VIRT_START"
    assert eval_c_integer(program.defines["XEN_VIRT_START"]) == program.base
    for region in ("XEN_VIRT", "FIXMAP_VIRT", "VMAP_VIRT", "FRAMETABLE_VIRT", "DIRECTMAP_VIRT"):
        assert f"{region}_START" in program.defines and f"{region}_SIZE" in program.defines
    for code in ("BOOT_ERR_NOT_EL2", "BOOT_ERR_IDMAP_CLASH", "BOOT_ERR_MISALIGNED",
                 "BOOT_ERR_PA_RANGE"):
        assert program.defines[code].isdigit()


def test_layout_constants_can_be_overridden() -> None:
    program = assemble_file(HEAD, defines={"XEN_VIRT_START": "0x0000010000200000"})
    assert program.base == 0x0000010000200000
    with pytest.raises(AssemblyError, match=r"head\.S:\d+: XEN_VIRT_START must be 2 MiB aligned"):
        assemble_file(HEAD, defines={"XEN_VIRT_START": "0x0000008000201000"})


# --------------------------------------------------------------------------
# Numeric labels, symbols, lines, literal pools


NUMERIC = """\
_start:
1:  nop
    b       1b
    b       1f
    cbz     x0, 2f
1:  b       1b
2:  b       1b
    b.ne    1b
1:  b       1b
    b       3f
3:
"""


@needs_gnu
def test_numeric_labels_follow_gnu_semantics(tmp_path: Path) -> None:
    program = assemble_text(NUMERIC, filename="n.S", base=0x40000000)
    assert program.code == gnu_bytes(NUMERIC, 0x40000000, tmp_path)
    # Rewritten numeric labels are not symbols.
    assert list(program.symbols) == ["_start"]


def test_numeric_label_errors() -> None:
    with pytest.raises(AssemblyError) as caught:
        assemble_text("nop\n  b 1b\n1: nop\n", filename="n.S")
    assert str(caught.value).startswith("n.S:2: undefined local label '1b'")
    with pytest.raises(AssemblyError) as caught:
        assemble_text("nop\n1: nop\n  cbz x0, 1f\n", filename="n.S")
    assert str(caught.value).startswith("n.S:3: undefined local label '1f'")
    with pytest.raises(AssemblyError, match=r"^n\.S:3: numeric local label '1:' inside a \.macro"):
        assemble_text(".macro spin\n  nop\n1: b 1b\n.endm\n", filename="n.S")


def test_hex_immediates_are_not_numeric_labels() -> None:
    program = assemble_text("1: mov x0, #0x1b\n   mov x1, #0x1f\n   b 1b\n", filename="h.S")
    assert program.code == bytes.fromhex("600380d2e10380d2feffff17")


@needs_gnu
def test_head_symbols_match_gnu_nm(tmp_path: Path) -> None:
    program = assemble_file(HEAD)
    _, nm = gnu_build(HEAD, program.base, tmp_path, [HEAD.parent, INCLUDE])
    # Lower-case 't': the labels of the text section.  The linker adds global
    # symbols of its own (_end, __bss_start, ...), upper case, not compared.
    gnu = {}
    for line in nm.splitlines():
        parts = line.split()
        if len(parts) == 3 and parts[1] == "t":
            gnu[parts[2]] = int(parts[0], 16)
    assert gnu == program.symbols


def test_head_symbols_the_tools_rely_on() -> None:
    program = assemble_file(HEAD)
    for name in ("_start", "boot_failure", "enable_mmu", "primary_switched",
                 "create_boot_page_tables", "create_runtime_page_tables", "switch_ttbr_id",
                 "remove_identity_mapping", "start_c", "boot_pgtable", "runtime_pgtable",
                 "__bss_start", "__bss_end", "_end"):
        assert name in program.symbols, name
    page = 0x1000
    assert program.symbols["switch_ttbr_id"] % page == 0
    assert program.symbols["__bss_start"] == program.symbols["switch_ttbr_id"] + page
    assert program.symbols["_end"] == program.end
    assert program.symbols["_start"] == program.base


LINES = """\
#include "mac.h"
_start:
    nop                         // line 3
    twice x1                    // line 4: macro from the header
    .rept 2
    add x2, x2, #1
    .endr                       // lines 5-7: the .rept line owns the bytes
    nop ; nop                   // line 8: two statements
label:
    .align 4                    // line 10: padding
    mov x3, #HEADER_IMM         // line 11
    ldr x4, =0x123456789        // line 12
"""

HEADER = """\
#define HEADER_IMM 9
.macro twice, r
    add \\r, \\r, #1
    add \\r, \\r, #1
.endm
"""


def test_line_mapping(tmp_path: Path) -> None:
    (tmp_path / "mac.h").write_text(HEADER)
    source = tmp_path / "lines.S"
    source.write_text(LINES)
    program = assemble_file(source)
    name = str(source)
    expected = [3, 4, 4, 5, 5, 8, 8, 10, 11, 12]
    got = [program.location_of(address) for address in range(program.base, program.base + 40, 4)]
    assert got == [SourceLocation(name, line) for line in expected]
    assert [location.line for _, location in program.lines] == [3, 4, 5, 8, 8, 10, 11, 12]
    assert program.lines == sorted(program.lines, key=lambda entry: entry[0])
    # The literal pool keystone adds at the end belongs to no statement.
    assert len(program.code) == 48
    assert program.location_of(program.base + 40) is None
    assert program.location_of(program.base - 4) is None
    assert program.location_of(program.end) is None
    assert str(program.location_of(program.base)) == f"{name}:3"


def test_symbolize() -> None:
    text = "_start:\n  nop\n.Lloop: nop\nsecond:\nthird: nop\n  nop\n"
    program = assemble_text(text, filename="s.S", base=0x1000)
    assert program.symbolize(0x1000) == ("_start", 0)
    assert program.symbolize(0x1004) == (".Lloop", 0)
    assert program.symbolize(0x1008) == ("third", 0)  # last label at an address wins
    assert program.symbolize(0x100C) == ("third", 4)
    assert program.symbolize(0x0FFC) is None
    assert program.symbolize(0x1010) is None
    assert assemble_text("nop\nlate: nop\n", filename="s.S").symbolize(0) is None


POOLS = """\
_start:
    ldr     x0, =0x123456789
    ldr     x1, =target
    mov     x2, #5
target:
    ldr     x3, =0xfedcba9876543210
    b       _start
    .align  3
    .ltorg
after:
    ldr     x4, =after
    nop
"""


@pytest.mark.parametrize("base", [0, 0x8000200000])
def test_literal_pools_unaffected_by_symbol_recovery(base: int) -> None:
    program = assemble_text(POOLS, filename="p.S", base=base)
    plain = assembler._run_keystone(POOLS, base)
    assert isinstance(plain, bytes)
    assert program.code == plain
    assert program.symbols == {"_start": base, "target": base + 12, "after": base + 48}


@needs_gnu
def test_literal_pools_match_gnu(tmp_path: Path) -> None:
    program = assemble_text(POOLS, filename="p.S", base=0x8000200000)
    assert program.code == gnu_bytes(POOLS, 0x8000200000, tmp_path)


# Known differences between keystone and GNU as, kept visible as strict
# xfails (head.S avoids both: each literal is used once, and the pool is
# aligned explicitly).
KNOWN_GNU_DIFFERENCES = {
    # keystone emits one pool entry per ldr =, GNU as shares equal entries
    "duplicate-literals": "_start:\n  ldr x0, =_start\n  ldr x1, =_start\n  .align 3\n  .ltorg\n",
    # keystone pads an unaligned pool with nop, GNU as with zeros
    "pool-padding": "_start:\n  ldr x0, =0x123456789\n  .ltorg\n",
}


@needs_gnu
@pytest.mark.xfail(strict=True, reason="keystone and GNU as lay out these pools differently")
@pytest.mark.parametrize("case", sorted(KNOWN_GNU_DIFFERENCES))
def test_known_pool_differences_from_gnu(case: str, tmp_path: Path) -> None:
    text = KNOWN_GNU_DIFFERENCES[case]
    program = assemble_text(text, filename="d.S", base=0x40000000)
    assert program.code == gnu_bytes(text, 0x40000000, tmp_path)


def test_program_is_the_documented_dataclass() -> None:
    program = assemble_text("a: nop\n", filename="x.S")
    assert isinstance(program, Program)
    assert program.code == bytes.fromhex("1f2003d5")


# --------------------------------------------------------------------------
# Errors


def test_immediate_out_of_range_names_the_line() -> None:
    text = "_start:\n    nop\n    cmp x19, #0x8000200000\n    nop\n"
    with pytest.raises(AssemblyError) as caught:
        assemble_text(text, filename="head.S")
    assert str(caught.value) == "head.S:3: immediate out of range"
    assert caught.value.location == SourceLocation("head.S", 3)


def test_keystone_crash_becomes_an_error_and_the_process_survives() -> None:
    text = "#define LINK_ADDRESS 0x8000200000\n_start:\n    nop\n    add x0, x0, :lo12:_start\n"
    with pytest.raises(AssemblyError) as caught:
        assemble_text(text, filename="crash.S")
    assert str(caught.value) == (
        "crash.S:4: keystone crashed (LLVM ERROR: invalid imm12 fixup value)")


def test_forward_branch_out_of_range_is_located() -> None:
    text = "nop\nnop\ncbz x0, far\nnop\n.space 0x200000\nfar: nop\n"
    with pytest.raises(AssemblyError) as caught:
        assemble_text(text, filename="far.S")
    assert str(caught.value) == "far.S:3: keystone crashed (LLVM ERROR: fixup value out of range)"


def test_segfaulting_directive_is_reported() -> None:
    text = 'nop\n.section .text.header, "ax"\nnop\n.data\nnop\n'
    with pytest.raises(AssemblyError, match=r"^seg\.S:\d: keystone crashed \(SIG"):
        assemble_text(text, filename="seg.S")


def test_error_in_an_included_header_names_the_header(tmp_path: Path) -> None:
    (tmp_path / "include").mkdir()
    header = tmp_path / "include" / "bad.h"
    header.write_text("/* a header */\n\n    cmp x19, #0x8000200000\n")
    source = tmp_path / "main.S"
    source.write_text('nop\n#include "bad.h"\nnop\n')
    with pytest.raises(AssemblyError) as caught:
        assemble_file(source)
    assert caught.value.location is not None
    assert Path(caught.value.location.file).name == "bad.h"
    assert caught.value.location.line == 3
    assert str(caught.value).endswith("bad.h:3: immediate out of range")


def test_error_inside_a_macro_names_the_invocation(tmp_path: Path) -> None:
    (tmp_path / "mac.h").write_text(".macro far_cmp\n    cmp x0, #0x8000200000\n.endm\n")
    source = tmp_path / "m.S"
    source.write_text('#include "mac.h"\nnop\n    far_cmp\n')
    with pytest.raises(AssemblyError) as caught:
        assemble_file(source)
    assert caught.value.location == SourceLocation(str(source), 3)


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("nop\nfoo x0\n", "e.S:2: invalid mnemonic"),
        ("nop\nb nowhere\n", "e.S:2: undefined symbol"),
        ("nop\nand x0, x1, #5\n", "e.S:2: immediate cannot be encoded"),
        ('nop\n.if 1\n.error "too big"\n.endif\n', "e.S:3: too big"),
    ],
)
def test_keystone_errors(text: str, expected: str) -> None:
    with pytest.raises(AssemblyError) as caught:
        assemble_text(text, filename="e.S")
    assert str(caught.value) == expected


def test_false_error_directive_is_ignored() -> None:
    assert assemble_text('.if 0\n.error "no"\n.endif\nnop\n', filename="e.S").code


def test_preprocessor_errors(tmp_path: Path) -> None:
    with pytest.raises(AssemblyError) as caught:
        assemble_text('nop\n#include "missing.h"\n', filename="pp.S")
    assert str(caught.value).startswith("pp.S:2: missing.h: No such file")
    (tmp_path / "stop.h").write_text("\n#error layout not supported\n")
    source = tmp_path / "pp.S"
    source.write_text('#include "stop.h"\n')
    with pytest.raises(AssemblyError) as caught:
        assemble_file(source)
    assert str(caught.value) == f"{tmp_path / 'stop.h'}:2: #error layout not supported"
    with pytest.raises(AssemblyError, match=r"^nothere\.S: cannot read the source"):
        assemble_file("nothere.S")


def test_missing_preprocessor_is_reported(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(assembler.shutil, "which", lambda name: None)
    with pytest.raises(AssemblyError, match="C preprocessor 'cpp' was not found"):
        assemble_text("nop\n", filename="x.S")


def test_error_string_forms() -> None:
    assert str(AssemblyError("bad", SourceLocation("a.S", 4))) == "a.S:4: bad"
    assert str(AssemblyError("bad", None, file="a.S")) == "a.S: bad"
    assert str(AssemblyError("bad", None)) == "bad"


# --------------------------------------------------------------------------
# Defects


def test_every_defect_applies_and_assembles(tmp_path: Path) -> None:
    defects = load_defects(BUNDLED_DEFECTS)
    names = {defect.name for defect in defects}
    assert {"ttbr-write-mmu-on", "switch-at-virtual-address", "switch-calls-helper-outside-idmap",
            "switch-without-tlbi", "enable-without-tlbi", "idmap-wrong-page"} <= names
    original = assemble_file(HEAD)
    for defect in defects:
        assert defect.rules and defect.description and defect.edits
        path = materialize(defect, HEAD, tmp_path)
        assert path == tmp_path / f"{defect.name}.S"
        program = assemble_file(path)  # the copied include/ makes it stand alone
        assert program.code != original.code, defect.name
        assert program.base == original.base
        assert "switch_ttbr_id" in program.symbols and "start_c" in program.symbols


def test_defect_rules_are_as_documented() -> None:
    rules = {defect.name: defect.rules for defect in load_defects(BUNDLED_DEFECTS)}
    assert rules["ttbr-write-mmu-on"] == ["ttbr-switch-live"]
    assert rules["switch-at-virtual-address"] == ["mmu-toggle-off-identity"]
    assert rules["switch-calls-helper-outside-idmap"] == ["fetch-outside-identity"]
    assert rules["switch-without-tlbi"] == ["missing-tlbi"]
    assert rules["enable-without-tlbi"] == ["missing-tlbi"]
    assert rules["idmap-wrong-page"] == [
        "fetch-outside-identity", "mmu-toggle-off-identity", "unexpected-exception"
    ]


def test_apply_defect_requires_exactly_one_match() -> None:
    missing = Defect("gone", ["r"], "d", [Edit(find="no such text", replace="")])
    with pytest.raises(ValueError, match=r"defect 'gone', edit 1: .* not found .*'no such text'"):
        apply_defect("nop\n", missing)
    twice = Defect("twice", ["r"], "d", [Edit(find="nop", replace="wfe")])
    with pytest.raises(ValueError, match=r"defect 'twice', edit 1: .* found 2 times"):
        apply_defect("nop\nnop\n", twice)
    chained = Defect("chain", ["r"], "d", [Edit("a", "b"), Edit("bc", "x")])
    assert apply_defect("ac", chained) == "x"


def test_load_defects_validates(tmp_path: Path) -> None:
    bad = tmp_path / "bad.toml"
    bad.write_text('[[defect]]\nname = "x"\nrules = []\ndescription = "d"\n'
                   '[[defect.edit]]\nfind = "a"\nreplace = "b"\n')
    with pytest.raises(ValueError, match="defect 'x': rules must be"):
        load_defects(bad)
    bad.write_text('[[defect]]\nname = "Bad Name"\nrules = ["r"]\ndescription = "d"\n')
    with pytest.raises(ValueError, match="name must be"):
        load_defects(bad)
    bad.write_text('[[defect]]\nname = "y"\nrules = ["r"]\ndescription = "d"\n')
    with pytest.raises(ValueError, match="defect 'y': needs at least one"):
        load_defects(bad)
