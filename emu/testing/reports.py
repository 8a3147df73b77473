"""Per-test report files, for a CI job to keep as artifacts (``--bootemu-report DIR``).

Each boot a test made is written as ``bootemu check`` would report it: the
text report (``report.txt``), the ``--json`` report (``report.json``), and,
when the test failed or a rule fired, ``trace.txt``: every instruction
around the first finding (else around where the run ended), from a re-run of
the same boot, since a checked run keeps MMU events only.  A test's second
and later boots get ``-2``, ``-3``... before the extension.
"""

from __future__ import annotations

import json
import re
from pathlib import Path

from emu.testing.boot import BootRun

__all__ = ["report_directory", "write_reports"]

# Instructions traced ahead of the instruction a failure points at, and past it.
TRACE_BEFORE = 16
TRACE_AFTER = 4

_UNSAFE = re.compile(r"[^A-Za-z0-9_.=\[\]+-]+")


def report_directory(root: Path, nodeid: str) -> Path:
    """Where a test's reports go: ``root`` then its node id made a file name
    (``tests/test_boot.py::test_x[a]`` is ``tests_test_boot.py__test_x[a]``)."""
    return root / _UNSAFE.sub("_", nodeid.replace("::", "__").replace("/", "_"))


def write_reports(directory: Path, runs: list[BootRun], failed: bool) -> list[Path]:
    """Write each run's report (and trace, for a failure or a finding) into
    ``directory``; the files written."""
    directory.mkdir(parents=True, exist_ok=True)
    written: list[Path] = []
    for number, run in enumerate(runs, 1):
        suffix = "" if number == 1 else f"-{number}"
        text = directory / f"report{suffix}.txt"
        text.write_text(run.text)
        data = directory / f"report{suffix}.json"
        data.write_text(json.dumps(run.to_json(), indent=2) + "\n")
        written += [text, data]
        if failed or run.findings:
            at = run.findings[0].index if run.findings else run.executed
            trace = directory / f"trace{suffix}.txt"
            heading = (f"# {run.options.source_path}: instructions #{max(0, at - TRACE_BEFORE)}"
                       f" to #{at + TRACE_AFTER}, around #{at} "
                       + (f"[{run.findings[0].rule}]" if run.findings else "(where it ended)"))
            rows = [row.format(mark=row.index == at)
                    for row in run.trace(at, TRACE_BEFORE, TRACE_AFTER)]
            trace.write_text("\n".join([heading, *rows]) + "\n")
            written.append(trace)
    return written
