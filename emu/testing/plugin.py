"""The pytest plugin: emulation suites for boot code (loaded through the
``pytest11`` entry point once bootemu is installed).

Fixtures
    ``bootemu_boots``: the boots of one test (:class:`~emu.testing.boot.Boots`);
    ``bootemu_boots.check(source, **options)`` runs one with every rule
    watching (a :class:`~emu.testing.boot.BootRun`),
    ``bootemu_boots.machine(source, at=..., **options)`` gives a machine
    stopped at a place.  ``bootemu_run`` and ``bootemu_machine`` are those two for
    the test's own options; ``bootemu_params`` the options its ``bootemu``
    marker parametrised it with; ``bootemu_golden`` its golden timeline;
    ``bootemu_cache`` (session) the assembler cache the workers share.

The ``bootemu`` marker
    ``@pytest.mark.bootemu(source="boot.S", load_address=[0x40000000,
    0x880000000])``: options as :class:`~emu.testing.boot.BootOptions` names
    them; a list is a set of values to run the test with (ids such as
    ``load_address=0x40000000``), any other value (a tuple or dict too) is
    one value.  The closest marker (function, class, module) wins per option.

Options (``pytest --help``, group ``bootemu``)
    the command line's boot options as ``--bootemu-load-address`` etc.,
    ``--bootemu-update-golden``, ``--bootemu-report DIR`` and
    ``--bootemu-cache-dir DIR``.

Each boot's verdict and instruction count are the test's JUnit properties
(``bootemu_verdict``, ``bootemu_instructions``), and a failed test shows the
verdict lines and guest output of its boots in a ``Captured bootemu`` section.
Options precedence: a call's keywords, then the marker, then the command
line, then the ini file (``bootemu_source``, ``bootemu_until``).
"""

from __future__ import annotations

import itertools
import os
import re
from collections.abc import Generator, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

# Before the helpers are imported: their asserts are rewritten, as a test's are.
pytest.register_assert_rewrite("emu.testing.assertions")

from emu.asm.cache import cache_directory  # noqa: E402
from emu.machine.machine import Machine  # noqa: E402
from emu.report.check_report import verdict_line  # noqa: E402
from emu.testing.assertions import Golden  # noqa: E402
from emu.testing.boot import BootOptions, BootRun, Boots, option_names  # noqa: E402
from emu.testing.reports import report_directory, write_reports  # noqa: E402

MARKER = "bootemu"
_OPTIONS = pytest.StashKey[BootOptions]()
_FAILED = pytest.StashKey[bool]()
_SESSION = pytest.StashKey[Boots]()
_UNSAFE = re.compile(r"[^A-Za-z0-9_.=\[\]+,-]+")
# Options whose values read best in hex in a test id.
_HEX = frozenset({"load_address"})
# The command-line options that are boot options: (option, BootOptions name, help).
_BOOT_OPTIONS = (
    ("--bootemu-source", "source", "the file to boot: assembly source, ELF, arm64 Image or "
                                   "raw binary [default: the bundled asm/head.S]"),
    ("--bootemu-until", "until", "where a boot stops: bootemu check's --until forms "
                                 "[default: start_c]"),
    ("--bootemu-load-address", "load_address", "physical address of a source or raw "
                                               "binary's first byte"),
    ("--bootemu-define", "defines", "-D NAME=VALUE for sources (repeatable)"),
    ("--bootemu-include", "include_dirs", "-I DIR for sources (repeatable)"),
    ("--bootemu-layout", "layout", "a layout preset's -D definitions (bootemu layout)"),
    ("--bootemu-format", "image_format", "auto, asm, elf, image or raw"),
    ("--bootemu-symbols", "symbols", "an ELF or System.map naming a raw file's addresses"),
    ("--bootemu-el", "el", "exception level at entry: 1 or 2 [default: 2]"),
    ("--bootemu-ram", "ram", "RAM as BASE:SIZE, e.g. 0x40000000:128M"),
    ("--bootemu-dtb", "dtb", "a device tree blob to pass in x0"),
    ("--bootemu-bootargs", "bootargs", "/chosen/bootargs of the generated device tree"),
    ("--bootemu-cpu", "cpu", "the CPU model (bootemu check --cpu)"),
    ("--bootemu-seed", "seed", "seed of the device tree's kaslr-seed and rng-seed"),
    ("--bootemu-max-insns", "max_insns", "instruction budget of a boot"),
)
_REPEATED = frozenset({"defines", "include_dirs"})
_PATHS = frozenset({"source", "symbols", "dtb", "include_dirs"})


def pytest_addoption(parser: pytest.Parser) -> None:
    group = parser.getgroup("bootemu", "bootemu: AArch64 boot code under an MMU model")
    for option, name, help_text in _BOOT_OPTIONS:
        group.addoption(option, dest=f"bootemu_{name}", default=None, help=help_text,
                        action="append" if name in _REPEATED else "store")
    group.addoption("--bootemu-update-golden", action="store_true", default=False,
                    help="write each golden timeline from this run instead of comparing")
    group.addoption("--bootemu-report", metavar="DIR", default=None,
                    help="write each test's boot reports (text, JSON, and a trace of the "
                         "failing stretch) under DIR, one directory a test")
    group.addoption("--bootemu-cache-dir", metavar="DIR", default=None,
                    help="the assembler's disk cache, shared by xdist workers "
                         "[default: $BOOTEMU_CACHE_DIR or ~/.cache/bootemu]")
    parser.addini("bootemu_source", "the file bootemu fixtures boot (relative to the ini file)",
                  default=None)
    parser.addini("bootemu_until", "where bootemu fixtures' boots stop", default=None)


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line(
        "markers", f"{MARKER}(**options): boot options for the bootemu fixtures (source, "
        "until, load_address, defines, layout, ram, el, seed, ...); a list of values "
        "parametrises the test")
    config.stash[_OPTIONS] = _session_options(config)
    cache = config.getoption("bootemu_cache_dir")
    if cache is not None:
        # The assembler reads its directory from the environment, at each use;
        # xdist workers are started with the controller's environment and
        # configure the same way.  Put back at unconfigure (pytester runs
        # sessions inside one process).
        config.add_cleanup(_restore_env("BOOTEMU_CACHE_DIR"))
        os.environ["BOOTEMU_CACHE_DIR"] = str(Path(cache).resolve())


def _restore_env(name: str) -> Any:
    old = os.environ.get(name)

    def restore() -> None:
        if old is None:
            os.environ.pop(name, None)
        else:
            os.environ[name] = old

    return restore


def _session_options(config: pytest.Config) -> BootOptions:
    """The ini file's options, then the command line's; their paths made
    absolute (from the ini file's directory, from where pytest was started)."""
    options = BootOptions()
    ini_dir = config.inipath.parent if config.inipath else config.rootpath
    for name in ("source", "until"):
        value = config.getini(f"bootemu_{name}")
        if value:
            options = options.with_(**{name: _absolute(name, value, ini_dir)})
    here = Path(config.invocation_params.dir)
    changes = {}
    for _option, name, _help in _BOOT_OPTIONS:
        value = config.getoption(f"bootemu_{name}")
        if value is not None:
            changes[name] = _absolute(name, value, here)
    return options.with_(**changes)


def _absolute(name: str, value: Any, base: Path) -> Any:
    if name not in _PATHS:
        return value
    if isinstance(value, list):
        return tuple(base / p for p in value)
    return base / value


def pytest_report_header(config: pytest.Config) -> str | None:
    options = config.stash[_OPTIONS]
    cache = cache_directory()
    return (f"bootemu: {options.describe() or 'default options'}; "
            f"assembler cache {cache if cache is not None else 'off'}")


# -- the marker ----------------------------------------------------------------


def _marker_options(node: pytest.Item | Any) -> dict[str, Any]:
    """The ``bootemu`` markers' options, the closest marker winning per option."""
    merged: dict[str, Any] = {}
    for marker in reversed(list(node.iter_markers(MARKER))):
        if marker.args:
            raise pytest.UsageError(f"{node.nodeid}: @pytest.mark.{MARKER} takes keywords "
                                    f"only ({', '.join(option_names())})")
        merged.update(marker.kwargs)
    unknown = sorted(set(merged) - set(option_names()))
    if unknown:
        raise pytest.UsageError(f"{node.nodeid}: @pytest.mark.{MARKER}: no boot option "
                                f"{', '.join(map(repr, unknown))} "
                                f"(the options: {', '.join(option_names())})")
    return merged


def _id_value(name: str, value: Any) -> str:
    if isinstance(value, int) and not isinstance(value, bool) and name in _HEX:
        return f"{value:#x}"
    if isinstance(value, dict):
        return ",".join(f"{k}={v}" for k, v in value.items())
    if isinstance(value, tuple | list):
        return ",".join(str(v) for v in value)
    return str(value)


def pytest_generate_tests(metafunc: pytest.Metafunc) -> None:
    """Run a test once per combination of its marker's list values, with ids
    such as ``load_address=0x40000000-layout=rework-2t``."""
    options = _marker_options(metafunc.definition)
    grid = {name: value for name, value in options.items() if isinstance(value, list)}
    if not grid:
        return
    combos = [dict(zip(grid, values, strict=True)) for values in itertools.product(*grid.values())]
    for combo in combos:
        BootOptions().with_(**combo)  # a value of the wrong form is a collection error
    ids = ["-".join(f"{name}={_id_value(name, value)}" for name, value in combo.items())
           for combo in combos]
    # The test may take each option by name too (``def test_x(bootemu_run, load_address)``).
    direct = [name for name in grid if name in metafunc.fixturenames]
    argnames = (["bootemu_params"] if "bootemu_params" in metafunc.fixturenames else []) + direct
    if not argnames:
        raise pytest.UsageError(f"{metafunc.definition.nodeid}: @pytest.mark.{MARKER} "
                                "parametrises a test that uses no bootemu fixture")
    values = [tuple([combo] * (argnames[0] == "bootemu_params") + [combo[n] for n in direct])
              for combo in combos]
    metafunc.parametrize(argnames, values, ids=ids,
                         indirect=[n for n in argnames if n == "bootemu_params"])


# -- fixtures ------------------------------------------------------------------


@pytest.fixture
def bootemu_params(request: pytest.FixtureRequest) -> dict[str, Any]:
    """The options this test's ``bootemu`` marker parametrised it with ({} if none)."""
    return dict(getattr(request, "param", {}))


@pytest.fixture
def bootemu_boots(request: pytest.FixtureRequest,
                  bootemu_params: dict[str, Any]) -> Iterator[Boots]:
    """The boots of this test: ``bootemu_boots.check(source, **options)``,
    ``bootemu_boots.machine(source, at=..., **options)``; sources relative to
    the test file."""
    node = request.node
    base = request.config.stash[_OPTIONS].with_(base_dir=node.path.parent)
    scalars = {k: v for k, v in _marker_options(node).items() if not isinstance(v, list)}

    def record(run: BootRun) -> None:
        # JUnit XML properties (as record_property makes them), for CI dashboards.
        node.user_properties.append(("bootemu_verdict", run.verdict))
        node.user_properties.append(("bootemu_instructions", run.executed))

    boots = Boots(base.with_(**scalars).with_(**bootemu_params), recorded=record)
    node.stash[_SESSION] = boots
    yield boots
    root = request.config.getoption("bootemu_report")
    if root is not None and boots.runs:
        failed = node.stash.get(_FAILED, False)
        write_reports(report_directory(Path(root), node.nodeid), boots.runs, failed)


@pytest.fixture
def bootemu_run(bootemu_boots: Boots) -> BootRun:
    """This test's boot, with every rule watching, run to its ``until``."""
    return bootemu_boots.check()


@pytest.fixture
def bootemu_machine(bootemu_boots: Boots) -> Machine:
    """A machine booted with this test's options and stopped at its ``until``."""
    return bootemu_boots.machine()


@pytest.fixture
def bootemu_golden(request: pytest.FixtureRequest) -> Golden:
    """This test's golden timeline: ``golden/<module>/<test name>.txt`` next to
    the test file (``<Class>.<test name>`` in a class), written instead of
    compared under ``--bootemu-update-golden``."""
    node = request.node
    # The node id after the file: class and test name with its parameters.
    name = _UNSAFE.sub("_", node.nodeid.split("::", 1)[-1].replace("::", "."))
    path = node.path.parent / "golden" / node.path.stem / f"{name}.txt"
    return Golden(path, bool(request.config.getoption("bootemu_update_golden")))


@dataclass(frozen=True)
class AssemblerCache:
    """The assembler's disk cache for this session: one JSON record a program,
    keyed by the SHA-256 of the preprocessed source, the link address, the
    definitions and the assembler's own version, written to a temporary file
    and renamed into place - so xdist workers share it safely."""

    directory: Path | None

    def records(self) -> list[Path]:
        """The programs cached so far."""
        if self.directory is None or not self.directory.is_dir():
            return []
        return sorted(p for p in self.directory.glob("*.json") if not p.name.startswith("."))


@pytest.fixture(scope="session")
def bootemu_cache() -> AssemblerCache:
    """The assembler cache shared by this session (and its xdist workers)."""
    return AssemblerCache(cache_directory())


@pytest.hookimpl(wrapper=True)
def pytest_runtest_makereport(item: pytest.Item,
                              call: pytest.CallInfo[None]) -> Generator[None, Any, Any]:
    session = item.stash.get(_SESSION, None)
    if call.when == "call" and session is not None and session.runs:
        # Shown with a failure, as captured output is: what each boot came to.
        item.add_report_section("call", "bootemu", "\n".join(
            f"{run.options.source_path.name} {run.options.describe()}\n"
            f"  Verdict: {verdict_line(run)}" + "".join(
                f"\n  | {line}" for line in run.output.splitlines())
            for run in session.runs))
    report = yield
    # The fixture's teardown writes a trace only for a failed test: it reads this.
    if report.when in ("setup", "call") and report.failed:
        item.stash[_FAILED] = True
    return report
