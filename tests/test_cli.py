"""The command line: exit codes, reports, JSON, traces and one-line errors."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

from conftest import HEAD_S, REPO

from emu.analysis.corpus import load_defects, materialize

BOOTEMU = [sys.executable, "-m", "emu.cli.main"]


def bootemu(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([*BOOTEMU, *args], capture_output=True, text=True, timeout=120)


def test_check_of_the_bundled_head_s_is_clean() -> None:
    result = bootemu("check", str(HEAD_S))
    assert result.returncode == 0, result.stderr
    out = result.stdout
    assert "MMU timeline" in out and "switch_ttbr_id" in out
    assert "Verdict: clean" in out
    assert "start_c" in out


def test_check_json_is_machine_readable() -> None:
    result = bootemu("check", "--json")
    assert result.returncode == 0
    report = json.loads(result.stdout)
    assert report["verdict"] == "clean"
    assert report["findings"] == []
    kinds = [row["kind"] for row in report["timeline"]]
    assert "mmu-on" in kinds and "mmu-off" in kinds and "ttbr-write" in kinds


def test_clash_load_address_exits_1_and_says_why() -> None:
    result = bootemu("check", "--load-address", "0x80_0000_0000")
    assert result.returncode == 1
    assert "BOOT_ERR_IDMAP_CLASH" in result.stdout
    assert "level-0 slot of a static region" in result.stdout


def test_a_defect_exits_1_naming_rule_pc_and_symbol(tmp_path: Path) -> None:
    defect = next(d for d in load_defects(REPO / "fixtures" / "defects.toml")
                  if d.name == "ttbr-write-mmu-on")
    source = materialize(defect, HEAD_S, tmp_path)
    result = bootemu("check", str(source), "-I", str(HEAD_S.parent / "include"), "--json")
    assert result.returncode == 1
    findings = json.loads(result.stdout)["findings"]
    assert {f["rule"] for f in findings} == {"ttbr-switch-conflict", "ttbr-switch-live"}
    finding = next(f for f in findings if f["rule"] == "ttbr-switch-live")
    assert finding["symbol"].startswith("switch_ttbr_id")
    assert finding["pc"] >= 0x80_0020_0000


def test_assembler_error_is_one_line_with_file_and_line(tmp_path: Path) -> None:
    bad = tmp_path / "bad.S"
    bad.write_text("_start:\n    nop\n    cmp x19, #0x8000200000\n")
    result = bootemu("check", str(bad))
    assert result.returncode == 2
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1
    assert "bad.S:3:" in lines[0] and "immediate out of range" in lines[0]
    assert "Traceback" not in result.stderr


def test_usage_errors_exit_2() -> None:
    assert bootemu("check", "--load-address", "nowhere").returncode == 2
    assert bootemu("check", "-D", "=1").returncode == 2
    missing = bootemu("check", "/no/such/head.S")
    assert missing.returncode == 2 and "Traceback" not in missing.stderr
    assert bootemu("check", "--until", "no_such_symbol").returncode == 2


def test_trace_prints_every_instruction_and_windows_narrow_it() -> None:
    full = bootemu("trace")
    assert full.returncode == 0, full.stderr
    lines = full.stdout.splitlines()
    executed = int(lines[-1].split(" after ")[1].split()[0])
    assert len(lines) == executed + 1  # one line per instruction, plus the summary
    assert any("switch_ttbr_id" in line and "msr" in line for line in lines)
    window = bootemu("trace", "--window", "3")
    narrow = window.stdout.splitlines()
    assert 10 < len(narrow) < len(lines) / 10
    assert any("; MMU on" in line for line in narrow)


def test_trace_json_lines() -> None:
    result = bootemu("trace", "--json", "--window", "2")
    objects = [json.loads(line) for line in result.stdout.splitlines()]
    assert objects[-1]["stop"] == "arrived"
    assert all({"index", "va", "pa", "symbol", "encoding", "disassembly"} <= set(o)
               for o in objects[:-1])


def test_help_teaches() -> None:
    result = bootemu("--help")
    assert result.returncode == 0
    for command in ("check", "trace", "rules"):
        assert command in result.stdout
    assert "Exit status" in bootemu("check", "--help").stdout


def test_rules_that_cannot_judge_are_reported_as_not_applicable(tmp_path: Path) -> None:
    # A raw binary declares no layout of static regions: the two layout rules
    # have nothing to judge, and the report must say so rather than count them
    # among the rules that stayed silent.
    binary = tmp_path / "spin.bin"
    binary.write_bytes((0x14000000).to_bytes(4, "little"))  # b .
    text = bootemu("check", str(binary), "--until", "exit", "--max-insns", "100")
    assert "not applicable: [identity-clash] the image is a raw binary" in text.stdout
    assert "not applicable: [layout-slot0]" in text.stdout
    report = json.loads(bootemu("check", str(binary), "--until", "exit", "--max-insns", "100",
                                "--json").stdout)
    assert [skipped["rule"] for skipped in report["not_applicable"]] == [
        "identity-clash", "layout-slot0"]
    assert "identity-clash" not in report["rules"]
