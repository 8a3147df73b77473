"""The litmus suite: small AArch64 programs of our own, each with the verdict the
architecture gives it (issue 10, verdict fidelity).

Every ``tests/litmus/*.S`` builds its own page tables in assembly, turns the
MMU on and runs one litmus sequence to the label ``done``. Its header says what
must come of it, machine-readably:

``// expect: RULE ...`` or ``// expect: clean``
    the exact set of rule ids that must fire (``clean``: none);
``// el: 1``
    enter at EL1 instead of EL2;
``// until: LABEL``
    the label the run must reach (default ``done``);
``// at: RULE LABEL ...``
    the findings of RULE are exactly one at each of these labels;
``// names: RULE TEXT``
    some finding of RULE says TEXT (in its message or evidence);
``// timeline: ordered``
    the run's events come in instruction order.

A program that reads memory checks the value and branches to ``wrong`` (a
loop that never reaches ``done``) when the guest saw what the architecture
forbids. The expected verdicts come from the Arm ARM, never from running
bootemu; each header cites the rule that decides it. Citations use the section
numbers of the 2024/25 issue of DDI 0487 (for example D8.17.1 "Using
break-before-make when updating translation table entries", D8.16.1 in issue
K.a, D8.14.1 in J.a, D8.13.1 in I.a) together with the section titles and the
rule identifiers (R_WHZWS, R_PSMWS, ...), which do not change between issues.

Programs bootemu gets wrong today are strict xfails in ``XFAIL`` below, with
what it does wrong: each turns into a failure the day the machine is fixed,
and its entry is then deleted. Never weaken an expectation to make a test pass.
"""

from __future__ import annotations

import re
import shutil
import subprocess
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from emu.board.board import Board
from emu.checks.run import build_image, check_image
from emu.machine.stop import StopKind

LITMUS = Path(__file__).resolve().parent / "litmus"
LOAD = 0x4000_0000
MAX_INSNS = 300_000  # every program runs a few thousand instructions; "wrong" spins to here

# DESIGN.md section 4, the rule catalogue (some rules do not exist yet).
CATALOGUE = frozenset({
    "ttbr-switch-conflict", "ttbr-switch-live", "mmu-toggle-off-identity",
    "fetch-outside-identity", "missing-tlbi", "missing-dsb", "missing-isb", "stale-tlb",
    "live-descriptor-change", "identity-clash", "layout-slot0", "unexpected-exception",
})

# What bootemu gets wrong today, program by program (issue 10 item numbers), as
# strict xfails: a fix turns its entry into a failure until the entry is deleted.
XFAIL: dict[str, str] = {}


@dataclass
class Expectation:
    """What a litmus program's header says must come of it."""

    path: Path
    rules: frozenset[str]
    el: int = 2
    until: str = "done"
    at: dict[str, list[str]] = field(default_factory=dict)
    names: list[tuple[str, str]] = field(default_factory=list)
    ordered: bool = False
    items: str = ""
    header: str = ""


def parse(path: Path) -> Expectation:
    lines = []
    for line in path.read_text().splitlines():
        if not line.startswith("//"):
            break
        lines.append(line[2:].strip())
    keys: dict[str, list[str]] = {}
    for line in lines:
        match = re.match(r"^(expect|el|until|at|names|timeline|item):\s*(.*)$", line)
        if match:
            keys.setdefault(match[1], []).append(match[2].strip())
    assert len(keys.get("expect", [])) == 1, f"{path.name}: one '// expect:' line"
    words = keys["expect"][0].split()
    rules = frozenset() if words == ["clean"] else frozenset(words)
    expectation = Expectation(path, rules, header="\n".join(lines),
                              items=" ".join(keys.get("item", [])))
    if "el" in keys:
        expectation.el = int(keys["el"][0])
    if "until" in keys:
        expectation.until = keys["until"][0]
    for value in keys.get("at", []):
        rule, *labels = value.split()
        expectation.at.setdefault(rule, []).extend(labels)
    for value in keys.get("names", []):
        rule, text = value.split(None, 1)
        expectation.names.append((rule, text))
    expectation.ordered = keys.get("timeline", [""])[0] == "ordered"
    return expectation


PROGRAMS = sorted(LITMUS.glob("*.S"))


def _param(path: Path):
    name = path.stem
    marks = []
    if name in XFAIL:
        marks.append(pytest.mark.xfail(strict=True, reason=XFAIL[name]))
    return pytest.param(path, id=name, marks=marks)


def test_the_suite_is_complete() -> None:
    assert len(PROGRAMS) >= 40
    names = {path.stem for path in PROGRAMS}
    assert set(XFAIL) <= names, sorted(set(XFAIL) - names)
    for path in PROGRAMS:
        expectation = parse(path)
        assert expectation.rules <= CATALOGUE, (path.name, expectation.rules - CATALOGUE)
        assert set(expectation.at) <= expectation.rules, path.name
        assert {rule for rule, _ in expectation.names} <= expectation.rules, path.name
        assert expectation.items, f"{path.name}: an '// item:' line"
        assert "Rule:" in expectation.header, f"{path.name}: a 'Rule:' paragraph"
        assert "DDI 0487" in expectation.header, f"{path.name}: an Arm ARM citation"


@pytest.mark.parametrize("path", [_param(path) for path in PROGRAMS])
def test_litmus(path: Path) -> None:
    expectation = parse(path)
    image = build_image(path, load_address=LOAD)
    run = check_image(image, until=expectation.until, board=Board(el=expectation.el),
                      max_insns=MAX_INSNS)
    found = [(f.rule, f"#{f.index} {f.pc:#x} {f.symbol}: {f.message}") for f in run.findings]
    assert run.stop.kind is StopKind.ARRIVED, (run.stop.message, found)
    assert run.stop.pc == image.symbols[expectation.until], (run.stop.message, found)
    assert {f.rule for f in run.findings} == set(expectation.rules), (
        sorted(expectation.rules), found)
    for rule, labels in expectation.at.items():
        # "At a label" means at the instruction the label names, whichever alias
        # it ran at (code may run at a TTBR1 address): compare physical addresses.
        wanted = sorted(image.physical(image.symbols[label]) for label in labels)
        got = sorted(f.pc if f.pa is None else f.pa for f in run.findings if f.rule == rule)
        assert got == wanted, (rule, [hex(a) for a in got], labels, found)
    for rule, text in expectation.names:
        said = [" ".join((f.message, *f.evidence)).lower()
                for f in run.findings if f.rule == rule]
        assert any(text.lower() in s for s in said), (rule, text, said)
    if expectation.ordered:
        order = [(e.index, e.kind) for e in run.events]
        assert order == sorted(order, key=lambda item: item[0]), order


GNU = ("aarch64-linux-gnu-gcc", "aarch64-linux-gnu-ld", "aarch64-linux-gnu-objcopy")


@pytest.mark.skipif(any(shutil.which(tool) is None for tool in GNU),
                    reason="GNU aarch64 toolchain (binutils/gcc-aarch64-linux-gnu) missing")
@pytest.mark.parametrize("path", [pytest.param(p, id=p.stem) for p in PROGRAMS])
def test_litmus_assembles_as_gnu_as_does(path: Path, tmp_path: Path) -> None:
    """Each program is real AArch64: GNU as, linked at the load address, gives the
    same bytes as bootemu's assembler."""
    obj, elf, binary = tmp_path / "p.o", tmp_path / "p.elf", tmp_path / "p.bin"
    subprocess.run(["aarch64-linux-gnu-gcc", "-c", "-x", "assembler-with-cpp", "-undef",
                    "-nostdinc", str(path), "-o", str(obj)], check=True)
    subprocess.run(["aarch64-linux-gnu-ld", f"-Ttext={LOAD:#x}", "-e", "_start", str(obj),
                    "-o", str(elf)], check=True, capture_output=True)
    subprocess.run(["aarch64-linux-gnu-objcopy", "-O", "binary", "-j", ".text", str(elf),
                    str(binary)], check=True)
    image = build_image(path, load_address=LOAD)
    assert image.link_address == LOAD
    assert image.payload == binary.read_bytes()
