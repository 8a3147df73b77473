"""Stage-1 translation as the architecture defines it: :mod:`~emu.arch.mmu.regime`
(registers -> walk parameters), :mod:`~emu.arch.mmu.walk` (request -> Translation
or Fault) and :mod:`~emu.arch.mmu.tlb` (what an architectural TLB may hold)."""
