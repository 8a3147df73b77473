"""bootemu's Python API: boot AArch64 boot code under an MMU model and check it.

Every public name, with an example (run from the repository's root; the
test suite runs this block)::

    import tempfile
    from pathlib import Path

    import bootemu

    # check(source, **options) -> BootRun: a boot with every rule watching.
    run = bootemu.check("asm/head.S", load_address=0x4000_0000, until="start_c")
    assert run.verdict == bootemu.CLEAN       # or FINDINGS, BOOT_FAILED, INCOMPLETE
    assert bootemu.FINDINGS in bootemu.BOOT_VERDICTS and bootemu.BOOT_FAILED in bootemu.VERDICTS
    assert bootemu.INCOMPLETE == "incomplete"
    run.findings, run.events, run.windows     # the MMU events in instruction order
    assert run.reg("CurrentEL") == 0x8 and run.registers["pc"] == run.stop.pc
    code = run.read_memory(0x4000_0000, 16, physical=True)
    report, data = run.text, run.to_json()    # `bootemu check`'s report, and --json's
    assert isinstance(run, bootemu.BootRun) and isinstance(run, bootemu.CheckRun)

    # BootOptions: the command line's options by name; BootError for a wrong one.
    options = bootemu.BootOptions(until="switch_ttbr_id").with_(layout="rework-2t")
    try:
        options.with_(load_adress=0x4000_0000)
    except bootemu.BootError as err:
        assert "load_adress" in str(err)

    # machine_at(source, at=PLACE, **options) -> Machine stopped at a place.
    machine = bootemu.machine_at(options=options, at="switch_ttbr_id")
    machine.step(5)                           # switch_ttbr_id turns the MMU off first
    assert machine.reg("SCTLR_EL2") & 1 == 0

    # Boots: a test's boots with shared options (the bootemu_boots fixture).
    boots = bootemu.Boots(bootemu.BootOptions(source=Path("asm/head.S")))
    boots.check(load_address=0x8_8000_0000), boots.machine(at="enable_mmu")
    assert [r.verdict for r in boots.runs] == ["clean"]

    # A corpus defect as a source of its own, and the rules its entry documents.
    source = bootemu.corpus_defect("switch-without-tlbi", tempfile.mkdtemp())
    bad = bootemu.check(source)
    assert bootemu.rule_expectations()["switch-without-tlbi"] == ["missing-tlbi"]
    assert set(bootemu.rule_expectations()["switch-without-tlbi"]) <= set(bootemu.RULES)

    # The assertion helpers: a failure says the findings and the timeline around them.
    bootemu.assert_clean(run)
    bootemu.assert_fires(bad, "missing-tlbi", at="switch_ttbr_id")
    assert "[missing-tlbi]" in bootemu.explain(bad)
    golden = bootemu.Golden(Path(tempfile.mkdtemp()) / "head.txt", update=True)
    bootemu.assert_timeline(run, golden)      # recorded; a Golden without update compares
    bootemu.assert_timeline(run, golden.path)
    assert bootemu.timeline_text(run) == golden.path.read_text()

    # The lower levels: image, board, machine, and the checked run without options.
    image = bootemu.build_image(bootemu.BUNDLED_SOURCE, load_address=0x4000_0000)
    checked = bootemu.check_image(image, until="start_c", board=bootemu.Board())
    machine = bootemu.Machine(image, bootemu.Board(el=1))
    assert machine.reg("CurrentEL") == 0x4

The lower levels stay importable as before: :func:`build_image` and
:func:`check_image` (:mod:`emu.checks.run`), :class:`Machine`
(:mod:`emu.machine.machine`) and :class:`Board` (:mod:`emu.board.board`).
In pytest, the plugin's fixtures (``bootemu_boots``, ``bootemu_run``,
``bootemu_machine``, ``bootemu_golden``, ``bootemu_cache``) and the
``bootemu`` marker build the same runs: see README.md, "Writing emulation
suites".
"""

from __future__ import annotations

from pathlib import Path

from emu.analysis.corpus import BUNDLED_DEFECTS, load_defects, materialize
from emu.board.board import Board
from emu.checks import ALL_CHECKS
from emu.checks.run import CheckRun, build_image, check_image
from emu.checks.verdict import BOOT_FAILED, BOOT_VERDICTS, CLEAN, FINDINGS, INCOMPLETE, VERDICTS
from emu.machine.machine import Machine
from emu.testing.assertions import (
    Golden,
    assert_clean,
    assert_fires,
    assert_timeline,
    explain,
    timeline_text,
)
from emu.testing.boot import (
    BUNDLED_SOURCE,
    BootError,
    BootOptions,
    BootRun,
    Boots,
    check,
    machine_at,
)

__all__ = [
    "BOOT_FAILED", "BOOT_VERDICTS", "BUNDLED_SOURCE", "CLEAN", "FINDINGS", "INCOMPLETE",
    "RULES", "VERDICTS", "Board", "BootError", "BootOptions", "BootRun", "Boots", "CheckRun",
    "Golden", "Machine", "assert_clean", "assert_fires", "assert_timeline", "build_image", "check",
    "check_image", "corpus_defect", "explain", "machine_at", "rule_expectations",
    "timeline_text",
]

RULES: tuple[str, ...] = tuple(cls.rule_id for cls in ALL_CHECKS)
"""The rule ids, in the catalogue's order (``bootemu rules``).

>>> "ttbr-switch-live" in bootemu.RULES
True
"""


def corpus_defect(name: str, directory: str | Path, *, head: str | Path = BUNDLED_SOURCE,
                  defects: str | Path = BUNDLED_DEFECTS) -> Path:
    """Write the corpus defect ``name`` (``fixtures/defects.toml``: a minimal
    edit of ``head``, the bundled head.S, and the rules it must trip) as
    ``directory/<name>.S`` with its headers, and return the path.
    :class:`KeyError` names the known defects for an unknown one.

    >>> run = bootemu.check(bootemu.corpus_defect("switch-without-tlbi", tmp_path))
    >>> bootemu.assert_fires(run, "missing-tlbi", at="switch_ttbr_id")
    """
    known = {defect.name: defect for defect in load_defects(defects)}
    if name not in known:
        raise KeyError(f"no defect {name!r} in {defects} (known: {', '.join(known)})")
    return materialize(known[name], head, directory)


def rule_expectations(defects: str | Path = BUNDLED_DEFECTS) -> dict[str, list[str]]:
    """Each corpus defect's name and the rules its entry documents it must trip.

    >>> bootemu.rule_expectations()["switch-without-tlbi"]
    ['missing-tlbi']
    """
    return {defect.name: list(defect.rules) for defect in load_defects(defects)}

