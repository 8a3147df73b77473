"""Tests of the assembler front-end's own behaviour (emu.asm.assembler and its modules).

Comparisons with GNU as are in test_assembler_gnu.py, the corpus of bad
sources in test_assembler_bad.py, the ``bootemu asm`` command in
test_assembler_cli.py.  The defect fixtures, which are edits of asm/head.S
that must assemble, are checked at the end of this file.
"""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from emu.analysis.corpus import (
    BUNDLED_DEFECTS,
    Defect,
    Edit,
    apply_defect,
    load_defects,
    materialize,
)
from emu.asm import assembler, preprocess
from emu.asm import encode as asm_encode
from emu.asm import keystone_runner as asm_keystone
from emu.asm.assembler import assemble_file, assemble_text
from emu.asm.expr import ExpressionError, Value, evaluate
from emu.asm.preprocess import eval_c_integer, parse_define
from emu.asm.program import Program
from emu.asm.source import AssemblyError, KeystoneCrash, SourceLocation

ROOT = Path(__file__).resolve().parent.parent
HEAD = ROOT / "asm" / "head.S"
INCLUDE = ROOT / "asm" / "include"


@pytest.fixture(autouse=True)
def isolated_cache(tmp_path_factory: pytest.TempPathFactory,
                   monkeypatch: pytest.MonkeyPatch) -> Iterator[Path]:
    """Each test gets an empty disk cache of its own and an empty memory cache."""
    directory = tmp_path_factory.mktemp("cache")
    monkeypatch.setenv("BOOTEMU_CACHE_DIR", str(directory))
    assembler.clear_cache()
    yield directory
    assembler.clear_cache()


def code_of(text: str, base: int = 0) -> str:
    return assemble_text(text, filename="t.S", base=base).code.hex()


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


@pytest.mark.parametrize(
    ("text", "value"),
    [
        ("1 << 2 + 3", 7),  # GNU: << binds tighter than +; C would give 32
        ("6 & 3 + 1", 3),
        ("2 == 1 + 1", -1),  # a true comparison is all ones
        ("5 > 3", -1),
        ("3 ! 1", -1),  # or-not
        ("-7 / 2", -3),
        ("-7 % 2", -1),
        ("~0 >> 1", (1 << 63) - 1),  # logical shift
        ("0x8000000000000000 / 2", -(1 << 62)),  # signed division
        ("1 && 2", 1),
        ("0 || 3", 1),
        ("'A + 1", 66),
        ("(1 + 2) * 3", 9),
    ],
)
def test_gnu_expression_rules(text: str, value: int) -> None:
    assert evaluate(text, lambda name: Value(0)).offset == value


def test_expression_values_relative_to_sections() -> None:
    symbols = {"a": Value(8, "text"), "b": Value(20, "text"), "d": Value(4, "data")}

    def resolve(name: str) -> Value:
        return symbols[name]

    assert evaluate("b - a", resolve) == Value(12)
    assert evaluate("a + 4", resolve) == Value(12, "text")
    for bad in ("a + b", "d - a", "a * 2"):
        with pytest.raises(ExpressionError):
            evaluate(bad, resolve)
    for bad in ("(1", "1 +", "1 2", "1 / 0", "1 << 64"):
        with pytest.raises(ExpressionError):
            evaluate(bad, resolve)


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


def test_link_address_must_suit_the_first_section() -> None:
    with pytest.raises(AssemblyError, match=r"link address 0x1004 is not aligned to the "
                                            r"4096-byte alignment"):
        assemble_text(".align 12\n_start: nop\n", filename="t.S", base=0x1004)


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
    assert "__aarch64__" not in program.defines
    assert program.source == str(source)


def test_the_target_is_aarch64_for_the_preprocessor() -> None:
    text = ("#if defined(__aarch64__) && defined(__ASSEMBLER__) && !defined(__x86_64__)\n"
            "nop\n#endif\n")
    assert code_of(text) == "1f2003d5"


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
# The Program: symbols, sections, lines


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
    # The image fits the 2 MiB block the boot tables map (head.S cannot check it itself).
    assert program.symbols["_end"] - program.symbols["_start"] <= 2 << 20


def test_every_instruction_of_head_has_its_source_line() -> None:
    program = assemble_file(HEAD)
    text = HEAD.read_text().splitlines()
    for address in range(program.base, program.symbols["__bss_start"], 4):
        if not program.is_code(address):
            continue
        location = program.location_of(address)
        assert location is not None and location.file == str(HEAD), hex(address)
        source_line = text[location.line - 1].split("//")[0].split("/*")[0]
        mnemonic = program.text_of(address).split()[0]  # type: ignore[union-attr]
        # The source line holds the instruction or the macro that produced it.
        first_word = source_line.split()[0].split("(")[0]
        assert mnemonic in source_line or first_word in (
            "set_table_entry", "set_leaf_entry", "read_pa_range", "STATIC_REGIONS"), (
            hex(address), location, source_line)


LINES = """\
#include "mac.h"
_start:
    nop                         // line 3
    twice x1                    // line 4: macro from the header
    .rept 2
    add x2, x2, #1
    .endr                       // lines 5-7: each repetition is line 6
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
    expected = [3, 4, 4, 6, 6, 8, 8, 10, 11, 12]
    got = [program.location_of(address) for address in range(program.base, program.base + 40, 4)]
    assert got == [SourceLocation(name, line) for line in expected]
    assert [location.line for _, location in program.lines] == expected
    assert program.lines == sorted(program.lines, key=lambda entry: entry[0])
    assert program.text_of(program.base + 4) == "add x1, x1, #1"  # as expanded
    assert program.text_of(program.base + 28) == ".align 4"
    # The literal pool GNU as puts at the end of the section belongs to no statement.
    assert len(program.code) == 48
    assert program.location_of(program.base + 40) is None
    assert not program.is_code(program.base + 40)
    assert program.location_of(program.base - 4) is None
    assert program.location_of(program.end) is None
    assert str(program.location_of(program.base)) == f"{name}:3"
    assert program.line_kinds.count("data") == 0 and program.is_code(program.base + 28)


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


SECTIONS = """\
    .globl _start
    .section .text.header, "ax"
_start:
    adrp    x0, table
    add     x0, x0, :lo12:table
    ldr     x1, [x0, #:lo12:table + 8]
    b       main
    .text
main:
    ldr     x2, =message
    ret
    .size main, . - main
    .section .rodata
message:
    .asciz  "hello"
    .data
    .balign 8
table:
    .quad   1, 2
    .equ    ENTRIES, (. - table) / 8
    .bss
    .balign 16
stack:
    .space  0x100
stack_top:
"""


def test_sections_are_laid_out_in_order() -> None:
    program = assemble_text(SECTIONS, filename="sec.S", base=0x4000_0000)
    layout = [(s.name, s.kind, s.address, s.size) for s in program.sections]
    assert layout == [
        (".text.header", "text", 0x4000_0000, 16),
        (".text", "text", 0x4000_0010, 16),  # ldr, ret, then its 8-byte pool
        (".rodata", "rodata", 0x4000_0020, 6),
        (".data", "data", 0x4000_0028, 16),
        (".bss", "bss", 0x4000_0040, 0x100),
    ]
    assert program.symbols["main"] == 0x4000_0010
    assert program.symbols["table"] == 0x4000_0028
    assert program.symbols["stack_top"] == 0x4000_0140
    assert program.constants == {"ENTRIES": 2}
    assert program.sizes == {"main": 8}
    # The file image stops before .bss; the memory image includes it, zeroed.
    assert len(program.image) == 0x38 and program.end == 0x4000_0140
    assert program.code[0x40:] == bytes(0x100)
    # add x0, x0, :lo12:table and ldr x1, [x0, #:lo12:table + 8] (scaled by 8).
    assert program.code[4:8] == bytes.fromhex("00a00091")
    assert program.code[8:12] == bytes.fromhex("011840f9")
    nm = {name: (value, letter) for value, letter, name in program.nm()}
    assert nm["_start"] == (0x4000_0000, "T")
    assert nm["message"] == (0x4000_0020, "r")
    assert nm["table"] == (0x4000_0028, "d")
    assert nm["stack"] == (0x4000_0040, "b")
    assert nm["ENTRIES"] == (2, "a")


def test_literal_pools_are_gnu_style() -> None:
    text = ("_start:\n  ldr x0, =0x10\n  ldr x1, =_start\n  ldr x2, =_start\n"
            "  ldr w3, =0x10\n  .ltorg\nafter:\n  ldr x4, =0x10\n")
    program = assemble_text(text, filename="p.S", base=0x1000)
    words = [int.from_bytes(program.code[i:i + 4], "little") for i in range(0, 16, 4)]
    # ldr x0, =0x10 stays a literal load (keystone would emit mov x0, #0x10).
    assert all(word >> 24 in (0x58, 0x18) for word in words)
    # 4-byte pool first (aligned with zeros), then the 8-byte pool, entries shared.
    assert program.code[16:20] == (0x10).to_bytes(4, "little")
    assert program.code[20:24] == bytes(4)
    assert program.code[24:32] == (0x10).to_bytes(8, "little")
    assert program.code[32:40] == (0x1000).to_bytes(8, "little")
    assert len(program.code) == 40 + 4 + 4 + 8  # after: ldr, padding, its own pool
    assert program.symbols["after"] == 0x1028


def test_numeric_labels_inside_macros_get_gnu_semantics() -> None:
    text = ".macro wait reg\n1:  cbz \\reg, 1f\n    b 1b\n1:\n.endm\n_start:\n wait x0\n wait x1\n"
    program = assemble_text(text, filename="m.S")
    assert program.code.hex() == "400000b4ffffff17410000b4ffffff17"
    assert list(program.symbols) == ["_start"]  # numeric labels are not symbols


def test_numeric_label_errors() -> None:
    with pytest.raises(AssemblyError) as caught:
        assemble_text("nop\n  b 1b\n1: nop\n", filename="n.S")
    assert str(caught.value).startswith("n.S:2: undefined local label `1b'")
    with pytest.raises(AssemblyError) as caught:
        assemble_text("nop\n1: nop\n  cbz x0, 1f\n", filename="n.S")
    assert str(caught.value).startswith("n.S:3: undefined local label `1f'")


def test_hex_immediates_are_not_numeric_labels() -> None:
    assert code_of("1: mov x0, #0x1b\n   mov x1, #0x1f\n   b 1b\n") == "600380d2e10380d2feffff17"


def test_program_round_trips_through_json() -> None:
    program = assemble_text(SECTIONS, filename="sec.S", base=0x4000_0000)
    again = Program.from_dict(json.loads(json.dumps(program.to_dict())))
    assert again == program
    copy = program.copy()
    copy.symbols["extra"] = 1
    assert "extra" not in program.symbols


def test_program_is_the_documented_dataclass() -> None:
    program = assemble_text("a: nop\n", filename="x.S")
    assert isinstance(program, Program)
    assert program.code == bytes.fromhex("1f2003d5")


# --------------------------------------------------------------------------
# Errors


def test_xen_cmp_immediate_out_of_range_reads_like_gnu_as(tmp_path: Path) -> None:
    # Xen's layout rework: XEN_VIRT_START = 512 GiB + 2 MiB no longer fits cmp.
    source = tmp_path / "head.S"
    source.write_text("#define XEN_VIRT_START ((512 << 30) + (2 << 20))\n_start:\n"
                      "    adr x19, _start\n    cmp x19, #XEN_VIRT_START\n")
    with pytest.raises(AssemblyError) as caught:
        assemble_file(source)
    assert str(caught.value) == f"{source}:4: immediate out of range"
    assert caught.value.location == SourceLocation(str(source), 4)
    assert not isinstance(caught.value, KeystoneCrash)
    # The fix Xen made assembles.
    source.write_text("#define XEN_VIRT_START ((512 << 30) + (2 << 20))\n_start:\n"
                      "    adr x19, _start\n    ldr x0, =XEN_VIRT_START\n    cmp x19, x0\n")
    assert assemble_file(source).code


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


def test_error_inside_a_macro_names_the_invocation_and_the_body(tmp_path: Path) -> None:
    (tmp_path / "mac.h").write_text(".macro far_cmp\n    cmp x0, #0x8000200000\n.endm\n")
    source = tmp_path / "m.S"
    source.write_text('#include "mac.h"\nnop\n    far_cmp\n')
    with pytest.raises(AssemblyError) as caught:
        assemble_file(source)
    assert caught.value.location == SourceLocation(str(source), 3)
    assert str(caught.value).endswith(f"immediate out of range (in macro `far_cmp' at "
                                      f"{tmp_path / 'mac.h'}:2)")


def test_the_first_error_in_source_order_is_reported() -> None:
    # GNU as reports in order: the bad instruction (found by keystone) on line
    # 2 comes before the unterminated .if (found while reading) on line 3.
    with pytest.raises(AssemblyError, match=r"^e\.S:2: unknown mnemonic `frob'"):
        assemble_text("nop\nfrob x0\n.if 1\nnop\n", filename="e.S")
    with pytest.raises(AssemblyError, match=r"^e\.S:2: undefined symbol `nowhere'"):
        assemble_text("nop\nb nowhere\nmov x0, #0x123456789\n", filename="e.S")


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("nop\nfoo x0\n", "e.S:2: unknown mnemonic `foo' -- `foo x0'"),
        ("nop\nb nowhere\n", "e.S:2: undefined symbol `nowhere'"),
        ("nop\nand x0, x1, #5\n",
         "e.S:2: immediate out of range at operand 3 -- `and x0,x1,#5'"),
        ("nop\nmov x0, #0x123456789\n", "e.S:2: immediate cannot be moved by a single instruction"),
        ('nop\n.if 1\n.error "too big"\n.endif\n', "e.S:3: too big"),
        ("nop\n.err\n", "e.S:2: .err encountered"),
        ("nop\nldr x0, [x1, #32768]\n", "e.S:2: immediate offset out of range"),
        ("nop\ntbz w0, #32, .\n", "e.S:2: immediate value out of range 0 to 31 at operand 2 "
                                   "-- `tbz w0,#32,.'"),
        ("x: nop\nx: nop\n", "e.S:2: symbol `x' is already defined"),
        (".foo\n", "e.S:1: unknown pseudo-op: `.foo'"),
        ("nop\n.endif\n", 'e.S:2: ".endif" without ".if"'),
        ("nop\nadd x0, x0, #(1 + \n", "e.S:2: missing operand"),
    ],
)
def test_errors_read_like_gnu_as(text: str, expected: str) -> None:
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
    monkeypatch.setattr(preprocess.shutil, "which", lambda name: None)
    with pytest.raises(AssemblyError, match="C preprocessor 'cpp' was not found"):
        assemble_text("nop\n", filename="x.S")


def test_error_string_forms() -> None:
    assert str(AssemblyError("bad", SourceLocation("a.S", 4))) == "a.S:4: bad"
    assert str(AssemblyError("bad", None, file="a.S")) == "a.S: bad"
    assert str(AssemblyError("bad", None)) == "bad"
    assert issubclass(KeystoneCrash, AssemblyError)


def test_runaway_repetition_fails_instead_of_hanging() -> None:
    with pytest.raises(AssemblyError, match=r"r\.S:1: \.rept 1000000000 would expand"):
        assemble_text(".rept 1000000000\nnop\n.endr\n", filename="r.S")
    with pytest.raises(AssemblyError, match=r"larger than 256 MiB"):
        assemble_text("nop\n.space 0x100000000\n", filename="r.S")


# --------------------------------------------------------------------------
# Keystone in a child process


KEYSTONE_CRASHERS = {
    # DESIGN.md §3: each of these kills a process that runs keystone.
    "lo12": ("ldr x1, [x0, #:lo12:0x1001]", "LLVM ERROR: invalid imm12 fixup value"),
    "cbz-out-of-range": ("cbz x0, far\n.space 0x200000\nfar: nop",
                         "LLVM ERROR: fixup value out of range"),
    "section-then-data": ('nop\n.section .text.header, "ax"\nnop\n.data\nnop', "SIGSEGV"),
}


@pytest.mark.parametrize("case", sorted(KEYSTONE_CRASHERS))
def test_keystone_crashers_only_kill_the_child(case: str) -> None:
    source, cause = KEYSTONE_CRASHERS[case]
    result = asm_keystone.encode([source], base=0x4000_0000)[source]
    assert result.crashed and result.code is None
    assert result.message.startswith("keystone crashed (") and cause in result.message
    # We are still here, and keystone still works (in a new child).
    assert asm_keystone.encode(["nop"])["nop"].code == bytes.fromhex("1f2003d5")


def test_the_front_end_assembles_the_crashers_sources() -> None:
    # What kills keystone is handled before keystone sees it.
    program = assemble_text('_start: adrp x0, _start\n  add x0, x0, :lo12:_start\n'
                            '  .section .text.header, "ax"\n  nop\n  .data\n  .quad 1\n',
                            filename="c.S", base=0x4000_0000)
    assert [s.name for s in program.sections] == [".text.header", ".text", ".data"]


def test_a_crash_inside_an_assembly_is_a_typed_error_naming_the_line(
        monkeypatch: pytest.MonkeyPatch) -> None:
    # Make the front-end hand :lo12: to keystone as it is, as a stand-in for
    # a statement keystone crashes on that nobody knows about yet.
    monkeypatch.setattr(asm_encode._Encoder, "_relocation",
                        lambda self, kind, expression, *rest: f"#:{kind}:0x1001")
    asm_keystone.reset()
    text = "_start:\n    nop\n    ldr x1, [x0, #:lo12:_start]\n    nop\n"
    with pytest.raises(KeystoneCrash) as caught:
        assemble_text(text, filename="crash.S")
    assert str(caught.value) == ("crash.S:3: keystone crashed (LLVM ERROR: invalid imm12 "
                                 "fixup value)")
    assert caught.value.location == SourceLocation("crash.S", 3)


def test_a_hanging_keystone_is_stopped(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(asm_keystone, "_BASE_TIMEOUT", 1.0)
    hang = ".rept 1000000000\nnop\n.endr"  # keystone would take minutes
    started = time.monotonic()
    result = asm_keystone.encode([hang])[hang]
    assert time.monotonic() - started < 10
    assert result.crashed and result.transient and "did not answer in time" in result.message
    assert asm_keystone.encode(["ret"])["ret"].code == bytes.fromhex("c0035fd6")


# --------------------------------------------------------------------------
# Caching


def _forbid_keystone(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    calls: list[str] = []

    def refuse(texts: list[str], base: int) -> dict[str, object]:
        calls.append("keystone")
        raise AssertionError("keystone was run again")

    monkeypatch.setattr(asm_keystone, "_run", refuse)
    monkeypatch.setattr(asm_keystone, "_Child", lambda: refuse([], 0))
    return calls


def test_second_assembly_starts_no_keystone_child(monkeypatch: pytest.MonkeyPatch,
                                                   isolated_cache: Path) -> None:
    asm_keystone.reset()
    first = assemble_file(HEAD)
    assert asm_keystone.STATS.children_started >= 1
    started = asm_keystone.STATS.children_started
    _forbid_keystone(monkeypatch)
    assert assemble_file(HEAD) == first  # from memory
    # A new process has an empty memory cache and no memoized encodings: the
    # disk cache answers, still without keystone.
    assembler.clear_cache()
    asm_keystone.reset()
    assert assemble_file(HEAD) == first
    assert asm_keystone.STATS.children_started == started
    assert list(isolated_cache.glob("*.json"))


def test_a_thousand_assemblies_pay_once(monkeypatch: pytest.MonkeyPatch) -> None:
    first = assemble_file(HEAD)
    calls = _forbid_keystone(monkeypatch)
    cpp_runs: list[object] = []
    real_run = preprocess.subprocess.run
    monkeypatch.setattr(preprocess.subprocess, "run",
                        lambda *args, **kwargs: cpp_runs.append(args) or real_run(*args, **kwargs))
    started = time.perf_counter()
    for _ in range(1000):
        program = assemble_file(HEAD)
    elapsed = time.perf_counter() - started
    assert program == first and calls == [] and cpp_runs == []  # not even cpp ran
    assert elapsed < 5, elapsed
    # Handed-out programs are copies: changing one does not change the cache.
    program.symbols.clear()
    assert assemble_file(HEAD).symbols == first.symbols


def test_cache_notices_changed_headers_and_included_files(tmp_path: Path) -> None:
    (tmp_path / "value.h").write_text("#define VALUE 1\n")
    (tmp_path / "part.inc").write_text("mov x1, #1\n")
    source = tmp_path / "c.S"
    source.write_text('#include "value.h"\n_start: mov x0, #VALUE\n.include "part.inc"\n'
                      "#ifdef EXTRA\nmov x2, #EXTRA\n#endif\n")
    assert assemble_file(source).code.hex() == "200080d2210080d2"
    (tmp_path / "value.h").write_text("#define VALUE 2\n")
    assert assemble_file(source).code.hex() == "400080d2210080d2"
    (tmp_path / "part.inc").write_text("mov x1, #3\n")
    assert assemble_file(source).code.hex() == "400080d2610080d2"
    # Definitions and the link address are part of the key too.
    assert assemble_file(source, defines={"EXTRA": "3"}).code.hex().endswith("620080d2")
    assert assemble_file(source, base=0x1000).base == 0x1000


def test_errors_are_cached_too(monkeypatch: pytest.MonkeyPatch) -> None:
    text = "nop\nfrob x0\n"
    with pytest.raises(AssemblyError) as first:
        assemble_text(text, filename="e.S")
    _forbid_keystone(monkeypatch)
    assembler.clear_cache()
    with pytest.raises(AssemblyError) as second:
        assemble_text(text, filename="e.S")
    assert str(second.value) == str(first.value)
    assert second.value.location == first.value.location


def test_cache_can_be_turned_off(monkeypatch: pytest.MonkeyPatch, isolated_cache: Path) -> None:
    monkeypatch.setenv("BOOTEMU_CACHE", "off")
    assemble_text("nop\n", filename="x.S")
    assert not list(isolated_cache.glob("*.json"))
    assert assemble_text("nop\n", filename="x.S", cache=False).code == bytes.fromhex("1f2003d5")


def test_a_corrupt_cache_entry_is_ignored(isolated_cache: Path) -> None:
    first = assemble_text("nop\n", filename="x.S")
    for entry in isolated_cache.glob("*.json"):
        entry.write_text("{not json")
    assembler.clear_cache()
    assert assemble_text("nop\n", filename="x.S") == first


# --------------------------------------------------------------------------
# Defects


def test_every_defect_applies_and_assembles(tmp_path: Path) -> None:
    defects = load_defects(BUNDLED_DEFECTS)
    names = {defect.name for defect in defects}
    assert {"ttbr-write-mmu-on", "switch-at-virtual-address", "switch-syncs-in-helper-after-mmu-on",
            "switch-without-tlbi", "enable-without-tlbi", "idmap-wrong-page"} <= names
    original = assemble_file(HEAD)
    for defect in defects:
        assert defect.rules and defect.description and defect.edits
        path = materialize(defect, HEAD, tmp_path)
        assert path == tmp_path / f"{defect.name}.S"
        program = assemble_file(path)  # the copied include/ makes it stand alone
        assert program.code != original.code, defect.name
        moves_image = any("XEN_VIRT_START" in edit.replace for edit in defect.edits)
        # Only the pre-rework-layout defects link the image elsewhere, on purpose.
        assert (program.base == original.base) != moves_image, defect.name
        assert "switch_ttbr_id" in program.symbols and "start_c" in program.symbols


def test_defect_rules_are_as_documented() -> None:
    rules = {defect.name: defect.rules for defect in load_defects(BUNDLED_DEFECTS)}
    # Boot tables map the image with 2 MiB blocks, runtime tables with 4 KiB pages:
    # a change of block size under a live MMU is a conflict (Arm ARM D8.17.1).
    assert rules["ttbr-write-mmu-on"] == ["ttbr-switch-conflict", "ttbr-switch-live"]
    assert rules["switch-at-virtual-address"] == ["mmu-toggle-off-identity"]
    assert rules["switch-syncs-in-helper-after-mmu-on"] == [
        "fetch-outside-identity", "missing-isb"
    ]
    assert rules["switch-without-tlbi"] == ["missing-tlbi"]
    assert rules["enable-without-tlbi"] == ["missing-tlbi"]
    assert rules["idmap-wrong-page"] == ["mmu-toggle-off-identity", "unexpected-exception"]


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
