"""The ``bootemu`` command line: one module per command, each of which parses
its options, calls the library and prints; :mod:`emu.cli.main` is the group.

Exit status everywhere: 0 clean, 1 a rule fired or the boot did not reach its
target, 2 a usage or input error (bad option, source that does not assemble,
image that cannot be placed).
"""
