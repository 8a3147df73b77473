"""Where a run should stop: the ``--until``/``--at`` target of a boot, resolved
against an image's symbols, a run to it, and whether the run's stop reached it.

A boot ends at its target (a symbol, reached at its link address or at its
physical alias), at the image's failure routine, or when the program exits.
"""

from __future__ import annotations

from dataclasses import dataclass

from emu.image.boot_image import BootImage, ImageError
from emu.machine.machine import DEFAULT_MAX_INSNS, Machine
from emu.machine.stop import Stop, StopKind

DEFAULT_TARGET = "start_c"
# ``--until exit``: the boot is complete when the program exits (semihosting)
# with status 0.  It is also where a boot with no ``start_c`` ends.
EXIT_TARGET = "exit"


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

    The default target is optional (an image without ``start_c`` runs until
    it exits, see :data:`EXIT_TARGET`); a target the user named must exist.
    """
    target = until if until and (until != DEFAULT_TARGET or until in image.symbols) else None
    if until == DEFAULT_TARGET and target is None:
        target = EXIT_TARGET
    exits = addresses_of(image, target) if target and target != EXIT_TARGET else []
    failure_exits: list[int] = []
    if image.failure_symbol in image.symbols:
        failure_exits = addresses_of(image, image.failure_symbol)
    return target, exits, failure_exits


def reached(stop: Stop, target: str | None, failure_exits: list[int]) -> bool:
    """Whether ``stop`` is the arrival the run asked for: at the target (not in the
    failure routine), or, for :data:`EXIT_TARGET`, a program exit with status 0."""
    if target == EXIT_TARGET:
        return stop.kind is StopKind.EXIT and stop.status == 0
    return stop.kind is StopKind.ARRIVED and stop.pc not in failure_exits


@dataclass(frozen=True)
class TargetRun:
    """A run towards a target: how it stopped, what it aimed at, and where the
    image's failure routine is."""

    stop: Stop
    target: str | None
    failure_exits: list[int]

    @property
    def reached(self) -> bool:
        """Whether the run arrived where it was asked to; see :func:`reached`."""
        return reached(self.stop, self.target, self.failure_exits)


def run_to_target(machine: Machine, until: str | None,
                  max_insns: int = DEFAULT_MAX_INSNS) -> TargetRun:
    """Run ``machine`` until its image's ``until`` target, its failure routine,
    an exit or a stop (see :func:`run_targets`)."""
    target, exits, failure_exits = run_targets(machine.image, until)
    stop = machine.run(exits + failure_exits, max_insns=max_insns)
    return TargetRun(stop, target, failure_exits)
