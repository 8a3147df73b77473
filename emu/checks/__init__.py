"""The rule catalogue: one rule a module."""

from emu.checks.base import Check, CheckContext, Finding
from emu.checks.fetch_outside_identity import FetchOutsideIdentity
from emu.checks.layout_rules import IdentityClash, LayoutSlot0
from emu.checks.live_descriptor_change import LiveDescriptorChange
from emu.checks.missing_isb import MissingIsb
from emu.checks.missing_tlbi import MissingTlbi
from emu.checks.mmu_toggle_off_identity import MmuToggleOffIdentity
from emu.checks.stale_tlb import StaleTlb
from emu.checks.ttbr_switch_live import TtbrSwitchLive
from emu.checks.unexpected_exception import UnexpectedException

ALL_CHECKS: tuple[type[Check], ...] = (
    TtbrSwitchLive,
    MmuToggleOffIdentity,
    FetchOutsideIdentity,
    MissingTlbi,
    MissingIsb,
    StaleTlb,
    LiveDescriptorChange,
    UnexpectedException,
    IdentityClash,
    LayoutSlot0,
)

__all__ = ["ALL_CHECKS", "Check", "CheckContext", "Finding"]
