"""``python -m emu.cli``: the ``bootemu`` command."""

from emu.cli.main import main

main()
