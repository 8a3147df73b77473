"""Machines stopped at a chosen point of a boot, for looking around.

``bootemu walk`` runs an image to a symbol or address and then explains one
translation there; the same helper serves anything else that inspects state
mid-boot.
"""

from __future__ import annotations

from emu.arch.mmu.regime import RegimeName, regime_for_el
from emu.arch.mmu.walk import Access, Fault, Translation
from emu.board.board import Board
from emu.image.boot_image import BootImage
from emu.machine.machine import DEFAULT_MAX_INSNS, Machine
from emu.machine.stop import Stop
from emu.machine.targets import run_to_target

REGIMES = {"el2": RegimeName.EL2, "el1": RegimeName.EL10}


def machine_at(image: BootImage, at: str | None, max_insns: int = DEFAULT_MAX_INSNS,
               board: Board | None = None) -> tuple[Machine, Stop]:
    """Boot ``image`` (on ``board``) and stop at ``at`` (any target form of
    :mod:`emu.machine.targets`; None = the default end)."""
    machine = Machine(image, board)
    return machine, run_to_target(machine, at, max_insns).stop


def walk_at(machine: Machine, va: int, regime: str | None = None,
            access: Access = Access.READ) -> Translation | Fault:
    """Translate VA with the machine's tables as they are now, in a regime
    (``el2``/``el1``; by default the one the current exception level uses)."""
    name = REGIMES[regime] if regime else regime_for_el(machine.el)
    return machine.mmu.translate(va, access, machine.mmu.regime(name))
