"""The command line: exit codes, reports, JSON, traces and one-line errors."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
from conftest import HEAD_S, REPO

from emu.analysis.corpus import load_defects, materialize
from emu.image.boot_image import ImageError

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
    # Instructions, and a gap record where a window leaves some out.
    assert all({"index", "va", "pa", "symbol", "encoding", "disassembly"} <= set(o)
               for o in objects[:-1] if "gap" not in o)
    assert any("gap" in o for o in objects)


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


# -- issue 11: where and why a run ended, --events, targets, board options -------

CATALOGUE_SIZE = 12  # DESIGN.md section 4: twelve rules


def test_check_last_line_says_where_why_and_what_was_judged() -> None:
    result = bootemu("check", str(HEAD_S))
    assert result.returncode == 0, result.stderr
    last = result.stdout.splitlines()[-1]
    executed = json.loads(bootemu("check", str(HEAD_S), "--json").stdout)["executed"]
    assert last.startswith("Verdict: clean")
    assert f"stopped at #{executed}, PC " in last and "(start_c)" in last
    assert "it arrived at start_c" in last
    # README, "The bundled boot program": MMU on, then the switch with the MMU
    # off in switch_ttbr_id: two transitions; the boot and the runtime tables.
    assert (f"judged up to there: {executed} instructions, 2 MMU-transition windows, "
            f"2 TTBR writes, by {CATALOGUE_SIZE} rules") in last


def test_check_json_says_where_and_why_too() -> None:
    report = json.loads(bootemu("check", "--json").stdout)
    assert report["end"]["kind"] == "arrived" and report["end"]["symbol"] == "start_c"
    assert report["end"]["reason"] == "it arrived at start_c"
    assert report["proved"]["instructions"] == report["executed"]
    assert report["proved"]["windows"] == 2 and len(report["proved"]["rules"]) == CATALOGUE_SIZE


def test_a_spent_budget_and_an_exception_say_where_and_why(tmp_path: Path) -> None:
    spin = tmp_path / "spin.bin"
    spin.write_bytes((0x14000000).to_bytes(4, "little"))  # b .
    result = bootemu("run", str(spin), "--max-insns", "100")
    assert result.returncode == 1
    # Loaded at the RAM base 0x40000000, MMU off: the PA is the VA.
    [line] = result.stderr.strip().splitlines()
    assert line == ("bootemu: stopped at #100, PC 0x40000000 (spin.bin), PA 0x40000000: "
                    "the instruction budget was spent; 100 instructions run, none checked "
                    "(bootemu check judges them)")
    report = json.loads(bootemu("run", str(spin), "--max-insns", "100", "--json").stdout)
    assert report["end"] == {"kind": "budget", "index": 100, "pc": 0x4000_0000,
                             "pa": 0x4000_0000, "symbol": "spin.bin",
                             "reason": "the instruction budget was spent",
                             "message": "instruction budget of 100 spent"}
    checked = bootemu("check", str(spin), "--until", "exit", "--max-insns", "100")
    last = checked.stdout.splitlines()[-1]
    assert "stopped at #100, PC 0x40000000 (spin.bin)" in last
    assert "the instruction budget was spent" in last
    udf = tmp_path / "udf.bin"
    udf.write_bytes(bytes(4))  # UDF #0: undefined (DDI 0487 C6.2), no vector at reset
    result = bootemu("run", str(udf))
    assert "stopped at #0, PC 0x40000000 (udf.bin)" in result.stderr
    assert "the guest took an exception the run cannot continue past" in result.stderr
    assert "undefined instruction" in result.stderr


def test_stop_kinds_are_worded() -> None:
    from emu.machine.stop import Stop, StopKind
    from emu.report.ending import STOP_REASONS, stop_reason

    def reason(kind: StopKind, status: int | None = None) -> str:
        return stop_reason(Stop(kind, 0, 0, "", status=status), "start_c")

    assert reason(StopKind.POWER_OFF) == "the guest powered off (PSCI SYSTEM_OFF)"
    assert reason(StopKind.RESET) == "the guest asked for a reset (PSCI SYSTEM_RESET)"
    assert "idles (WFI)" in reason(StopKind.IDLE)
    assert reason(StopKind.EXIT, 3) == "the program exited with status 3"
    assert reason(StopKind.ARRIVED) == "it arrived at start_c"
    assert set(STOP_REASONS) == set(StopKind)


def test_check_until_symbol_plus_offset() -> None:
    report = json.loads(bootemu("check", "--until", "switch_ttbr_id+0x14", "--json").stdout)
    assert report["end"]["kind"] == "arrived"
    assert report["end"]["symbol"] == "switch_ttbr_id+0x14"
    decimal = json.loads(bootemu("check", "--until", "switch_ttbr_id+20", "--json").stdout)
    assert decimal["end"]["pc"] == report["end"]["pc"]


def test_check_events_all_shows_barriers() -> None:
    default = json.loads(bootemu("check", "--json").stdout)
    everything = json.loads(bootemu("check", "--json", "--events", "all").stdout)
    assert "barrier" not in {row.get("category") for row in default["timeline"]}
    assert "barrier" in {row.get("category") for row in everything["timeline"]}
    assert everything["events"][-1] == "access" and "barrier" in everything["events"]


def test_board_options_reach_the_boot_spec(tmp_path: Path) -> None:
    from emu.board.spec import BootSpec

    firmware = tmp_path / "fw.bin"
    firmware.write_bytes((0x14000000).to_bytes(4, "little"))
    image, board = BootSpec(path=firmware, bios=True, cpu="cortex-a57", seed=7).load()
    assert (image.load_address, image.entry, image.kind) == (0, 0, "raw")
    assert (board.bios, board.cpu, board.seed) == (True, "cortex-a57", 7)
    with pytest.raises(ImageError, match="--load-address does not apply"):
        BootSpec(path=firmware, bios=True, load_address=0x1000).load()
    both = bootemu("check", str(HEAD_S), "--bios", str(firmware))
    assert both.returncode == 2
    [line] = both.stderr.strip().splitlines()
    assert "--bios" in line and "SOURCE" in line
    helped = bootemu("run", "--help").stdout
    for option in ("--cpu", "--seed", "--bios", "cortex-a72", "kaslr-seed"):
        assert option in helped
    assert bootemu("check", "--cpu", "pentium").returncode == 2
