"""Flash banks in Unicorn: plain memory in read-array mode, device calls otherwise.

Firmware executes from flash, so a bank in read-array mode must be memory
Unicorn can translate code from: its storage is mapped read-only
(``mem_map_ptr``, no copy).  A store to such a bank is a command to the
device, so the MMU glue hands those pages to Unicorn without write
permission and refuses the fill of a store (:meth:`RomBanks.holds`): the store
stops emulation *before* it happens, at its own PC.  The machine then calls
:meth:`RomBanks.to_device`, which maps the bank as MMIO, and runs the store
again - now it reaches :meth:`~emu.board.flash.CfiFlash.write`.  When a write
puts the bank back in read-array mode, the bank stays MMIO (its reads answer
from the storage) until the next stop, where :meth:`RomBanks.apply` maps its
storage again; a fetch from it before then stops emulation, and the machine
applies and runs on.  (Stopping from inside the write instead would not do:
Unicorn 2.1.4 then leaves the PC on the store, which runs again.)

(Unicorn's own write-protection check is no substitute: it reports the
store only after the rest of its translation block has run.)
"""

from __future__ import annotations

import ctypes
from collections.abc import Sequence

from unicorn import UC_PROT_EXEC, UC_PROT_READ, Uc, UcError

from emu.board.flash import CfiFlash
from emu.image.boot_image import ImageError


class RomBanks:
    """The flash banks of one machine and how each is mapped right now."""

    def __init__(self, uc: Uc, banks: Sequence[CfiFlash]) -> None:
        self._uc = uc
        self.banks = tuple(banks)
        self._as_device: set[int] = set()   # bases of banks mapped as MMIO
        self._back_to_rom: set[int] = set()  # ... that are in read-array mode again
        # Host addresses of the storages (the exports keep them mapped in place).
        self._pointers = {bank.base: ctypes.c_char.from_buffer(bank.storage) for bank in banks}
        self.switches = 0  # ROM -> device mappings, for measurements
        for bank in self.banks:
            try:
                self._map_rom(bank)
            except UcError as err:
                raise ImageError(f"cannot map {bank.name} at {bank.base:#x} "
                                 f"(+{bank.size:#x}): {err}") from err

    def holds(self, pa: int) -> bool:
        """Whether ``pa`` is in a bank mapped as memory (stores to it must be refused)."""
        return any(bank.base <= pa < bank.base + bank.size and bank.base not in self._as_device
                   for bank in self.banks)

    def to_device(self, pa: int) -> bool:
        """Map the bank holding ``pa`` as MMIO (a store to it was refused); False when
        no memory-mapped bank holds ``pa``."""
        for bank in self.banks:
            if bank.base <= pa < bank.base + bank.size and bank.base not in self._as_device:
                self._uc.mem_unmap(bank.base, bank.size)
                self._uc.mmio_map(bank.base, bank.size, _read, bank, _write, (self, bank))
                self._as_device.add(bank.base)
                self._back_to_rom.discard(bank.base)
                self.switches += 1
                return True
        return False

    def apply(self) -> bool:
        """Map again as memory the banks back in read-array mode; whether any was."""
        changed = False
        for bank in self.banks:
            if bank.base in self._back_to_rom and bank.read_array:
                self._uc.mem_unmap(bank.base, bank.size)
                self._map_rom(bank)
                self._as_device.discard(bank.base)
                changed = True
        self._back_to_rom.clear()
        return changed

    def written(self, bank: CfiFlash) -> None:
        """A write reached the device: once it is in read-array mode again, the
        machine maps it as memory at its next stop."""
        if bank.read_array:
            self._back_to_rom.add(bank.base)

    def _map_rom(self, bank: CfiFlash) -> None:
        self._uc.mem_map_ptr(bank.base, bank.size, UC_PROT_READ | UC_PROT_EXEC,
                             ctypes.addressof(self._pointers[bank.base]))


def _read(_uc: Uc, offset: int, size: int, bank: CfiFlash) -> int:
    return bank.read(offset, size)


def _write(_uc: Uc, offset: int, size: int, value: int,
           owner: tuple[RomBanks, CfiFlash]) -> None:
    banks, bank = owner
    bank.write(offset, size, value)
    banks.written(bank)
