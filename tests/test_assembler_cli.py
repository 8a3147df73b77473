"""``bootemu asm``: the binary, the listing, JSON, options and errors."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import pytest
from click.testing import CliRunner, Result

from emu.asm import assembler
from emu.asm.assembler import assemble_file
from emu.cli.main import main

ROOT = Path(__file__).resolve().parent.parent
HEAD = ROOT / "asm" / "head.S"
FORMS = ROOT / "fixtures" / "asm" / "forms.S"


@pytest.fixture(autouse=True)
def isolated_cache(tmp_path_factory: pytest.TempPathFactory,
                   monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    monkeypatch.setenv("BOOTEMU_CACHE_DIR", str(tmp_path_factory.mktemp("cache")))
    assembler.clear_cache()
    yield
    assembler.clear_cache()


def bootemu(*args: str) -> Result:
    return CliRunner().invoke(main, list(args))


def test_writes_the_flat_binary(tmp_path: Path) -> None:
    out = tmp_path / "head.bin"
    result = bootemu("asm", str(HEAD), "-o", str(out))
    assert result.exit_code == 0, result.output
    program = assemble_file(HEAD)
    assert out.read_bytes() == program.image == program.code
    assert "0xe000 bytes at 0x8000200000" in result.stdout
    assert f"wrote 0xe000 bytes to {out}" in result.stdout


def test_binary_leaves_out_a_trailing_bss(tmp_path: Path) -> None:
    out = tmp_path / "forms.bin"
    assert bootemu("asm", str(FORMS), "--base", "0x40000000", "-o", str(out)).exit_code == 0
    program = assemble_file(FORMS, base=0x4000_0000)
    assert out.read_bytes() == program.image
    assert len(program.code) - len(program.image) == 0x40 + 4  # .bss and its alignment


def test_listing_shows_address_encoding_disassembly_source_and_symbol() -> None:
    result = bootemu("asm", str(HEAD), "--list")
    assert result.exit_code == 0, result.output
    out = result.stdout
    assert "0000008000200000 <_start>:" in out
    assert "\n0000008000201000 <switch_ttbr_id>:" in out
    # mov x21, x0 at _start: address, encoding word, disassembly, file:line, statement.
    row = next(line for line in out.splitlines() if line.startswith("  8000200000:"))
    assert "aa0003f5" in row and "mov x21, x0" in row and "head.S:118" in row
    # A macro's instructions name the line invoking it.
    assert any("ubfx" in line and "set_table_entry x0, x1" not in line and "head.S:" in line
               for line in out.splitlines())
    assert "tlbi alle2" in out and "msr sctlr_el2, x1" in out
    assert "(0x" in out and "zero bytes)" in out  # page tables folded
    assert "Symbols (GNU nm style):" in out and " t boot_pgtable" in out


def test_listing_of_several_sections() -> None:
    out = bootemu("asm", str(FORMS), "--base", "0x40000000", "--list").stdout
    for header in ("Section .text.header (text", "Section .rodata (rodata",
                   "Section .data (data", "Section .bss (bss"):
        assert header in out
    assert "not in the file" in out
    assert ".word 0x12345678" in out  # data shown as data
    assert "d boot_data  size 0x14" in out


def test_json_describes_the_program() -> None:
    result = bootemu("asm", str(HEAD), "--json")
    assert result.exit_code == 0
    data = json.loads(result.stdout)
    assert data["base"] == 0x8000200000 and data["file_size"] == 0xE000
    assert [section["name"] for section in data["sections"]] == [".text"]
    symbols = {symbol["name"]: symbol for symbol in data["symbols"]}
    assert symbols["switch_ttbr_id"]["type"] == "t"
    assert data["lines"][0] == {"address": 0x8000200000, "end": 0x8000200004,
                                "file": str(HEAD), "line": 118, "text": "mov x21, x0",
                                "kind": "code"}


def test_defines_includes_and_base(tmp_path: Path) -> None:
    (tmp_path / "inc").mkdir()
    (tmp_path / "inc" / "v.h").write_text("#define VALUE 5\n")
    source = tmp_path / "s.S"
    source.write_text('#include "v.h"\n_start: mov x0, #VALUE + EXTRA\n b _start\n')
    out = tmp_path / "s.bin"
    result = bootemu("asm", str(source), "-I", str(tmp_path / "inc"), "-D", "EXTRA=2",
                     "--base", "0x1000", "-o", str(out))
    assert result.exit_code == 0, result.output
    assert out.read_bytes().hex() == "e00080d2ffffff17"
    assert "at 0x1000" in result.stdout


def test_defaults_to_the_bundled_head_s() -> None:
    result = bootemu("asm")
    assert result.exit_code == 0 and "head.S: 0xe000 bytes" in result.stdout


def test_usage_and_input_errors_exit_2(tmp_path: Path) -> None:
    assert bootemu("asm", "-D", "=1").exit_code == 2
    assert bootemu("asm", "--base", "nowhere").exit_code == 2
    missing = bootemu("asm", str(tmp_path / "missing.S"))
    assert missing.exit_code == 2
    assert missing.stderr.strip().endswith("missing.S: cannot read the source (no such file)")
    bad = tmp_path / "bad.S"
    bad.write_text("_start:\n    nop\n    cmp x19, #0x8000200000\n")
    result = bootemu("asm", str(bad), "-o", str(tmp_path / "never.bin"))
    assert result.exit_code == 2
    assert result.stderr == f"bootemu: error: {bad}:3: immediate out of range\n"
    assert not (tmp_path / "never.bin").exists()


def test_help_lists_the_command() -> None:
    assert "asm" in bootemu("--help").stdout
    text = bootemu("asm", "--help").stdout
    assert "--list" in text and "-o, --output" in text and "Exit status" in text
