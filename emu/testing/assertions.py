"""Assertion helpers for emulation suites, and golden timelines.

Each helper fails with what a reviewer needs to see - the findings with
their evidence, the rows of the MMU timeline around them, where the run
ended - rather than the repr of a run.  The plugin registers this module for
pytest's assertion rewriting, so under pytest the message is followed by
the comparison that failed (``assert 'findings' == 'clean'``).

A golden timeline is the timeline section of ``bootemu check``'s report and
its verdict line, stored as text and compared on every run: any change in
what the boot did to its MMU (another instruction count, another TTBR value,
a new finding) is a difference.  It is a recorded output by design,
refreshed on purpose (``--bootemu-update-golden``, or ``update=True``).
"""

from __future__ import annotations

import difflib
from dataclasses import dataclass
from pathlib import Path

from emu.checks.run import CheckRun
from emu.checks.verdict import CLEAN
from emu.report.check_report import format_text, verdict_line
from emu.testing.boot import place_matches, rows_around

__all__ = ["Golden", "assert_clean", "assert_fires", "assert_timeline", "explain",
           "timeline_lines", "timeline_text"]

# Timeline rows shown either side of a finding in a failure message.
CONTEXT_ROWS = 3


def timeline_lines(run: CheckRun) -> list[str]:
    """The rows of the report's MMU timeline (folded as ``bootemu check`` folds
    them; a row a finding points at ends with ``<== rule``)."""
    lines = format_text(run).splitlines()
    start = lines.index("MMU timeline") + 2  # the heading and the column titles
    end = lines.index("", start) if "" in lines[start:] else len(lines)
    return lines[start:end]


def timeline_text(run: CheckRun) -> str:
    """What a golden timeline stores: the timeline with its column titles, and
    the verdict line (where the run ended, what was judged)."""
    lines = format_text(run).splitlines()
    start = lines.index("MMU timeline")
    end = lines.index("", start) if "" in lines[start:] else len(lines)
    return "\n".join([*lines[start:end], "", f"Verdict: {verdict_line(run)}"]) + "\n"


def explain(run: CheckRun, around: list[int] | None = None) -> str:
    """A run told for a failure message: the verdict line, the findings with
    their evidence, and the timeline rows around ``around`` (instruction
    counts; default: the findings, else where the run ended)."""
    lines = [f"Verdict: {verdict_line(run)}"]
    if run.findings:
        lines.append("Findings:")
    for finding in run.findings:
        lines.append(f"  [{finding.rule}] #{finding.index} {finding.pc:#x} {finding.symbol}: "
                     f"{finding.message}")
        lines += [f"      {evidence}" for evidence in finding.evidence]
    if run.failure is not None:
        lines.append(f"Boot failed in {run.image.failure_symbol}: {run.failure.describe()}")
    if around is None:
        around = [f.index for f in run.findings] or [run.executed]
    lines.append("MMU timeline (around "
                 + ", ".join(f"#{index}" for index in sorted(set(around))) + "):")
    lines += rows_around(timeline_lines(run), around, CONTEXT_ROWS)
    return "\n".join(lines)


def assert_clean(run: CheckRun) -> None:
    """The boot reached its target and no rule fired (verdict ``clean``).

    >>> assert_clean(bootemu.check(source="asm/head.S"))   # doctest: +SKIP
    """
    __tracebackhide__ = True  # the failure is the caller's line, not the helper's
    verdict = run.verdict  # compared alone: the rewritten assert shows it, not the run
    assert verdict == CLEAN, f"the boot is not clean\n{explain(run)}"


def assert_fires(run: CheckRun, rule: str, at: str | int | None = None) -> None:
    """The rule ``rule`` fired, at ``at`` if given: a symbol (anywhere in the
    code from it to the next symbol), ``"sym+0x14"`` or an address (that
    instruction, link or physical), or ``"#N"`` (the N-th instruction).

    >>> assert_fires(run, "missing-tlbi", at="switch_ttbr_id")   # doctest: +SKIP
    """
    __tracebackhide__ = True
    fired = [f for f in run.findings if f.rule == rule]
    where = [f for f in fired if at is None or place_matches(run, at, f.index, f.pc, f.symbol)]
    wanted = rule if at is None else f"{rule} at {at}"
    if fired and not where:
        detail = "it fired elsewhere: " + ", ".join(f"#{f.index} {f.symbol}" for f in fired)
    elif not fired:
        detail = ("no rule fired" if not run.findings else "other rules fired: "
                  + ", ".join(sorted({f.rule for f in run.findings})))
    else:
        detail = ""
    found = len(where)  # compared alone: the rewritten assert shows the count, not the run
    assert found > 0, f"{wanted} did not fire ({detail})\n{explain(run)}"


@dataclass(frozen=True)
class Golden:
    """A golden timeline's file, and whether a run replaces it (``update``)
    instead of being compared with it."""

    path: Path
    update: bool = False


def assert_timeline(run: CheckRun, golden: Golden | str | Path, *, update: bool = False) -> None:
    """The run's timeline (:func:`timeline_text`) is the one stored in
    ``golden``; with ``update`` (or a :class:`Golden` whose ``update`` is set)
    the file is written instead.  A missing file fails, saying how to make it.

    >>> assert_timeline(run, "tests/golden/test_boot.txt")   # doctest: +SKIP
    """
    __tracebackhide__ = True
    if not isinstance(golden, Golden):
        golden = Golden(Path(golden), update)
    now = timeline_text(run)
    if golden.update or update:
        golden.path.parent.mkdir(parents=True, exist_ok=True)
        golden.path.write_text(now)
        return
    exists = golden.path.is_file()
    assert exists, (f"no golden timeline at {golden.path}: run pytest with "
                    f"--bootemu-update-golden to record it\n{explain(run)}")
    stored = golden.path.read_text()
    diff = list(difflib.unified_diff(stored.splitlines(), now.splitlines(),
                                     f"{golden.path} (golden)", "this run", lineterm="", n=2))
    same = not diff  # compared alone: the rewritten assert shows the flag, not both texts
    assert same, ("the timeline differs from the golden one (run pytest with "
                  "--bootemu-update-golden to accept it):\n" + "\n".join(diff))
