"""The boot check: run an image with every rule watching, and say what was proved.

This is the library behind ``bootemu check``; it never prints.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from emu.assembler import Program, assemble_file
from emu.checks import ALL_CHECKS, Check, CheckContext, Finding
from emu.events import Event, TransitionWindow
from emu.image import BootImage, FailureCode, ImageError, image_from_program
from emu.machine import DEFAULT_MAX_INSNS, Machine, Stop, StopKind

DEFAULT_LOAD_ADDRESS = 0x4000_0000
DEFAULT_TARGET = "start_c"


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
    rules: list[str] = field(default_factory=list)

    @property
    def arrived(self) -> bool:
        return self.stop.kind is StopKind.ARRIVED and self.failure is None

    @property
    def verdict(self) -> str:
        """``clean``, ``findings``, ``boot-failed`` or ``incomplete``."""
        if self.findings:
            return "findings"
        if self.failure is not None:
            return "boot-failed"
        if not self.arrived:
            return "incomplete"
        return "clean"

    @property
    def exit_code(self) -> int:
        """0 only when the boot reached its target and no rule fired."""
        return 0 if self.verdict == "clean" else 1


def addresses_of(image: BootImage, spec: str) -> list[int]:
    """Where a ``--until`` target is: a symbol (both link and physical alias) or a number."""
    if spec in image.symbols:
        link = image.symbols[spec]
        return sorted({link, image.physical(link)})
    try:
        return [int(spec, 0)]
    except ValueError:
        raise ImageError(
            f"{image.name}: no symbol '{spec}' and not an address "
            f"(symbols include: {', '.join(sorted(image.symbols)[:8])}, ...)"
        ) from None


def run_targets(image: BootImage, until: str | None) -> tuple[str | None, list[int], list[int]]:
    """Where a run stops: (target name, its addresses, the failure routine's addresses).

    The default target is optional (an image without ``start_c`` just runs to
    its budget); a target the user named must exist.
    """
    target = until if until and (until != DEFAULT_TARGET or until in image.symbols) else None
    exits = addresses_of(image, target) if target else []
    failure_exits: list[int] = []
    if image.failure_symbol in image.symbols:
        failure_exits = addresses_of(image, image.failure_symbol)
    return target, exits, failure_exits


def build_image(
    source: str | Path,
    *,
    load_address: int = DEFAULT_LOAD_ADDRESS,
    defines: dict[str, str] | None = None,
    include_dirs: list[Path] | None = None,
) -> BootImage:
    """Assemble a boot source and place it at a physical load address."""
    program: Program = assemble_file(source, defines=defines, include_dirs=include_dirs or [])
    return image_from_program(program, load_address, include_dirs=include_dirs)


def check_image(
    image: BootImage,
    *,
    until: str | None = DEFAULT_TARGET,
    max_insns: int = DEFAULT_MAX_INSNS,
    checks: tuple[type[Check], ...] = ALL_CHECKS,
) -> CheckRun:
    """Boot an image at EL2 with every rule watching, until the target or a stop."""
    machine = Machine(image)
    context = CheckContext(machine)
    rules = [cls(context) for cls in checks]
    machine.observers.extend(rules)

    target, exits, failure_exits = run_targets(image, until)

    stop = machine.run(exits + failure_exits, max_insns=max_insns)
    for rule in rules:
        rule.finish(stop)

    failure = None
    if stop.kind is StopKind.ARRIVED and stop.pc in failure_exits:
        code = machine.reg("x0")
        failure = BootFailure(code, image.failure_codes.get(code))
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
        rules=[rule.rule_id for rule in rules],
    )
