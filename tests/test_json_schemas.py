"""One vocabulary (issue 13): every ``--json`` output validates against its
shipped JSON Schema, the verdict is the same word in the text report, the JSON
and the sweep, and ``exit_status`` is the one exit-status key.

Each command runs for real, in a subprocess, on asm/head.S and on a defect of
fixtures/defects.toml (so that findings are not empty); the runs are made once
for the module, in parallel.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest
from conftest import HEAD_S, REPO

jsonschema = pytest.importorskip("jsonschema")

from emu.analysis.corpus import BUNDLED_DEFECTS, load_defects, materialize  # noqa: E402
from emu.analysis.layout import ProblemKind  # noqa: E402
from emu.checks.verdict import BOOT_VERDICTS, VERDICTS  # noqa: E402
from emu.machine.events import EVENT_CATEGORIES  # noqa: E402
from emu.machine.stop import StopKind  # noqa: E402
from emu.report.schemas import SCHEMA_NAMES, load_schema  # noqa: E402

SCHEMA_DIR = REPO / "emu" / "report" / "schemas"
DEFECT = "ttbr-write-mmu-on"  # two rules fire, the boot still arrives
DEFECT_RULES = ["ttbr-switch-conflict", "ttbr-switch-live"]
MISALIGNED = "0x40001000"  # head.S gives up: BOOT_ERR_MISALIGNED
# The timeline-loops program of test_timeline_summary: cache-loop rows, barriers.
LOOPS = REPO / "tests" / "test_timeline_summary.py"


def _command(*args: str) -> list[str]:
    return [sys.executable, "-m", "emu.cli", *args]


@pytest.fixture(scope="module")
def sources(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    work = tmp_path_factory.mktemp("json-schemas")
    defect = next(d for d in load_defects(BUNDLED_DEFECTS) if d.name == DEFECT)
    spin = work / "spin.bin"
    spin.write_bytes((0x14000000).to_bytes(4, "little"))  # b .
    sys.path.insert(0, str(LOOPS.parent))
    try:
        from test_timeline_summary import PROGRAM
    finally:
        sys.path.remove(str(LOOPS.parent))
    loops = work / "timeline-loops.S"
    loops.write_text(PROGRAM)
    return {"head": HEAD_S, "defect": materialize(defect, HEAD_S, work / "defect"),
            "spin": spin, "loops": loops}


def _runs(sources: dict[str, Path]) -> dict[str, tuple[str, ...]]:
    head, defect, spin, loops = (str(sources[k]) for k in ("head", "defect", "spin", "loops"))
    return {
        # check: all four verdicts, as JSON and as text
        "check-clean": ("check", head, "--json"),
        "check-clean-text": ("check", head),
        "check-defect": ("check", defect, "--json"),
        "check-defect-text": ("check", defect),
        "check-failed": ("check", head, "--load-address", MISALIGNED, "--json"),
        "check-failed-text": ("check", head, "--load-address", MISALIGNED),
        "check-incomplete": ("check", head, "--max-insns", "100", "--json"),
        "check-incomplete-text": ("check", head, "--max-insns", "100"),
        "check-loops": ("check", loops, "--until", "done", "--events", "all", "--json"),
        "check-raw": ("check", spin, "--until", "exit", "--max-insns", "100", "--json"),
        # sweep: the same boots
        "sweep": ("sweep", head, "--load-addresses", f"qemu-virt,{MISALIGNED},0x1000000000000",
                  "-j", "1", "--json"),
        "sweep-text": ("sweep", head, "--load-addresses", f"qemu-virt,{MISALIGNED}", "-j", "1"),
        "sweep-incomplete": ("sweep", head, "--load-addresses", "qemu-virt", "--max-insns",
                             "100", "-j", "1", "--json"),
        "sweep-defect": ("sweep", defect, "--load-addresses", "qemu-virt", "-j", "1", "--json"),
        "sweep-defect-text": ("sweep", defect, "--load-addresses", "qemu-virt", "-j", "1"),
        # the others
        "run": ("run", head, "--until", "start_c", "--json"),
        "run-budget": ("run", spin, "--max-insns", "100", "--json"),
        "trace-window": ("trace", head, "--json", "--window", "2"),
        "trace-budget": ("trace", head, "--json", "--max-insns", "50"),
        "trace-logs": ("trace", head, "--json", "--until", "#12600", "--log", "exec,cpu,int,mmu",
                       "--filter", "switch_ttbr_id"),
        "asm": ("asm", head, "--json"),
        "layout": ("layout", head, "--json"),
        "layout-problems": ("layout", head, "--layout", "pre-rework", "--json"),
        "layout-clashes": ("layout", head, "--layout", "rework-512g", "--clashes", "--json"),
        "walk": ("walk", "0x8000200000", head, "--json"),
        "walk-fault": ("walk", "0x123400000000", head, "--json"),
        "rules": ("rules", "--json"),
    }


@pytest.fixture(scope="module")
def out(sources: dict[str, Path]) -> dict[str, subprocess.CompletedProcess[str]]:
    runs = _runs(sources)

    def run(args: tuple[str, ...]) -> subprocess.CompletedProcess[str]:
        return subprocess.run(_command(*args), cwd=REPO, capture_output=True, text=True,
                              timeout=120)

    with ThreadPoolExecutor(max_workers=max(2, os.cpu_count() or 2)) as pool:
        return dict(zip(runs, pool.map(run, runs.values()), strict=True))


def _stdout(out: dict[str, subprocess.CompletedProcess[str]], name: str) -> str:
    """What command ``name`` printed; it ran to its end (exit status 0 or 1)."""
    result = out[name]
    assert result.returncode in (0, 1), (name, result.returncode, result.stderr)
    assert "Traceback" not in result.stderr, (name, result.stderr)
    return result.stdout


def _json(out: dict[str, subprocess.CompletedProcess[str]], name: str) -> object:
    return json.loads(_stdout(out, name))


def _lines(out: dict[str, subprocess.CompletedProcess[str]], name: str) -> list[dict]:
    return [json.loads(line) for line in _stdout(out, name).splitlines()]


def _validator(name: str) -> jsonschema.Draft202012Validator:
    return jsonschema.Draft202012Validator(load_schema(name))


def _valid(name: str, document: object) -> None:
    errors = sorted(_validator(name).iter_errors(document), key=lambda e: list(e.path))
    assert not errors, "\n".join(f"{list(e.path)}: {e.message}" for e in errors[:10])


# -- the schemas themselves ------------------------------------------------------


@pytest.mark.parametrize("name", SCHEMA_NAMES)
def test_each_schema_is_a_valid_draft_2020_12_schema(name: str) -> None:
    schema = load_schema(name)
    assert schema["$schema"] == "https://json-schema.org/draft/2020-12/schema"
    jsonschema.Draft202012Validator.check_schema(schema)


def test_every_shipped_schema_has_a_name_and_loads() -> None:
    shipped = sorted(path.name.removesuffix(".schema.json")
                     for path in SCHEMA_DIR.glob("*.schema.json"))
    assert shipped == sorted(SCHEMA_NAMES)
    with pytest.raises(KeyError, match="no JSON Schema named"):
        load_schema("nonesuch")


def test_the_schemas_speak_the_code_s_vocabulary() -> None:
    check, sweep = load_schema("check"), load_schema("sweep")
    assert check["$defs"]["verdict"]["enum"] == list(BOOT_VERDICTS)
    assert sweep["$defs"]["verdict"]["enum"] == list(VERDICTS)
    assert check["$defs"]["category"]["enum"] == list(EVENT_CATEGORIES)
    assert load_schema("layout")["properties"]["problems"]["items"]["properties"]["kind"][
        "enum"] == [kind.value for kind in ProblemKind]
    # One `end` object, and one set of stop kinds, wherever a run ends.
    ends = {name: load_schema(name)["$defs"] for name in ("check", "run", "trace", "walk")}
    for defs in ends.values():
        assert defs["end"] == ends["check"]["end"]
        assert defs["stop_kind"]["enum"] == [kind.value for kind in StopKind]


# -- every output validates --------------------------------------------------------


@pytest.mark.parametrize("name", ["check-clean", "check-defect", "check-failed",
                                  "check-incomplete", "check-loops", "check-raw"])
def test_check_json_validates(out, name: str) -> None:
    _valid("check", _json(out, name))


def test_check_json_covers_findings_failures_and_folded_rows(out) -> None:
    defect, failed = _json(out, "check-defect"), _json(out, "check-failed")
    assert sorted({f["rule"] for f in defect["findings"]}) == DEFECT_RULES
    assert failed["failure"]["name"] == "BOOT_ERR_MISALIGNED"
    assert failed["failure"]["routine"] == "boot_failure"
    assert failed["end"]["reason"] == "it arrived at boot_failure"
    kinds = {row["kind"] for row in _json(out, "check-loops")["timeline"]}
    assert {"cache-loop", "barrier", "mmu-on", "mmu-off"} <= kinds
    assert any(row["kind"] == "maintenance-stretch" for row in defect["timeline"])
    assert _json(out, "check-raw")["not_applicable"]


@pytest.mark.parametrize("name", ["run", "run-budget"])
def test_run_json_validates(out, name: str) -> None:
    _valid("run", _json(out, name))


@pytest.mark.parametrize("name", ["trace-window", "trace-budget", "trace-logs"])
def test_every_trace_json_line_validates(out, name: str) -> None:
    lines = _lines(out, name)
    validator = _validator("trace")
    for number, line in enumerate(lines, 1):
        errors = list(validator.iter_errors(line))
        assert not errors, (number, line, [e.message for e in errors])
    assert "stop" in lines[-1] and all("stop" not in line for line in lines[:-1])
    if name != "trace-budget":
        assert any("gap" in line for line in lines)
    assert any("disassembly" in line for line in lines)
    if name == "trace-logs":
        assert {line["log"] for line in lines if "log" in line} == {"cpu", "mmu"}


@pytest.mark.parametrize("name", ["sweep", "sweep-incomplete", "sweep-defect"])
def test_sweep_json_validates(out, name: str) -> None:
    _valid("sweep", _json(out, name))


@pytest.mark.parametrize(("schema", "name"), [
    ("asm", "asm"), ("layout", "layout"), ("layout", "layout-problems"),
    ("layout", "layout-clashes"), ("walk", "walk"),
    ("walk", "walk-fault"), ("rules", "rules")])
def test_the_other_json_outputs_validate(out, schema: str, name: str) -> None:
    document = _json(out, name)
    _valid(schema, document)
    if name == "layout-problems":
        assert document["problems"]
    if name == "layout-clashes":
        assert [r["kind"] for r in document["clashes"]["ranges"]].count("identity-clash") == 2
    if name == "walk-fault":
        assert document["result"] == "fault"


def test_a_document_off_the_schema_is_refused(out) -> None:
    report = _json(out, "check-clean")
    validator = _validator("check")
    assert not validator.is_valid({**report, "verdict": "1 finding(s)"})
    assert not validator.is_valid({**report, "exit_code": 0})
    missing = dict(report)
    del missing["windows"]
    assert not validator.is_valid(missing)


# -- one vocabulary ------------------------------------------------------------------


def _text_verdict(text: str) -> str:
    last = text.splitlines()[-1]
    assert last.startswith("Verdict: "), last
    return last.removeprefix("Verdict: ").split(" - ", 1)[0]


@pytest.mark.parametrize(("check", "sweep", "address", "verdict"), [
    ("check-clean", "sweep", 0x4000_0000, "clean"),
    ("check-defect", "sweep-defect", 0x4000_0000, "findings"),
    ("check-failed", "sweep", int(MISALIGNED, 16), "boot-failed"),
    ("check-incomplete", "sweep-incomplete", 0x4000_0000, "incomplete"),
])
def test_the_verdict_is_one_word_in_text_json_and_sweep(out, check: str, sweep: str,
                                                        address: int, verdict: str) -> None:
    text = _stdout(out, f"{check}-text")
    report = _json(out, check)
    [result] = [r for r in _json(out, sweep) if r["load_address"] == address]
    assert _text_verdict(text) == report["verdict"] == result["verdict"] == verdict
    assert text.splitlines()[-1] == f"Verdict: {report['summary']}"
    assert out[check].returncode == out[f"{check}-text"].returncode == (verdict != "clean")
    if verdict == "findings":
        assert result["rules"] == DEFECT_RULES
        assert f"{len(report['findings'])} findings ({', '.join(DEFECT_RULES)})" in text


def test_the_sweep_text_says_the_same_words(out) -> None:
    text = _stdout(out, "sweep-text")
    assert "1 boot(s)  clean" in text
    assert "1 boot(s)  boot-failed (BOOT_ERR_MISALIGNED)" in text
    assert "verdicts: clean 1, boot-failed 1" in text or \
        "verdicts: boot-failed 1, clean 1" in text
    assert f"1 boot(s)  findings ({', '.join(DEFECT_RULES)})" in _stdout(out, "sweep-defect-text")
    beyond = _json(out, "sweep")[-1]
    assert beyond["verdict"] == "beyond-pa-range"


def _keys(document: object) -> Iterator[str]:
    if isinstance(document, dict):
        for key, value in document.items():
            yield key
            yield from _keys(value)
    elif isinstance(document, list):
        for value in document:
            yield from _keys(value)


def test_exit_status_is_the_one_exit_status_key(out) -> None:
    for name in ("check-clean", "check-defect", "run", "run-budget"):
        report = _json(out, name)
        assert "exit_status" in report and "exit_code" not in report
    for name in out:
        if name.endswith("-text"):
            continue
        documents = (_lines(out, name) if name.startswith("trace")
                     else [_json(out, name)])
        assert "exit_code" not in set(_keys(documents)), name


# -- check --json carries what the text shows ------------------------------------------


def test_check_json_has_the_text_s_windows_identity_flags_and_timeline(out) -> None:
    report, text = _json(out, "check-clean"), _stdout(out, "check-clean-text")
    lines = text.splitlines()
    assert report["entry_el"] == 2 and f"entry at EL{report['entry_el']}" in lines[0]
    assert len(report["windows"]) == report["proved"]["windows"] == 2
    for window in report["windows"]:
        assert window["heading"] in lines
        for fetch in window["fetches"] + window["tail"]:
            [line] = [line for line in lines
                      if line.startswith(f"  {fetch['index']:>8}  {fetch['va']:#018x}")
                      and fetch["disassembly"] in line]
            assert ("VA==PA" in line) == fetch["identity"]
            if "identity_new" in fetch:
                new = {True: "yes", False: "no", None: "-"}[fetch["identity_new"]]
                assert line.endswith(f"new:{new}")
    # Timeline: one JSON row per text row.
    start = lines.index("MMU timeline") + 2
    rows = lines[start:lines.index("", start)]
    assert len(rows) == len(report["timeline"])
    for row, data in zip(rows, report["timeline"], strict=True):
        assert data["description"] in row
        if "identity" in data:
            assert ("VA==PA" in row) == data["identity"]
    assert report["reached"] is True and report["end"]["symbol"] == "start_c"
