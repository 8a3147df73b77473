"""A boot as a test describes it, and the run it gives.

:class:`BootOptions` holds what ``bootemu check`` takes on its command line -
the file (assembly source, ELF, arm64 Image or raw binary), ``--load-address``,
``-D``, ``-I``, ``--layout``, ``--format``, ``--symbols``, ``--el``, ``--ram``,
``--dtb``, ``--bootargs``, ``--cpu``, ``--seed``, ``--until`` and
``--max-insns`` - under the same names, so a boot a test describes is the boot
the command line would make.  :func:`check` boots it with every rule watching
and returns a :class:`BootRun`; :func:`machine_at` gives a machine stopped at a
place, to poke at.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from emu.analysis.layout import get_preset
from emu.asm.preprocess import parse_define
from emu.board.board import Board
from emu.board.spec import BootSpec, parse_ram
from emu.checks.run import CheckRun, check_image
from emu.image.boot_image import BootImage, ImageError
from emu.image.load import ImageKind
from emu.machine.machine import DEFAULT_MAX_INSNS, Machine
from emu.machine.stop import StopKind
from emu.machine.targets import DEFAULT_TARGET, addresses_of, parse_target, run_to_target
from emu.report.check_report import format_text, to_json
from emu.report.timeline import DEFAULT_EVENTS
from emu.report.trace import Disassembler

__all__ = ["BUNDLED_SOURCE", "BootError", "BootOptions", "BootRun", "Boots", "TraceRow", "check",
           "machine_at", "option_names"]

# The bundled Xen-style boot program, what ``bootemu check`` boots without SOURCE.
BUNDLED_SOURCE = Path(__file__).resolve().parents[2] / "asm" / "head.S"

# General-purpose registers and the few special ones a snapshot holds.
_SNAPSHOT = (*(f"x{n}" for n in range(31)), "sp", "pc", "pstate", "CurrentEL")


class BootError(ImageError):
    """A boot a test asked for that could not be made or did not get where asked:
    an unknown option, a value of the wrong form, or a machine that stopped
    before the place :func:`machine_at` was to stop it at."""


def _address(name: str, value: object) -> int:
    if isinstance(value, bool) or not isinstance(value, int | str):
        raise BootError(f"{name}={value!r}: expected an address (0x40000000)")
    try:
        number = value if isinstance(value, int) else int(value.replace("_", ""), 0)
    except ValueError:
        raise BootError(f"{name}={value!r}: not an address (try 0x40000000)") from None
    if not 0 <= number < 1 << 64:
        raise BootError(f"{name}={value!r}: outside the 64-bit address space")
    return number


def _defines(value: object) -> dict[str, str]:
    """``-D`` definitions from a mapping, or from ``NAME=VALUE`` strings as the
    command line takes them."""
    if isinstance(value, Mapping):
        return {str(k): str(v) for k, v in value.items()}
    items = [value] if isinstance(value, str) else list(value)  # type: ignore[call-overload]
    defines: dict[str, str] = {}
    for text in items:
        try:
            name, val = parse_define(str(text))
        except ValueError as err:
            raise BootError(f"defines: {err}") from None
        defines[name] = val
    return defines


def _path(value: object) -> Path | None:
    return None if value is None else Path(value)  # type: ignore[arg-type]


def _coerce(name: str, value: Any) -> Any:
    """An option's value in its one form: addresses as ints, RAM as (base, size),
    definitions as a dict, files as paths.  Strings are read as the command
    line reads them, so values from ``--bootemu-*`` options, ini files and
    markers all work."""
    if value is None:
        return None if name not in ("defines", "include_dirs") else {} if name == "defines" else ()
    if name == "load_address":
        return _address(name, value)
    if name == "defines":
        return _defines(value)
    if name == "include_dirs":
        return tuple(Path(p) for p in ([value] if isinstance(value, str | Path) else value))
    if name == "ram":
        if isinstance(value, tuple):
            return (_address("ram base", value[0]), _address("ram size", value[1]))
        try:
            return parse_ram(str(value))
        except ValueError as err:
            raise BootError(f"ram: {err}") from None
    if name in ("el", "seed", "max_insns"):
        try:
            number = int(value, 0) if isinstance(value, str) else int(value)
        except (TypeError, ValueError):
            raise BootError(f"{name}={value!r}: expected a number") from None
        if name == "el" and number not in (1, 2):
            raise BootError(f"el={value!r}: the entry EL is 1 or 2")
        return number
    if name in ("source", "symbols", "dtb"):
        return _path(value)
    if name == "image_format":
        if value != "auto" and value not in {kind.value for kind in ImageKind}:
            known = ", ".join(["auto", *(kind.value for kind in ImageKind)])
            raise BootError(f"image_format={value!r}: one of {known}")
        return str(value)
    if name == "layout":
        get_preset(str(value))  # an unknown preset is said at once, with the known ones
        return str(value)
    return value


@dataclass(frozen=True)
class BootOptions:
    """One boot, as ``bootemu check``'s options describe it.

    Every field has the command line's name and default (``--load-address``
    is ``load_address``, ``-D`` is ``defines``, ``--format`` is
    ``image_format``); ``source`` None is the bundled ``asm/head.S``.  Relative
    paths are read from ``base_dir`` (the test file's directory in the plugin).

    >>> BootOptions().with_(load_address="0x8_8000_0000").load_address == 0x880000000
    True
    """

    source: Path | None = None
    until: str | None = DEFAULT_TARGET
    load_address: int | None = None
    defines: Mapping[str, str] = field(default_factory=dict)
    include_dirs: tuple[Path, ...] = ()
    layout: str | None = None
    image_format: str = "auto"
    symbols: Path | None = None
    el: int = 2
    ram: tuple[int, int] | None = None
    dtb: Path | None = None
    bootargs: str | None = None
    cpu: str = "cortex-a72"
    seed: int = 0
    max_insns: int = DEFAULT_MAX_INSNS
    base_dir: Path | None = None

    def with_(self, **changes: Any) -> BootOptions:
        """A copy with ``changes`` (command-line forms accepted: ``"0x40000000"``,
        ``"0x40000000:128M"``, ``["NAME=VALUE"]``); :class:`BootError` for an
        option that does not exist or a value of the wrong form."""
        unknown = sorted(set(changes) - set(option_names()) - {"base_dir"})
        if unknown:
            raise BootError(f"no boot option {', '.join(map(repr, unknown))} "
                            f"(the options: {', '.join(option_names())})")
        values = {name: _coerce(name, value) if name != "base_dir" else _path(value)
                  for name, value in changes.items()}
        return dataclasses.replace(self, **values)

    def _resolve(self, path: Path | None) -> Path | None:
        if path is None or path.is_absolute() or self.base_dir is None:
            return path
        return self.base_dir / path

    @property
    def source_path(self) -> Path:
        """The file booted: ``source`` read from ``base_dir``, or the bundled head.S."""
        return self._resolve(self.source) or BUNDLED_SOURCE

    def all_defines(self) -> dict[str, str]:
        """The ``-D`` definitions of the boot: the layout preset's, then ``defines``
        (which win, as a later ``-D`` does)."""
        defines = dict(get_preset(self.layout).defines) if self.layout else {}
        defines.update(self.defines)
        return defines

    def spec(self) -> BootSpec:
        """The command line's description of this boot (see :class:`BootSpec`)."""
        return BootSpec(
            path=self.source_path,
            kind=None if self.image_format == "auto" else ImageKind(self.image_format),
            load_address=self.load_address,
            defines=self.all_defines(),
            include_dirs=[self._resolve(p) or p for p in self.include_dirs],
            symbols=self._resolve(self.symbols),
            el=self.el, ram=self.ram, dtb=self._resolve(self.dtb), bootargs=self.bootargs,
            cpu=self.cpu, seed=self.seed,
        )

    def load(self) -> tuple[BootImage, Board]:
        """The image and the board, as ``bootemu check`` would build them."""
        return self.spec().load()

    def describe(self) -> str:
        """The options that differ from the defaults, as ``name=value`` words."""
        words = []
        for option in dataclasses.fields(self):
            value = getattr(self, option.name)
            default = (option.default_factory() if option.default_factory  # type: ignore[misc]
                       is not dataclasses.MISSING else option.default)
            if option.name == "base_dir" or value == default:
                continue
            shown = f"{value:#x}" if option.name == "load_address" else str(value)
            words.append(f"{option.name}={shown}")
        return " ".join(words)


def option_names() -> tuple[str, ...]:
    """The names :meth:`BootOptions.with_`, the ``bootemu`` marker and the fixtures take."""
    return tuple(f.name for f in dataclasses.fields(BootOptions) if f.name != "base_dir")


@dataclass(frozen=True)
class TraceRow:
    """One executed instruction of a re-run: count, VA, PA, symbol, disassembly."""

    index: int
    va: int
    pa: int | None
    symbol: str
    text: str

    def format(self, mark: bool = False) -> str:
        pa = f"{self.pa:#x}" if self.pa is not None else "-"
        return (f"{'>>' if mark else '  '} {self.index:>8}  {self.va:#018x}  {pa:>14}  "
                f"{self.symbol:<28}  {self.text}")


@dataclass
class BootRun(CheckRun):
    """A checked boot (everything :class:`~emu.checks.run.CheckRun` holds: the
    ``verdict``, ``findings``, ``events`` in instruction order, ``windows``,
    ``output``, ``stop``), with the options that made it and the machine as it
    stopped: :meth:`reg`, :attr:`registers`, :meth:`read_memory`."""

    options: BootOptions = field(default_factory=BootOptions)

    def _machine(self) -> Machine:
        assert self.machine is not None  # check() always keeps it
        return self.machine

    def reg(self, name: str) -> int:
        """A register where the run stopped, as the guest would read it (``x0``,
        ``sp``, ``CurrentEL``, ``TTBR0_EL2``; see :meth:`Machine.reg`)."""
        return self._machine().reg(name)

    @property
    def registers(self) -> dict[str, int]:
        """x0-x30, sp, pc, pstate and CurrentEL where the run stopped."""
        return {name: self.reg(name) for name in _SNAPSHOT}

    def read_memory(self, address: int, size: int, *, physical: bool = False) -> bytes:
        """Memory where the run stopped: a VA through the MMU model as the guest
        would see it, or a PA with ``physical=True``."""
        return self._machine().read_memory(address, size, physical=physical)

    @property
    def text(self) -> str:
        """The report ``bootemu check`` prints for this boot."""
        return format_text(self, str(self.options.source_path))

    def to_json(self) -> dict[str, object]:
        """The report ``bootemu check --json`` prints, as a dict."""
        return to_json(self, DEFAULT_EVENTS, str(self.options.source_path))

    def __repr__(self) -> str:
        # A dataclass repr would print every event; a test log wants the gist.
        rules = sorted({f.rule for f in self.findings})
        return (f"<BootRun {self.options.source_path.name} {self.verdict}"
                f"{' ' + ','.join(rules) if rules else ''} at #{self.executed}>")

    def trace(self, index: int, before: int = 8, after: int = 4) -> list[TraceRow]:
        """The instructions around the ``index``-th (from ``before`` ahead of it to
        ``after`` past it), by booting the same image again, without the rules,
        and stepping through them; the rows a run keeps are MMU events only."""
        image, board = self.options.load()
        machine = Machine(image, board)
        start = max(0, index - before)
        if start:
            stop = machine.run(until=f"#{start}", max_insns=start)
            if stop.kind is not StopKind.ARRIVED:
                return []
        disassembler = Disassembler()
        rows: list[TraceRow] = []
        while machine.executed <= index + after:
            va = machine.pc
            pa = machine.fetch_pa(va)
            word = (int.from_bytes(machine.read_memory(pa, 4, physical=True), "little")
                    if pa is not None else None)
            text = disassembler.text(word, va) if word is not None else "(fetch faults)"
            rows.append(TraceRow(machine.executed, va, pa, image.symbolize(va, pa), text))
            if machine.step().kind is not StopKind.STEPPED:
                break
        return rows


def _options(source: str | Path | None, options: BootOptions | None,
             changes: dict[str, Any]) -> BootOptions:
    if source is not None:
        changes = {**changes, "source": source}
    return (options or BootOptions()).with_(**changes)


def check(source: str | Path | None = None, *, options: BootOptions | None = None,
          **changes: Any) -> BootRun:
    """Boot ``source`` (default: ``options``' source, else the bundled head.S)
    with ``options`` and ``changes`` (:class:`BootOptions` names), every rule
    watching, to its ``until``; :class:`~emu.image.boot_image.ImageError` (or
    :class:`~emu.asm.source.AssemblyError`) for a file that cannot be booted.

    >>> check("asm/head.S", load_address=0x40000000).verdict
    'clean'
    """
    options = _options(source, options, changes)
    image, board = options.load()
    run = check_image(image, until=options.until, max_insns=options.max_insns, board=board)
    values = {f.name: getattr(run, f.name) for f in dataclasses.fields(CheckRun)}
    return BootRun(**values, options=options)


def machine_at(source: str | Path | None = None, *, at: str | None = None,
               options: BootOptions | None = None, **changes: Any) -> Machine:
    """A machine booted from ``source`` with ``options`` and ``changes`` (as
    :func:`check` takes them) and stopped at ``at``
    (any ``--until`` form: ``"switch_ttbr_id"``, ``"head+0x14"``, ``"#100"``;
    None: stopped at its entry, nothing run), no rules watching.
    :class:`BootError` when the boot stops anywhere else first.

    >>> machine_at("asm/head.S", at="switch_ttbr_id").reg("SCTLR_EL2") & 1   # MMU on
    1
    """
    options = _options(source, options, changes)
    image, board = options.load()
    machine = Machine(image, board)
    if at is None:
        return machine
    ran = run_to_target(machine, at, options.max_insns)
    if ran.stop.kind is not StopKind.ARRIVED or ran.stop.pc in ran.failure_exits:
        raise BootError(f"{options.source_path}: did not stop at {at}: {ran.stop.message}")
    return machine


@dataclass
class Boots:
    """The boots of one test (the plugin's ``bootemu_boots`` fixture): its
    options, and every run made through it, in order, for its reports.

    >>> boots = Boots(BootOptions(source=Path("asm/head.S")))
    >>> boots.check(until="enable_mmu").verdict, len(boots.runs)
    ('clean', 1)
    """

    options: BootOptions
    runs: list[BootRun] = field(default_factory=list)
    # Told of each run as it is made (the plugin records JUnit properties).
    recorded: Callable[[BootRun], None] | None = None

    def check(self, source: str | Path | None = None, **changes: Any) -> BootRun:
        """:func:`check` with these options, ``source`` and ``changes``."""
        run = check(source, options=self.options, **changes)
        self.runs.append(run)
        if self.recorded is not None:
            self.recorded(run)
        return run

    def machine(self, source: str | Path | None = None, at: str | None = None,
                **changes: Any) -> Machine:
        """:func:`machine_at` with these options, ``source`` and ``changes``,
        stopped at ``at`` (None: at the options' ``until``)."""
        options = _options(source, self.options, changes)
        return machine_at(options=options, at=at if at is not None else options.until)


def place_matches(run: CheckRun, at: str | int, index: int, pc: int, symbol: str) -> bool:
    """Whether an instruction (count, PC, symbol+offset) is at the place ``at``:
    ``"#N"`` the N-th instruction; a symbol, the code from it up to the next
    symbol; ``"sym+0x14"`` or an address, that instruction (link address or
    physical alias)."""
    if isinstance(at, int):
        return pc == at or (run.image.in_image(pc, physical=False)
                            and run.image.physical(pc) == at)
    text = at.strip()
    if text.startswith("#"):
        return parse_target(text).count == index
    if text in run.image.symbols:
        return symbol == text or symbol.startswith(text + "+")
    return pc in addresses_of(run.image, text)


def rows_around(lines: Iterable[str], indices: Iterable[int], context: int = 3) -> list[str]:
    """The timeline rows (``lines``: rows that start with their instruction count)
    around each of ``indices``: the last row at or before it, ``context`` rows
    either side, ``...`` where rows are left out."""
    rows = list(lines)
    numbers: list[int | None] = []
    for row in rows:
        first = row.split(maxsplit=1)[0] if row.strip() else ""
        numbers.append(int(first) if first.isdigit() else None)
    keep: set[int] = set()
    for index in indices:
        at = max((n for n, number in enumerate(numbers) if number is not None and number <= index),
                 default=0)
        keep.update(range(max(0, at - context), min(len(rows), at + context + 1)))
    shown: list[str] = []
    last = -1
    for position in sorted(keep):
        if position != last + 1:
            shown.append("  ...")
        shown.append(rows[position])
        last = position
    if shown and last != len(rows) - 1:
        shown.append("  ...")
    return shown
