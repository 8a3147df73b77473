"""AArch64 facts, pure Python: system registers and their fields, exception
syndromes, and (in :mod:`emu.arch.mmu`) stage-1 translation.  Nothing here
knows about Unicorn or about a run."""
