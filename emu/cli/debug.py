"""``bootemu debug``: a GDB server for an instruction-level session."""

from __future__ import annotations

import os
import sys
from pathlib import Path

import click

from emu.asm.elf_writer import write_elf
from emu.board.spec import BootSpec
from emu.cli.interrupts import RunInterrupter
from emu.cli.options import input_errors, source_options
from emu.debug.server import Shutdown, serve
from emu.debug.session import DebugSession
from emu.machine.machine import DEFAULT_MAX_INSNS


@click.command("debug")
@source_options
@click.option("--port", type=click.IntRange(0, 65535), default=1234, show_default=True,
              help="TCP port to listen on (0: any free port, printed).")
@click.option("--host", default="127.0.0.1", show_default=True,
              help="Address to listen on; the default takes connections from this machine "
                   "only (0.0.0.0 takes them from anywhere).")
@click.option("--elf", "elf_output", type=click.Path(dir_okay=False, path_type=Path),
              default=None, metavar="OUT",
              help="For an assembly SOURCE, also write an ELF with its symbols and DWARF "
                   "lines for gdb-multiarch to load (see `bootemu asm --elf`).")
@click.option("--break-on-finding", is_flag=True,
              help="Stop the guest in front of the instruction a rule fires at, and print "
                   "the finding in GDB's console.")
@click.option("--max-insns", type=click.IntRange(min=1), default=DEFAULT_MAX_INSNS,
              show_default=True, help="Instruction budget: a continue stops there.")
@click.option("--once", is_flag=True, hidden=True, help="Exit when the first client leaves.")
@input_errors
def debug(source: Path, load_address: int | None, defines: tuple[str, ...],
          include_dirs: tuple[Path, ...], boot: BootSpec, port: int, host: str,
          elf_output: Path | None, break_on_finding: bool, max_insns: int,
          once: bool) -> None:
    """Boot SOURCE stopped at its entry point and serve it to GDB.

    Connect with gdb-multiarch (Debian): registers include the system
    registers ($SCTLR_EL2, $TTBR0_EL2, ...); memory is read at virtual
    addresses through bootemu's MMU model, or physically after
    `maintenance packet Qqemu.PhyMemMode:1` (or `monitor phys on`);
    reverse-stepi and reverse-continue re-execute from reset.

    \b
    Examples:
      bootemu debug --elf head.elf &
      gdb-multiarch head.elf -ex 'target remote :1234' -ex 'break switch_ttbr_id'
      (gdb) monitor walk 0x8000200000
      (gdb) monitor help

    SIGINT (Ctrl-C in bootemu's terminal) or SIGTERM ends the server, whether it
    waits for a connection or a client's guest is running: the guest stops
    between translation blocks, the client's connection and the server's
    socket are closed, and one line on stderr says where the guest was
    ("interrupted by SIGINT at #N (symbol)").  A second signal ends the
    program at once.  (GDB's own Ctrl-C only stops the guest.)

    \b
    Exit status: 130 SIGINT (Ctrl-C), 143 SIGTERM;
                 2 usage or input error, or the port cannot be listened on.
    """
    shutdown = Shutdown()
    listened: list[int] = []  # the port, once listening
    # Entered first: a signal that comes while the image loads ends the server
    # before it listens rather than being lost.
    with RunInterrupter() as interrupter:
        interrupter.on_stop(shutdown.request)
        image, board = boot.load()
        if elf_output is not None:
            if image.program is None:
                raise click.UsageError("--elf needs an assembly SOURCE (an image has no "
                                       "line information to write)")
            write_elf(image.program, elf_output,
                      load_address=image.physical(image.program.base), physical_alias=True)
        session = DebugSession(image, board, max_insns=max_insns,
                               break_on_finding=break_on_finding)

        def listening(actual: int) -> None:
            listened.append(actual)
            click.echo(f"bootemu: {image.name} stopped at its entry point "
                       f"{session.machine.pc:#x}; waiting for gdb on {host}:{actual} "
                       f"(gdb-multiarch -ex 'target remote {host}:{actual}')", err=True)

        try:
            serve(session, host, port, on_listening=listening,
                  log=lambda text: click.echo(f"bootemu: {text}", err=True), once=once,
                  shutdown=shutdown)
        except OSError as err:
            reason = os.strerror(err.errno) if err.errno else str(err)
            failure = click.ClickException(f"cannot listen on {host}:{port}: {reason}")
            failure.exit_code = 2
            raise failure from None
    if interrupter.stopped:
        index = session.index
        where = (f" at #{index} ({image.symbolize(session.machine.pc)})"
                 if index or shutdown.had_client else "")
        if not listened:
            state = " before the server listened"
        elif shutdown.had_client:
            state = " with a client connected; the connection and the server are closed"
        else:
            state = f" while waiting for gdb on {host}:{listened[0]}; the server is closed"
        click.echo(f"bootemu: {interrupter.reason()}{where}{state}", err=True)
    sys.exit(interrupter.exit_status(0))
