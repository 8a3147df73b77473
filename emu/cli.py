"""The ``bootemu`` command line: thin commands that parse, call the library, print.

Exit status everywhere: 0 clean, 1 a rule fired or the boot did not reach its
target, 2 a usage or input error (bad option, source that does not assemble,
image that cannot be placed).
"""

from __future__ import annotations

import json
import sys
from collections.abc import Callable
from functools import wraps
from pathlib import Path
from typing import Any

import click

from emu.assembler import AssemblyError, parse_define
from emu.checker import (
    DEFAULT_LOAD_ADDRESS,
    DEFAULT_TARGET,
    build_image,
    check_image,
    run_targets,
)
from emu.checks import ALL_CHECKS
from emu.image import ImageError
from emu.machine import DEFAULT_MAX_INSNS, Machine
from emu.mmu.walk import Access, Fault, format_walk
from emu.report import format_text, to_json
from emu.session import machine_at, walk_at
from emu.trace import TraceLine, Tracer

BUNDLED_SOURCE = Path(__file__).resolve().parent.parent / "asm" / "head.S"
INPUT_ERROR = 2


class Address(click.ParamType):
    """An address: decimal, 0x hex (underscores allowed), e.g. 0x4000_0000."""

    name = "ADDRESS"

    def convert(self, value: Any, param: click.Parameter | None, ctx: click.Context | None) -> int:
        if isinstance(value, int):
            return value
        try:
            number = int(str(value), 0)
        except ValueError:
            self.fail(f"'{value}' is not an address (try 0x40000000)", param, ctx)
        if number < 0 or number >= 1 << 64:
            self.fail(f"'{value}' is outside the 64-bit address space", param, ctx)
        return number


def _defines(values: tuple[str, ...]) -> dict[str, str]:
    defines: dict[str, str] = {}
    for text in values:
        try:
            name, value = parse_define(text)
        except ValueError as err:
            raise click.BadParameter(str(err), param_hint="-D") from None
        defines[name] = value
    return defines


def input_errors(func: Callable[..., Any]) -> Callable[..., Any]:
    """Turn a user's bad input into one line on stderr and exit status 2."""

    @wraps(func)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        try:
            return func(*args, **kwargs)
        except (AssemblyError, ImageError) as err:
            click.echo(f"bootemu: error: {err}", err=True)
            sys.exit(INPUT_ERROR)
        except OSError as err:
            click.echo(f"bootemu: error: {err.filename or ''}: {err.strerror}", err=True)
            sys.exit(INPUT_ERROR)

    return wrapper


def source_options(func: Callable[..., Any]) -> Callable[..., Any]:
    """SOURCE, --load-address, -D and -I: how to build the image to boot."""
    func = click.option("-I", "--include", "include_dirs", multiple=True,
                        type=click.Path(file_okay=False, path_type=Path),
                        help="Extra include directory for #include (repeatable).")(func)
    func = click.option("-D", "--define", "defines", multiple=True, metavar="NAME=VALUE",
                        help="Preprocessor definition, e.g. -D XEN_VIRT_START=0x200000 "
                             "(repeatable).")(func)
    func = click.option("--load-address", type=Address(), default=DEFAULT_LOAD_ADDRESS,
                        show_default="0x40000000",
                        help="Physical address the image is loaded at (2 MiB aligned for "
                             "the arm64 boot protocol).")(func)
    func = click.argument("source", required=False, default=str(BUNDLED_SOURCE),
                          type=click.Path(dir_okay=False, path_type=Path))(func)
    return func


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
      bootemu rules                  what each rule catches
    """


@main.command()
@source_options
@click.option("--until", default=DEFAULT_TARGET, show_default=True, metavar="SYMBOL|ADDR",
              help="Where the boot is complete; the run stops there.")
@click.option("--max-insns", type=click.IntRange(min=1), default=DEFAULT_MAX_INSNS,
              show_default=True, help="Instruction budget for the run.")
@click.option("--json", "as_json", is_flag=True, help="Print the report as JSON.")
@input_errors
def check(source: Path, load_address: int, defines: tuple[str, ...],
          include_dirs: tuple[Path, ...], until: str, max_insns: int, as_json: bool) -> None:
    """Boot SOURCE at EL2 and check every MMU transition against the rules.

    Prints the MMU timeline (instruction count, PC as VA and PA, symbol, event,
    regime state), each MMU-transition window instruction by instruction, the
    findings and a verdict.

    \b
    Exit status: 0 clean (reached --until, no rule fired);
                 1 a rule fired, or the boot failed or did not arrive;
                 2 usage or input error.
    """
    image = build_image(source, load_address=load_address, defines=_defines(defines),
                        include_dirs=list(include_dirs))
    run = check_image(image, until=until, max_insns=max_insns)
    if as_json:
        click.echo(json.dumps(to_json(run), indent=2))
    else:
        click.echo(format_text(run, source=str(source)), nl=False)
    sys.exit(run.exit_code)


@main.command()
@source_options
@click.option("--until", default=DEFAULT_TARGET, show_default=True, metavar="SYMBOL|ADDR",
              help="Stop when PC reaches this symbol or address.")
@click.option("--window", type=click.IntRange(min=1), default=None, metavar="N",
              help="Only N instructions before and after each MMU event.")
@click.option("--max-insns", type=click.IntRange(min=1), default=DEFAULT_MAX_INSNS,
              show_default=True, help="Instruction budget for the run.")
@click.option("--json", "as_json", is_flag=True, help="JSON Lines, one object per instruction.")
@input_errors
def trace(source: Path, load_address: int, defines: tuple[str, ...],
          include_dirs: tuple[Path, ...], until: str, window: int | None, max_insns: int,
          as_json: bool) -> None:
    """Print each executed instruction: count, VA, PA, symbol+offset, encoding, disassembly.

    Tracing pays a Python call per instruction; `bootemu check` does not.
    """
    image = build_image(source, load_address=load_address, defines=_defines(defines),
                        include_dirs=list(include_dirs))
    machine = Machine(image)

    def emit(line: TraceLine) -> None:
        click.echo(json.dumps(line.to_dict()) if as_json else line.format())

    tracer = Tracer(machine, emit, window=window)
    _target, exits, failure_exits = run_targets(image, until)
    stop = machine.run(exits + failure_exits, max_insns=max_insns)
    tracer.flush()
    summary = f"stopped: {stop.message} after {stop.index} instructions"
    if as_json:
        click.echo(json.dumps({"stop": stop.kind.value, "index": stop.index, "pc": stop.pc,
                               "message": stop.message}))
    else:
        click.echo(summary)


@main.command()
@click.argument("va", type=Address())
@source_options
@click.option("--regime", type=click.Choice(["el2", "el1"]), default=None,
              help="Translation regime [default: the one the CPU is in at that point].")
@click.option("--at", "at", default=DEFAULT_TARGET, show_default=True, metavar="SYMBOL|ADDR",
              help="Run the boot to this point first; the walk uses the tables then.")
@click.option("--access", type=click.Choice([a.value for a in Access]), default="read",
              show_default=True, help="Access kind, for the permission check.")
@click.option("--json", "as_json", is_flag=True, help="Print the walk as JSON.")
@input_errors
def walk(va: int, source: Path, load_address: int, defines: tuple[str, ...],
         include_dirs: tuple[Path, ...], regime: str | None, at: str, access: str,
         as_json: bool) -> None:
    """Explain the translation of VA level by level at a point of the boot.

    Each level shows the table address, the index, the descriptor and what it
    is; the last line gives the physical address with permissions and memory
    attributes, or the fault and its level.

    \b
    Example: bootemu walk 0x8000200000 --at primary_switched
    Exit status: 0 the VA translates, 1 it faults, 2 usage or input error.
    """
    image = build_image(source, load_address=load_address, defines=_defines(defines),
                        include_dirs=list(include_dirs))
    machine, stop = machine_at(image, at)
    result = walk_at(machine, va, regime, Access(access))
    where = f"at #{stop.index} {image.symbolize(stop.pc)} ({stop.message})"
    if as_json:
        click.echo(json.dumps({
            "va": va,
            "at": where,
            "result": "fault" if isinstance(result, Fault) else "translation",
            "pa": None if isinstance(result, Fault) else result.pa,
            "fault": result.describe() if isinstance(result, Fault) else None,
            "steps": [{"level": step.level, "table": step.table_address, "index": step.index,
                       "descriptor": step.descriptor, "kind": step.kind}
                      for step in result.steps],
            "lines": format_walk(result),
        }, indent=2))
    else:
        click.echo(f"walk of VA {va:#x} {where}")
        for line in format_walk(result):
            click.echo(f"  {line}")
    sys.exit(1 if isinstance(result, Fault) else 0)


@main.command()
def rules() -> None:
    """List the rules `bootemu check` applies, with their explanations."""
    for cls in ALL_CHECKS:
        click.echo(f"{cls.rule_id}: {cls.title}")
        click.echo(f"    {cls.explanation}\n")


if __name__ == "__main__":
    main()
