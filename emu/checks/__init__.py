"""The rule catalogue: one rule a module, and this registry of them.

Each rule is a :class:`~emu.checks.base.Check` subclass in a module named after
its rule id; :mod:`emu.checks.run` boots an image with the rules attached.
:data:`ALL_CHECKS` is the catalogue in its order, which is visible: ``bootemu
rules`` lists the rules in it, reports name them in it, and findings at the same
instruction come in it.  It goes from the MMU transitions themselves to TLB and
descriptor maintenance, exceptions, and last the layout rules, which judge the
image once the run has ended.
"""

from emu.checks.base import Check, CheckContext, Finding
from emu.checks.fetch_outside_identity import FetchOutsideIdentity
from emu.checks.identity_clash import IdentityClash
from emu.checks.layout_slot0 import LayoutSlot0
from emu.checks.live_descriptor_change import LiveDescriptorChange
from emu.checks.missing_dsb import MissingDsb
from emu.checks.missing_isb import MissingIsb
from emu.checks.missing_tlbi import MissingTlbi
from emu.checks.mmu_toggle_off_identity import MmuToggleOffIdentity
from emu.checks.stale_tlb import StaleTlb
from emu.checks.ttbr_switch_conflict import TtbrSwitchConflict
from emu.checks.ttbr_switch_live import TtbrSwitchLive
from emu.checks.unexpected_exception import UnexpectedException

ALL_CHECKS: tuple[type[Check], ...] = (
    TtbrSwitchConflict,
    TtbrSwitchLive,
    MmuToggleOffIdentity,
    FetchOutsideIdentity,
    MissingTlbi,
    MissingDsb,
    MissingIsb,
    StaleTlb,
    LiveDescriptorChange,
    UnexpectedException,
    IdentityClash,
    LayoutSlot0,
)

__all__ = ["ALL_CHECKS", "Check", "CheckContext", "Finding"]
