"""The boot check: run an image with every rule watching, and say what was proved.

This is the library behind ``bootemu check``; it never prints.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from emu.board.board import Board
from emu.board.spec import load_image
from emu.checks import ALL_CHECKS, Check, CheckContext, Finding
from emu.checks.base import NotApplicable
from emu.checks.verdict import BOOT_FAILED, CLEAN, FINDINGS, INCOMPLETE
from emu.image.boot_image import BootImage, FailureCode
from emu.image.load import DEFAULT_ASM_LOAD_ADDRESS, ImageKind
from emu.machine.events import Event, TransitionWindow
from emu.machine.machine import DEFAULT_MAX_INSNS, Machine
from emu.machine.stop import Stop, StopKind
from emu.machine.targets import DEFAULT_TARGET, EXIT_TARGET, run_to_target

DEFAULT_LOAD_ADDRESS = DEFAULT_ASM_LOAD_ADDRESS


@dataclass
class BootFailure:
    """The boot program gave up in its failure routine, with a code."""

    code: int
    meaning: FailureCode | None

    def describe(self) -> str:
        if self.meaning is None:
            return f"code {self.code} (not documented in the sources)"
        return f"code {self.code} ({self.meaning.name}): {self.meaning.description}"


@dataclass
class CheckRun:
    """Everything one checked boot produced."""

    image: BootImage
    stop: Stop
    target: str | None
    executed: int
    events: list[Event]
    windows: list[TransitionWindow]
    findings: list[Finding]
    failure: BootFailure | None = None
    # The rules that judged the run, in catalogue order; those that could not
    # (e.g. the layout rules on an ELF, Image or raw file) are in not_applicable.
    rules: list[str] = field(default_factory=list)
    not_applicable: list[NotApplicable] = field(default_factory=list)
    output: str = ""                 # what the guest printed (UART and semihosting)
    board: Board = field(default_factory=Board)
    # Where the instruction at the stop's PC is fetched from (None: that fetch faults).
    stop_pa: int | None = None
    # The machine as the run left it (registers, memory, TLB), for a test to
    # look into; not part of the run's value.
    machine: Machine | None = field(default=None, repr=False, compare=False)

    @property
    def exit_status(self) -> int | None:
        """The program's exit status, if it exited."""
        return self.stop.status if self.stop.kind is StopKind.EXIT else None

    @property
    def arrived(self) -> bool:
        if self.target == EXIT_TARGET:
            return self.exit_status == 0
        return self.stop.kind is StopKind.ARRIVED and self.failure is None

    @property
    def verdict(self) -> str:
        """``clean``, ``findings``, ``boot-failed`` or ``incomplete``: the words
        of :mod:`emu.checks.verdict`, as every report prints them."""
        if self.findings:
            return FINDINGS
        if self.failure is not None:
            return BOOT_FAILED
        if not self.arrived:
            return INCOMPLETE
        return CLEAN

    @property
    def exit_code(self) -> int:
        """What ``bootemu check`` exits with: 0 only when the boot reached its
        target and no rule fired, else 1.  (Not in the JSON report: there,
        ``exit_status`` is the program's, as :attr:`exit_status` is.)"""
        return 0 if self.verdict == CLEAN else 1


def build_image(
    source: str | Path,
    *,
    load_address: int | None = None,
    defines: dict[str, str] | None = None,
    include_dirs: list[Path] | None = None,
    kind: ImageKind | str | None = None,
    symbols: str | Path | None = None,
    board: Board | None = None,
) -> BootImage:
    """Build the image to boot from any file: assemble a source and place it at
    ``load_address`` (default 0x40000000), or load an ELF, arm64 Image (gzipped
    or not) or raw binary; see :func:`emu.board.spec.load_image`."""
    return load_image(source, kind=kind, load_address=load_address, defines=defines,
                      include_dirs=include_dirs, symbols=symbols, board=board)


def check_image(
    image: BootImage,
    *,
    until: str | None = DEFAULT_TARGET,
    max_insns: int = DEFAULT_MAX_INSNS,
    checks: tuple[type[Check], ...] = ALL_CHECKS,
    board: Board | None = None,
    started: Callable[[Machine], None] | None = None,
) -> CheckRun:
    """Boot an image (at EL2 unless ``board`` says otherwise) with every rule
    watching, until the target, the program's exit, or a stop.  ``started`` is
    handed the machine before it runs (to interrupt it from another thread)."""
    board = board or Board()
    machine = Machine(image, board)
    if started is not None:
        started(machine)
    context = CheckContext(machine)
    rules = [cls(context) for cls in checks]
    machine.observers.extend(rules)

    ran = run_to_target(machine, until, max_insns)
    stop, target, failure_exits = ran.stop, ran.target, ran.failure_exits
    for rule in rules:
        rule.finish(stop)

    failure = None
    if stop.kind is StopKind.ARRIVED and stop.pc in failure_exits:
        code = machine.reg("x0")
        failure = BootFailure(code, image.failure_codes.get(code))
    elif stop.kind is StopKind.EXIT and stop.status != 0:
        status = stop.status if stop.status is not None else 1
        failure = BootFailure(status, FailureCode(
            status, "exit status", "the program exited with a non-zero status"))
    findings = sorted((f for rule in rules for f in rule.findings), key=lambda f: f.index)
    return CheckRun(
        image=image,
        stop=stop,
        target=target,
        executed=stop.index,
        events=list(machine.events),
        windows=list(machine.windows),
        findings=findings,
        failure=failure,
        rules=[rule.rule_id for rule in rules if rule.not_applicable() is None],
        not_applicable=[NotApplicable(rule.rule_id, reason) for rule in rules
                        if (reason := rule.not_applicable()) is not None],
        output=machine.console.text(),
        board=board,
        stop_pa=ran.pa,
        machine=machine,
    )
