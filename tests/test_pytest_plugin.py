"""The pytest plugin (emu/testing/plugin.py) and the Python API behind it (bootemu/).

The plugin is tested as its users meet it: suites written into a temporary
directory and run by pytest itself (``pytester``), in-process or, for xdist,
in a subprocess.  What the boots must give comes from outside bootemu: the
Arm ARM for registers, and the defect corpus' documented rules
(``fixtures/defects.toml``) for findings.  The golden timelines are the one
recorded output, and the test of them shows that a changed boot fails.
"""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
import xml.etree.ElementTree as ET
from pathlib import Path

import pytest

import bootemu
from emu.analysis.corpus import BUNDLED_DEFECTS, apply_defect, load_defects
from emu.board.board import Board
from emu.checks.run import build_image, check_image
from emu.machine.events import EVENT_CATEGORIES
from emu.machine.machine import Machine
from emu.machine.stop import StopKind

pytest_plugins = ["pytester"]

ROOT = Path(__file__).resolve().parent.parent
HEAD_S = ROOT / "asm" / "head.S"
DEFECTS = {defect.name: defect for defect in load_defects(BUNDLED_DEFECTS)}
# The corpus entry the failure tests use, and the rule its entry documents.
DEFECT = "switch-without-tlbi"
assert DEFECTS[DEFECT].rules == ["missing-tlbi"]


@pytest.fixture
def suite(pytester: pytest.Pytester) -> pytest.Pytester:
    """A project directory holding a copy of asm/ (head.S and its headers)."""
    shutil.copytree(ROOT / "asm", pytester.path / "asm")
    return pytester


def _write_defect(directory: Path, name: str = DEFECT, as_name: str = "head.S") -> None:
    """Rewrite directory/asm/<as_name> as the corpus defect ``name``."""
    path = directory / "asm" / as_name
    path.write_text(apply_defect(HEAD_S.read_text(), DEFECTS[name]))


# -- the API defects of issue 14, each checked -----------------------------------


def test_run_until_a_list_with_a_symbol_arrives_there() -> None:
    image = build_image(HEAD_S)
    machine = Machine(image, Board())
    stop = machine.run(until=["switch_ttbr_id"])
    assert stop.kind is StopKind.ARRIVED
    # head.S calls switch_ttbr_id through its identity alias (VA == PA).
    assert stop.pc == image.physical(image.symbols["switch_ttbr_id"])
    # A string, and a list mixing a count with a symbol: the first reached wins.
    again = Machine(image, Board())
    assert again.run(until="switch_ttbr_id").pc == stop.pc
    third = Machine(image, Board())
    assert third.run(until=["#10", "switch_ttbr_id"]).index == 10


def test_run_events_are_in_instruction_order_for_every_corpus_boot(tmp_path: Path) -> None:
    # Every event category is recorded whatever a report shows; the list is
    # the boot's history, so its instruction counts never go back.
    assert EVENT_CATEGORIES
    for name in ("ttbr-write-mmu-on", "runtime-tables-in-boot-second",
                 "idmap-boot-entry-instead-of-removal"):
        run = bootemu.check(bootemu.corpus_defect(name, tmp_path))
        indices = [event.index for event in run.events]
        assert indices == sorted(indices), name
    clean = check_image(build_image(HEAD_S))
    assert [e.index for e in clean.events] == sorted(e.index for e in clean.events)


@pytest.mark.parametrize(("el", "current_el"), [(2, 0x8), (1, 0x4)])
def test_current_el_reads_as_the_guest_reads_it(el: int, current_el: int,
                                                tmp_path: Path) -> None:
    # DDI 0487, register CurrentEL (special-purpose registers, chapter C5): the EL
    # is in bits [3:2], the rest RES0, so EL2 reads 0x8 and EL1 0x4.
    source = tmp_path / "el.S"
    source.write_text(".globl _start\n_start:\n    mrs x0, CurrentEL\ndone:\n    b done\n")
    machine = Machine(build_image(source), Board(el=el))
    assert machine.reg("CurrentEL") == current_el
    assert machine.run(until="done").kind is StopKind.ARRIVED
    assert machine.reg("x0") == machine.reg("CurrentEL") == current_el  # the guest's MRS
    run = bootemu.check(source, until="done", el=el)
    assert run.reg("CurrentEL") == run.registers["x0"] == current_el


def test_the_run_gives_registers_and_memory() -> None:
    run = bootemu.check(HEAD_S, until="start_c")
    assert run.verdict == bootemu.CLEAN
    assert run.reg("pc") == run.stop.pc == run.registers["pc"]
    assert run.registers["CurrentEL"] == 0x8  # entered at EL2, no drop in head.S
    # Memory as the image put it there: the first word of the program, by PA.
    first = run.image.payload[:16]
    assert run.read_memory(run.image.load_address, 16, physical=True) == first
    # And by VA, through the runtime tables: the image's link address maps it.
    assert run.read_memory(run.image.link_address, 16) == first
    assert "BootRun" in repr(run) and "events" not in repr(run)


def test_boot_options_take_the_command_lines_forms() -> None:
    options = bootemu.BootOptions().with_(load_address="0x8_8000_0000", ram="0x880000000:128M",
                                          defines=["A=1", "B"], el="1", layout="rework-2t")
    assert options.load_address == 0x8_8000_0000
    assert options.ram == (0x8_8000_0000, 128 << 20)
    assert options.defines == {"A": "1", "B": "1"}  # -D B means B=1, as cpp's
    assert options.el == 1
    assert options.all_defines()["XEN_VIRT_START"] == f"{(4 << 39) + (2 << 20):#018x}"
    with pytest.raises(bootemu.BootError, match="no boot option 'load_adress'"):
        bootemu.BootOptions().with_(load_adress=0)
    with pytest.raises(ValueError, match="unknown layout preset"):
        bootemu.BootOptions().with_(layout="nope")


def test_a_load_address_in_the_images_slot_is_an_identity_clash() -> None:
    # 0x80_0000_0000 is level-0 slot 1, where layout.h puts XEN_VIRT_START
    # (512 GiB + 2 MiB): the identity map of the load address would clash with
    # the image's own mapping (DESIGN.md section 1; README `bootemu check`).
    run = bootemu.check(HEAD_S, load_address=0x80_0000_0000)
    bootemu.assert_fires(run, "identity-clash")


def test_machine_at_stops_where_asked() -> None:
    machine = bootemu.machine_at(HEAD_S, at="switch_ttbr_id")
    assert machine.reg("SCTLR_EL2") & 1 == 1  # called with the MMU on (enable_mmu ran)
    with pytest.raises(bootemu.BootError, match="did not stop at #5"):
        bootemu.machine_at(HEAD_S, at="#5", max_insns=3)


def _facade_example() -> str:
    block = (bootemu.__doc__ or "").split("::\n\n", 1)[1].split("\n\nThe lower levels stay", 1)[0]
    return "\n".join(line[4:] for line in block.splitlines())


def test_every_public_name_has_a_docstring_and_an_example() -> None:
    example = _facade_example()
    for name in bootemu.__all__:
        value = getattr(bootemu, name)
        if callable(value):
            assert (value.__doc__ or "").strip(), name
        assert f"bootemu.{name}" in example, name


def test_the_facades_example_runs(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(ROOT)
    exec(compile(_facade_example(), "bootemu/__init__.py", "exec"), {"__name__": "example"})


# -- the plugin's fixtures ---------------------------------------------------------


def test_fixtures_give_a_run_a_machine_and_boots_of_any_source(suite: pytest.Pytester) -> None:
    _write_defect(suite.path, as_name="broken.S")
    suite.makepyfile(test_fix="""
        import pytest
        import bootemu

        pytestmark = pytest.mark.bootemu(source="asm/head.S")

        def test_run(bootemu_run):
            assert bootemu_run.verdict == "clean"
            assert bootemu_run.reg("CurrentEL") == 0x8
            assert bootemu_run.output == ""  # head.S prints nothing

        @pytest.mark.bootemu(until="switch_ttbr_id")
        def test_machine(bootemu_machine):
            assert bootemu_machine.reg("SCTLR_EL2") & 1
            bootemu_machine.step(5)  # switch_ttbr_id turns the MMU off first
            assert bootemu_machine.reg("SCTLR_EL2") & 1 == 0

        def test_other_source(bootemu_boots):
            run = bootemu_boots.check("asm/broken.S")
            bootemu_boots.check(until="enable_mmu")
            assert [r.verdict for r in bootemu_boots.runs] == ["findings", "clean"]
            assert {f.rule for f in run.findings} == {"missing-tlbi"}
    """)
    result = suite.runpytest("-p", "no:cacheprovider")
    result.assert_outcomes(passed=3)


def test_fixtures_boot_elf_and_raw_files_as_the_command_line_does(
        suite: pytest.Pytester) -> None:
    # head.S assembled by `bootemu asm` into an ELF (segments at the link
    # address, 0x8000200000) and a raw binary.
    bootemu_cli = Path(sys.executable).with_name("bootemu")
    subprocess.run([str(bootemu_cli), "asm", str(HEAD_S), "--elf", "head.elf", "-o", "head.bin"],
                   cwd=suite.path, check=True, capture_output=True)
    suite.makepyfile(test_files="""
        import pytest

        # The raw binary at QEMU virt's RAM base, named by the ELF's symbols: the
        # bundled program, which boots clean there.
        @pytest.mark.bootemu(source="head.bin", load_address=0x40000000, symbols="head.elf")
        def test_raw(bootemu_run):
            assert bootemu_run.verdict == "clean"

        # The ELF where its segments say: PA 0x8000200000, level-0 slot 1, where
        # the image itself is mapped; head.S refuses to boot there
        # (BOOT_ERR_IDMAP_CLASH, 4 in asm/include/layout.h), and the layout
        # rules cannot judge an ELF.
        @pytest.mark.bootemu(source="head.elf")
        def test_elf(bootemu_run):
            assert bootemu_run.verdict == "boot-failed"
            assert bootemu_run.failure.code == 4
            assert bootemu_run.image.load_address == 0x8000200000
            assert "identity-clash" in [n.rule for n in bootemu_run.not_applicable]
    """)
    suite.runpytest("-p", "no:cacheprovider").assert_outcomes(passed=2)


def test_command_line_and_ini_options_reach_the_boot(suite: pytest.Pytester) -> None:
    suite.makeini("""
        [pytest]
        bootemu_source = asm/head.S
        bootemu_until = enable_mmu
    """)
    suite.makepyfile(test_opts="""
        def test_opts(bootemu_run, bootemu_boots):
            assert bootemu_run.options.until == "enable_mmu"
            assert bootemu_run.image.load_address == 0x880000000
            assert bootemu_boots.options.el == 1 and bootemu_run.reg("CurrentEL") == 0x4
    """)
    result = suite.runpytest("-p", "no:cacheprovider", "--bootemu-load-address", "0x880000000",
                             "--bootemu-el", "1")
    result.assert_outcomes(passed=1)
    result.stdout.fnmatch_lines(["bootemu: source=*head.S until=enable_mmu "
                                 "load_address=0x880000000 el=1*"])


def test_the_marker_parametrises_with_readable_ids(suite: pytest.Pytester) -> None:
    suite.makepyfile(test_marked="""
        import pytest

        @pytest.mark.bootemu(source="asm/head.S",
                             load_address=[0x40000000, 0x880000000])
        def test_loads(bootemu_run, load_address, bootemu_params):
            assert bootemu_run.image.load_address == load_address
            assert bootemu_params == {"load_address": load_address}

        @pytest.mark.bootemu(source="asm/head.S", layout=["rework-512g", "rework-2t"],
                             seed=[0, 7])
        def test_grid(bootemu_run):
            assert bootemu_run.verdict == "clean"
    """)
    result = suite.runpytest("-p", "no:cacheprovider", "-v")
    result.assert_outcomes(passed=6)
    result.stdout.fnmatch_lines_random([
        "*test_loads?load_address=0x40000000? PASSED*",
        "*test_loads?load_address=0x880000000? PASSED*",
        "*test_grid?layout=rework-512g-seed=0? PASSED*",
        "*test_grid?layout=rework-2t-seed=7? PASSED*",
    ])


def test_a_misspelt_marker_option_is_a_collection_error(suite: pytest.Pytester) -> None:
    suite.makepyfile(test_typo="""
        import pytest

        @pytest.mark.bootemu(load_adress=[0x40000000])
        def test_typo(bootemu_run):
            pass
    """)
    result = suite.runpytest("-p", "no:cacheprovider")
    assert result.ret != 0
    result.stdout.fnmatch_lines(["*no boot option 'load_adress'*"])


# -- failure messages ----------------------------------------------------------------


def test_a_failing_assertion_shows_findings_and_timeline(suite: pytest.Pytester) -> None:
    _write_defect(suite.path)
    suite.makepyfile(test_fail="""
        import pytest
        from bootemu import assert_clean, assert_fires

        pytestmark = pytest.mark.bootemu(source="asm/head.S")

        def test_clean(bootemu_run):
            assert_clean(bootemu_run)

        def test_fires_elsewhere(bootemu_run):
            assert_fires(bootemu_run, "missing-tlbi", at="enable_mmu")

        def test_fires_here(bootemu_run):
            # The corpus entry: dropping switch_ttbr_id's TLBI is missing-tlbi there.
            assert_fires(bootemu_run, "missing-tlbi", at="switch_ttbr_id")
    """)
    result = suite.runpytest("-p", "no:cacheprovider")
    result.assert_outcomes(passed=1, failed=2)
    out = result.stdout.str()
    result.stdout.fnmatch_lines([
        "*AssertionError: the boot is not clean",
        "*Verdict: findings - 1 finding (missing-tlbi); stopped at *start_c*",
        "*Findings:",
        "*[[]missing-tlbi[]] #* switch_ttbr_id+0x*: MMU on *",
        "*VA 0x40000000: TLB -> PA 0x40000000*",
        "*MMU timeline (around #*",
        "*switch_ttbr_id+0x*MMU on (SCTLR_EL2*<== missing-tlbi",
        # The rewritten assert's comparison, of the verdict alone.
        "*assert 'findings' == 'clean'*",
    ])
    result.stdout.fnmatch_lines([
        "*AssertionError: missing-tlbi at enable_mmu did not fire "
        "(it fired elsewhere: #* switch_ttbr_id+0x*)",
    ])
    # The boots' verdicts for a failed test, in a section of their own.
    result.stdout.fnmatch_lines(["*Captured bootemu call*", "head.S*", "*Verdict: findings*"])
    assert "BootRun(" not in out and "events=[" not in out


# -- golden timelines ----------------------------------------------------------------

GOLDEN_SUITE = """
    import pytest
    from bootemu import assert_timeline

    @pytest.mark.bootemu(source="asm/head.S", load_address=[0x40000000, 0x880000000])
    def test_timeline(bootemu_run, bootemu_golden):
        assert_timeline(bootemu_run, bootemu_golden)
"""


def test_golden_timelines_are_recorded_compared_and_refreshed(suite: pytest.Pytester) -> None:
    suite.makepyfile(test_gold=GOLDEN_SUITE)
    golden = suite.path / "golden" / "test_gold"
    first = suite.runpytest("-p", "no:cacheprovider")
    first.assert_outcomes(failed=2)
    first.stdout.fnmatch_lines(["*no golden timeline at *test_timeline?load_address=0x40000000?"
                                ".txt: run pytest with --bootemu-update-golden*"])

    suite.runpytest("-p", "no:cacheprovider", "--bootemu-update-golden").assert_outcomes(passed=2)
    files = sorted(p.name for p in golden.iterdir())
    assert files == ["test_timeline[load_address=0x40000000].txt",
                     "test_timeline[load_address=0x880000000].txt"]
    text = (golden / files[0]).read_text()
    assert text.startswith("MMU timeline") and "TTBR0_EL2" in text
    assert text.rstrip().splitlines()[-1].startswith("Verdict: clean")
    suite.runpytest("-p", "no:cacheprovider").assert_outcomes(passed=2)

    # A changed boot: the corpus defect drops switch_ttbr_id's TLBI.
    _write_defect(suite.path)
    changed = suite.runpytest("-p", "no:cacheprovider")
    changed.assert_outcomes(failed=2)
    changed.stdout.fnmatch_lines([
        "*the timeline differs from the golden one (run pytest with --bootemu-update-golden*",
        "*(golden)", "*+++ this run",
        "*-*TLBI ALLE2*",
        "*+*<== missing-tlbi",
        "*-Verdict: clean*", "*+Verdict: findings*",
    ])
    suite.runpytest("-p", "no:cacheprovider", "--bootemu-update-golden").assert_outcomes(passed=2)
    assert "<== missing-tlbi" in (golden / files[0]).read_text()
    suite.runpytest("-p", "no:cacheprovider").assert_outcomes(passed=2)


# -- reports and JUnit -----------------------------------------------------------------

REPORT_SUITE = """
    import pytest
    from bootemu import assert_clean

    @pytest.mark.bootemu(source="asm/head.S")
    def test_good(bootemu_run):
        assert_clean(bootemu_run)

    @pytest.mark.bootemu(source="asm/broken.S")
    def test_bad(bootemu_run):
        assert_clean(bootemu_run)
"""


def test_the_report_directory_and_junit_properties(suite: pytest.Pytester) -> None:
    _write_defect(suite.path, as_name="broken.S")
    suite.makepyfile(test_rep=REPORT_SUITE)
    reports = suite.path / "reports"
    junit = suite.path / "junit.xml"
    result = suite.runpytest("-p", "no:cacheprovider", "--bootemu-report", str(reports),
                             f"--junitxml={junit}")
    result.assert_outcomes(passed=1, failed=1)

    good, bad = reports / "test_rep.py__test_good", reports / "test_rep.py__test_bad"
    assert sorted(p.name for p in good.iterdir()) == ["report.json", "report.txt"]
    assert sorted(p.name for p in bad.iterdir()) == ["report.json", "report.txt", "trace.txt"]
    assert json.loads((good / "report.json").read_text())["verdict"] == "clean"
    report = json.loads((bad / "report.json").read_text())
    assert [f["rule"] for f in report["findings"]] == ["missing-tlbi"]
    assert (bad / "report.txt").read_text().splitlines()[-1].startswith("Verdict: findings")
    # The trace: every instruction up to the finding's, which is marked, and
    # it is the MMU-on write (the rule fires at the SCTLR write: README).
    trace = (bad / "trace.txt").read_text().splitlines()
    marked = [line for line in trace if line.startswith(">>")]
    assert len(marked) == 1 and "msr sctlr_el2" in marked[0]
    assert f"#{report['findings'][0]['index']}" in trace[0]
    numbers = [int(line.split()[0 if not line.startswith(">>") else 1]) for line in trace[1:]]
    assert numbers == list(range(numbers[0], numbers[0] + len(numbers)))

    cases = {case.get("name"): case for case in ET.parse(junit).getroot().iter("testcase")}
    properties = {name: {p.get("name"): p.get("value") for p in case.iter("property")}
                  for name, case in cases.items()}
    assert properties["test_good"]["bootemu_verdict"] == "clean"
    assert properties["test_bad"]["bootemu_verdict"] == "findings"
    assert int(properties["test_good"]["bootemu_instructions"]) > 0


# -- xdist -------------------------------------------------------------------------------

XDIST_SUITE = """
    import pytest
    from bootemu import assert_clean, assert_timeline

    # Each reworked layout keeps level-0 slot 0 free for identity maps
    # (DESIGN.md section 1), and both load addresses lie in slot 0: clean.
    @pytest.mark.bootemu(source="asm/head.S", layout=["rework-512g", "rework-2t", "rework-10t"],
                         load_address=[0x40000000, 0x880000000])
    def test_boot(bootemu_run, bootemu_cache, bootemu_golden):
        assert_clean(bootemu_run)
        assert bootemu_cache.directory is not None
        assert bootemu_cache.records()  # this boot's program at least
        assert_timeline(bootemu_run, bootemu_golden)
"""


def test_a_suite_runs_under_xdist_with_a_shared_cache(suite: pytest.Pytester) -> None:
    suite.makepyfile(test_par=XDIST_SUITE)
    cache = suite.path / "asm-cache"
    junit = suite.path / "junit.xml"
    args = ("-p", "no:cacheprovider", "-n", "2", "--bootemu-cache-dir", str(cache),
            f"--junitxml={junit}")
    result = suite.runpytest_subprocess(*args, "--bootemu-update-golden")
    result.assert_outcomes(passed=6)
    result.stdout.fnmatch_lines(["*2 workers [[]6 items[]]*"])
    # One record a program, keyed by source and definitions (head.S is linked
    # at XEN_VIRT_START whatever its load address): three layouts, three
    # records, each complete whichever worker wrote it, no temporary left.
    records = sorted(cache.iterdir())
    assert len(records) == 3 and all(p.suffix == ".json" for p in records), records
    assert all(json.loads(p.read_text()) for p in records)
    assert len(list((suite.path / "golden" / "test_par").iterdir())) == 6
    # Again, from the cache and against the goldens the workers wrote.
    again = suite.runpytest_subprocess(*args)
    again.assert_outcomes(passed=6)
    assert sorted(cache.iterdir()) == records
    verdicts = [p.get("value") for p in ET.parse(junit).getroot().iter("property")
                if p.get("name") == "bootemu_verdict"]
    assert verdicts == ["clean"] * 6
