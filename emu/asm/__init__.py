"""The assembler: C preprocessing, a GNU-as-compatible reader, placement and
encoding with keystone kept in a child process, listings and a cache.  Its
product is a :class:`~emu.asm.program.Program`."""
