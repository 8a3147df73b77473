"""The ``bootemu`` command group: its help text, and the commands it holds.

Each command is a module of this package that parses, calls the library and
prints; the group lists them alphabetically.
"""

from __future__ import annotations

import click

from emu.cli.asm import asm
from emu.cli.check import check
from emu.cli.debug import debug
from emu.cli.layout import layout
from emu.cli.rules import rules
from emu.cli.run import run_command
from emu.cli.sweep import sweep
from emu.cli.trace import trace
from emu.cli.walk import walk


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(package_name="bootemu")
def main() -> None:
    """Run AArch64 boot code under Unicorn with the MMU modelled in Python.

    bootemu proves, instruction by instruction, that every MMU-off -> TTBR
    switch -> MMU-on sequence stays inside identity-mapped code, or shows where
    and why it does not.

    \b
    Start here:
      bootemu check                  check the bundled asm/head.S
      bootemu check my_head.S -D XEN_VIRT_START=0x200000
      bootemu trace --window 8       instructions around each MMU event
      bootemu run Image.gz --symbols vmlinux --until exit
                                     boot an arm64 Image (or ELF), print its console
      bootemu debug --elf head.elf   a GDB server (gdb-multiarch head.elf -ex 'target remote :1234')
      bootemu rules                  what each rule catches
    """


for command in (check, trace, walk, run_command, debug, rules, layout, sweep, asm):
    main.add_command(command)


if __name__ == "__main__":
    main()
