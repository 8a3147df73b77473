"""Where a run should stop: the ``--until``/``--at`` target of a boot, resolved
against an image's symbols, a run to it, and whether the run's stop reached it.

A target is written the way the reports print places:

``SYMBOL``, ``ADDRESS``
    the instruction there (a symbol at its link address or at its physical
    alias; an address as given, e.g. ``0x40001000``);
``SYMBOL+0x14``, ``SYMBOL+20``, ``ADDRESS+OFFSET``
    that many bytes further (hex with ``0x``, else decimal);
``#N``
    after N instructions have executed, i.e. in front of the instruction the
    reports number ``#N`` (their ``#insn`` column counts the instructions
    executed before each one); ``#0`` is the entry;
``PLACE@K``
    the K-th arrival at PLACE (any of the forms above but ``#N``; ``@1`` is
    the first arrival, the same as PLACE alone);
``console:TEXT``
    the guest has printed TEXT on its console (the run stops where the
    emulation stops after the write that completed it, e.g. at the end of a
    panic message: ``console:Could not set up DOM0``);
``exit``
    the program exits (semihosting) with status 0.

A boot ends at its target, at the image's failure routine, or when the program
exits.  ``#N``, ``PLACE@K`` and ``console:TEXT`` are found during the run: only
:func:`run_to_target` reaches them (:func:`run_targets` gives addresses, and
refuses them).
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from unicorn import UC_HOOK_CODE, Uc

from emu.image.boot_image import BootImage, ImageError
from emu.machine.machine import DEFAULT_MAX_INSNS, Machine
from emu.machine.stop import Stop, StopKind

DEFAULT_TARGET = "start_c"
# ``--until exit``: the boot is complete when the program exits (semihosting)
# with status 0.  It is also where a boot with no ``start_c`` ends.
EXIT_TARGET = "exit"

# ``console:TEXT``: the run stops once the guest has printed TEXT.
CONSOLE_PREFIX = "console:"

TARGET_FORMS = ("SYMBOL, SYMBOL+0x14, ADDRESS, #N (after N instructions), PLACE@K (K-th "
                "arrival), console:TEXT (once the guest printed TEXT)")

_NUMBER = re.compile(r"^(0x[0-9a-f_]+|[0-9][0-9_]*)$", re.IGNORECASE)
_DECIMAL = re.compile(r"^[0-9][0-9_]*$")


class TargetError(ImageError):
    """A target that is not written in one of the forms above, or names nothing."""


@dataclass(frozen=True)
class Target:
    """A target as written: ``place`` (a symbol or address, None for ``#N``),
    ``offset`` bytes past it, its ``arrival``-th arrival; or ``count``
    instructions into the run; or once the console shows ``console``."""

    text: str
    place: str | None = None
    offset: int = 0
    arrival: int = 1
    count: int | None = None
    console: str | None = None

    @property
    def counted(self) -> bool:
        """Whether reaching it needs watching the run (``#N``, ``@K`` past 1,
        ``console:TEXT``)."""
        return self.count is not None or self.arrival > 1 or self.console is not None


def parse_target(text: str) -> Target:
    """Read a target (see the module docstring); :class:`TargetError` names the
    form that is wrong."""
    spec = text.strip()
    if not spec:
        raise TargetError("an empty target (try a symbol, an address or #N)")
    if spec.startswith(CONSOLE_PREFIX):
        wanted = spec[len(CONSOLE_PREFIX):]
        if not wanted.strip():
            raise TargetError(f"target '{text}': console: takes the text to wait for "
                              "(e.g. 'console:VFS: Unable to mount root fs')")
        return Target(spec, console=wanted)
    if spec.startswith("#"):
        if "@" in spec:
            raise TargetError(f"target '{text}': #N cannot take @K (an instruction count "
                              "is reached once)")
        digits = spec[1:]
        if not _DECIMAL.match(digits):
            raise TargetError(f"target '{text}': #N takes a decimal instruction count "
                              "(e.g. #12570)")
        return Target(spec, count=int(digits.replace("_", "")))
    arrival = 1
    if "@" in spec:
        spec, _, number = spec.rpartition("@")
        if not _DECIMAL.match(number) or int(number.replace("_", "")) < 1:
            raise TargetError(f"target '{text}': PLACE@K takes an arrival number from 1 "
                              "(e.g. start_c@2)")
        arrival = int(number.replace("_", ""))
    offset = 0
    if "+" in spec:
        spec, _, number = spec.rpartition("+")
        if not _NUMBER.match(number.strip()):
            raise TargetError(f"target '{text}': the offset after '+' must be a number "
                              "(e.g. +0x14 or +20)")
        number = number.strip().replace("_", "")
        offset = int(number, 16) if number.lower().startswith("0x") else int(number, 10)
    spec = spec.strip()
    if not spec:
        raise TargetError(f"target '{text}': nothing before '+' or '@' "
                          "(try a symbol or an address)")
    return Target(text.strip(), place=spec, offset=offset, arrival=arrival)


def _place_addresses(image: BootImage, target: Target) -> list[int]:
    place = target.place
    assert place is not None
    if place in image.symbols:
        link = image.symbols[place] + target.offset
        return sorted({link, image.physical(link)})
    if _NUMBER.match(place):
        address = (int(place.replace("_", ""), 16 if place.lower().startswith("0x") else 10)
                   + target.offset)
        if address >= 1 << 64:
            # No PC can be there: the run would only spend its budget.
            raise TargetError(f"target '{target.text}': {address:#x} is past the 64-bit "
                              "address space")
        return [address]
    raise TargetError(
        f"{image.name}: no symbol '{place}' and not an address "
        f"(symbols include: {', '.join(sorted(image.symbols)[:8])}, ...)"
    )


def addresses_of(image: BootImage, spec: str) -> list[int]:
    """Where a place is: a symbol (both link and physical alias) or a number,
    ``+OFFSET`` bytes further; :class:`TargetError` for any other form."""
    if spec in image.symbols:
        link = image.symbols[spec]
        return sorted({link, image.physical(link)})
    target = parse_target(spec)
    if target.place is None or target.arrival != 1:
        raise TargetError(f"'{spec}' is not a place (a symbol or an address, "
                          "optionally +OFFSET)")
    return _place_addresses(image, target)


@dataclass(frozen=True)
class ResolvedTarget:
    """A target resolved against an image.

    ``name`` is the target as given (None: none, the run goes to its end;
    :data:`EXIT_TARGET`: the program's exit); ``addresses`` where it is
    (empty for ``#N``, ``console:TEXT`` and exit), to be arrived at
    ``arrival`` times, or ``count`` instructions into the run, or once the
    console shows ``console``; ``failure_exits`` the addresses of the image's
    failure routine.
    """

    name: str | None
    addresses: list[int]
    failure_exits: list[int]
    arrival: int = 1
    count: int | None = None
    console: str | None = None


def resolve_target(image: BootImage, until: str | None) -> ResolvedTarget:
    """Resolve ``until`` against ``image``.

    The default target is optional (an image without ``start_c`` runs until
    it exits, see :data:`EXIT_TARGET`); a target the user named must exist.
    """
    name = until if until and (until != DEFAULT_TARGET or until in image.symbols) else None
    if until == DEFAULT_TARGET and name is None:
        name = EXIT_TARGET
    failure_exits: list[int] = []
    if image.failure_symbol in image.symbols:
        failure_exits = addresses_of(image, image.failure_symbol)
    if name is None or name == EXIT_TARGET:
        return ResolvedTarget(name, [], failure_exits)
    if name in image.symbols:
        return ResolvedTarget(name, addresses_of(image, name), failure_exits)
    target = parse_target(name)
    if target.count is not None:
        return ResolvedTarget(name, [], failure_exits, count=target.count)
    if target.console is not None:
        return ResolvedTarget(name, [], failure_exits, console=target.console)
    return ResolvedTarget(name, _place_addresses(image, target), failure_exits,
                          arrival=target.arrival)


def run_targets(image: BootImage, until: str | None) -> tuple[str | None, list[int], list[int]]:
    """Where a run stops: (target name, its addresses, the failure routine's addresses).

    For callers that run the machine themselves to the first arrival at an
    address; the counted forms (``#N``, ``PLACE@K``) need :func:`run_to_target`
    and are refused with a :class:`TargetError`.
    """
    resolved = resolve_target(image, until)
    if resolved.count is not None or resolved.arrival > 1 or resolved.console is not None:
        raise TargetError(f"target '{until}' is found during the run (#N, PLACE@K, "
                          "console:TEXT): this command can only stop at a symbol or an address")
    return resolved.name, resolved.addresses, resolved.failure_exits


def reached(stop: Stop, target: str | None, failure_exits: list[int]) -> bool:
    """Whether ``stop`` is the arrival the run asked for: at the target (not in the
    failure routine), or, for :data:`EXIT_TARGET`, a program exit with status 0."""
    if target == EXIT_TARGET:
        return stop.kind is StopKind.EXIT and stop.status == 0
    return stop.kind is StopKind.ARRIVED and stop.pc not in failure_exits


@dataclass(frozen=True)
class TargetRun:
    """A run towards a target: how it stopped, what it aimed at, where the
    image's failure routine is, and the physical address the instruction at
    the stop's PC is fetched from (None: that fetch faults)."""

    stop: Stop
    target: str | None
    failure_exits: list[int]
    pa: int | None = None

    @property
    def reached(self) -> bool:
        """Whether the run arrived where it was asked to; see :func:`reached`."""
        return reached(self.stop, self.target, self.failure_exits)


def run_to_target(machine: Machine, until: str | None,
                  max_insns: int = DEFAULT_MAX_INSNS) -> TargetRun:
    """Run ``machine`` until its image's ``until`` target (any form of the
    module docstring), its failure routine, an exit or a stop; at most
    ``max_insns`` instructions from reset.

    A counted target ends the run with an ``ARRIVED`` stop like any other.
    The machine is run once, however the target is written: every stop of
    :meth:`~emu.machine.machine.Machine.run` ends the run's transition
    windows, so arrivals before the K-th are counted by a code hook rather
    than by stopping there.
    """
    resolved = resolve_target(machine.image, until)
    if resolved.count is not None:
        stop = _run_count(machine, resolved, max_insns)
    elif resolved.console is not None:
        stop = _run_console(machine, resolved, max_insns)
    elif resolved.arrival > 1:
        stop = _run_arrivals(machine, resolved, max_insns)
    else:
        stop = machine.run(resolved.addresses + resolved.failure_exits, max_insns=max_insns)
    return TargetRun(stop, resolved.name, resolved.failure_exits,
                     machine.mmu.executed_pa(stop.pc))


def _run_count(machine: Machine, resolved: ResolvedTarget, max_insns: int) -> Stop:
    """Run until ``resolved.count`` instructions have executed (the machine's
    budget, turned into an arrival when it is the count that ran out)."""
    count = resolved.count
    assert count is not None
    stop = machine.run(resolved.failure_exits, max_insns=min(count, max_insns))
    if stop.kind is StopKind.BUDGET and count <= max_insns and stop.index == count:
        where = f"{stop.pc:#x} ({machine.symbolize(stop.pc, machine.mmu.executed_pa(stop.pc))})"
        return Stop(StopKind.ARRIVED, stop.pc, stop.index,
                    f"arrived at #{count} at {where}")
    return stop


def _run_console(machine: Machine, resolved: ResolvedTarget, max_insns: int) -> Stop:
    """Run until the console shows ``resolved.console`` (printed during this
    run or before it)."""
    assert resolved.console is not None
    wanted = resolved.console.encode()  # compared as bytes: a UART writes one at a time
    console = machine.console
    # Text the guest printed before this run counts; keeping the last bytes
    # finds a text that straddles two writes.
    seen = console.output()
    if wanted in seen:
        return Stop(StopKind.ARRIVED, machine.pc, machine.index_now(),
                    f"arrived at {resolved.name}: the console already shows it")
    tail = seen[-len(wanted):]
    marker = Stop(StopKind.ARRIVED, 0, 0, "")

    def on_output(_device: str, data: bytes) -> None:
        nonlocal tail
        tail = (tail + data)[-(len(wanted) + len(data)):]
        if wanted in tail:
            machine.request_stop(marker)

    console.listeners.append(on_output)
    try:
        stop = machine.run(resolved.failure_exits, max_insns=max_insns)
    finally:
        console.listeners.remove(on_output)
    if stop is not marker:
        return stop
    # Unicorn stops at the end of the block the store was in: say where that is.
    pc = machine.pc
    return Stop(StopKind.ARRIVED, pc, machine.index_now(),
                f"arrived at {resolved.name} at {pc:#x} "
                f"({machine.symbolize(pc, machine.mmu.executed_pa(pc))})")


def _run_arrivals(machine: Machine, resolved: ResolvedTarget, max_insns: int) -> Stop:
    """Run until the ``resolved.arrival``-th arrival at one of its addresses."""
    uc = machine.uc
    wanted = resolved.arrival
    arrivals = 0
    last = -1

    def on_arrival(_uc: Uc, address: int, _size: int, _user_data: object) -> None:
        nonlocal arrivals, last
        index = machine.index_at(address)
        if index == last:
            return  # the same instruction again, after a stop in front of it
        last = index
        arrivals += 1
        if arrivals == wanted:
            machine.request_stop(Stop(
                StopKind.ARRIVED, address, index,
                f"arrived at {resolved.name} at {address:#x} "
                f"({machine.symbolize(address, machine.mmu.executed_pa(address))})"))

    hooks = [uc.hook_add(UC_HOOK_CODE, on_arrival, None, address, address)
             for address in resolved.addresses]
    if machine.executed:
        uc.ctl_flush_tb()  # code translated before the hooks existed has no call to them
    try:
        return machine.run(resolved.failure_exits, max_insns=max_insns)
    finally:
        for handle in hooks:
            uc.hook_del(handle)
