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

from emu.arch.mmu.walk import Access, Fault, format_walk
from emu.asm.assembler import AssemblyError, assemble_file, parse_define
from emu.asm.listing import format_listing, program_json
from emu.board.spec import BootSpec, parse_ram
from emu.checks import ALL_CHECKS
from emu.checks.run import (
    DEFAULT_TARGET,
    EXIT_TARGET,
    check_image,
    run_targets,
)
from emu.image.boot_image import ImageError
from emu.image.load import ImageKind
from emu.machine.inspect import machine_at, walk_at
from emu.machine.machine import DEFAULT_MAX_INSNS, Machine, StopKind
from emu.report.check_report import format_text, to_json
from emu.report.trace import TraceLine, Tracer

BUNDLED_SOURCE = Path(__file__).resolve().parents[2] / "asm" / "head.S"
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


def define_option(help_text: str) -> Callable[[Callable[..., Any]], Callable[..., Any]]:
    """-D NAME=VALUE, repeatable, into ``defines``."""
    return click.option("-D", "--define", "defines", multiple=True, metavar="NAME=VALUE",
                        help=help_text)


def include_option(help_text: str) -> Callable[[Callable[..., Any]], Callable[..., Any]]:
    """-I DIR, repeatable, into ``include_dirs``."""
    return click.option("-I", "--include", "include_dirs", multiple=True,
                        type=click.Path(file_okay=False, path_type=Path), help=help_text)


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


class Ram(click.ParamType):
    """RAM as BASE:SIZE, e.g. 0x40000000:128M (K/M/G suffixes are binary)."""

    name = "BASE:SIZE"

    def convert(self, value: Any, param: click.Parameter | None,
                ctx: click.Context | None) -> tuple[int, int]:
        if isinstance(value, tuple):
            return value
        try:
            return parse_ram(str(value))
        except ValueError as err:
            self.fail(str(err), param, ctx)


def source_options(func: Callable[..., Any]) -> Callable[..., Any]:
    """SOURCE and how to boot it.

    The command receives SOURCE, --load-address, -D and -I as parameters, and
    ``boot``: a :class:`~emu.board.spec.BootSpec` holding those and --format,
    --symbols, --el, --ram, --dtb and --bootargs, whose ``load()`` gives the
    image and the board to boot it on.
    """

    @wraps(func)
    def wrapper(*args: Any, image_format: str, symbols: Path | None, el: int,
                ram: tuple[int, int] | None, dtb: Path | None, bootargs: str | None,
                **kwargs: Any) -> Any:
        kwargs["boot"] = BootSpec(
            path=kwargs["source"],
            kind=None if image_format == "auto" else ImageKind(image_format),
            load_address=kwargs["load_address"],
            defines=_defines(kwargs["defines"]),
            include_dirs=list(kwargs["include_dirs"]),
            symbols=symbols, el=el, ram=ram, dtb=dtb, bootargs=bootargs,
        )
        return func(*args, **kwargs)

    file_type = click.Path(dir_okay=False, path_type=Path)
    options = [
        click.argument("source", required=False, default=str(BUNDLED_SOURCE), type=file_type),
        click.option("--format", "image_format", default="auto", show_default=True,
                     type=click.Choice(["auto", *(kind.value for kind in ImageKind)]),
                     help="What SOURCE is: an assembly source, an ELF file, an arm64 Image "
                          "(gzipped or not) or a raw binary; auto tells them apart by "
                          "content and name."),
        click.option("--load-address", type=Address(), default=None,
                     help="Physical address of a source or raw binary's first byte "
                          "[default: 0x40000000, or the RAM base]; for an arm64 Image, the "
                          "2 MiB-aligned base it goes text_offset above [default: the RAM "
                          "base].  ELF files load at their segments' addresses."),
        define_option("Preprocessor definition, e.g. -D XEN_VIRT_START=0x200000 "
                      "(repeatable; sources only)."),
        include_option("Extra include directory for #include (repeatable; sources only)."),
        click.option("--symbols", type=file_type, default=None, metavar="ELF",
                     help="Name a raw or Image file's addresses with this ELF build's "
                          "symbols (physical and virtual)."),
        click.option("--el", type=click.IntRange(1, 2), default=2, show_default=True,
                     help="Exception level at entry."),
        click.option("--ram", type=Ram(), default=None,
                     help="RAM as BASE:SIZE [default: the --dtb's memory, else QEMU virt's "
                          "0x40000000:128M when the image fits there, else around it]."),
        click.option("--dtb", type=file_type, default=None, metavar="FILE",
                     help="Pass this device tree blob in x0 instead of the generated one "
                          "(memory, /chosen, a PL011 at 0x9000000); the UART goes where its "
                          "PL011 node says."),
        click.option("--bootargs", default=None, metavar="TEXT",
                     help="/chosen/bootargs of the generated device tree."),
    ]
    for option in reversed(options):
        wrapper = option(wrapper)
    return wrapper


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
      bootemu rules                  what each rule catches
    """


@main.command()
@source_options
@click.option("--until", default=DEFAULT_TARGET, show_default=True,
              metavar="SYMBOL|ADDR|exit",
              help="Where the boot is complete; the run stops there.  'exit': when the "
                   "program exits through semihosting, with status 0 (also the default "
                   "when there is no start_c).")
@click.option("--max-insns", type=click.IntRange(min=1), default=DEFAULT_MAX_INSNS,
              show_default=True, help="Instruction budget for the run.")
@click.option("--json", "as_json", is_flag=True, help="Print the report as JSON.")
@input_errors
def check(source: Path, load_address: int | None, defines: tuple[str, ...],
          include_dirs: tuple[Path, ...], boot: BootSpec, until: str, max_insns: int,
          as_json: bool) -> None:
    """Boot SOURCE (a source, ELF, arm64 Image or raw binary) and check every MMU
    transition against the rules.

    Prints the MMU timeline (instruction count, PC as VA and PA, symbol, event,
    regime state), each MMU-transition window instruction by instruction, the
    findings and a verdict.

    \b
    Exit status: 0 clean (reached --until, no rule fired);
                 1 a rule fired, or the boot failed or did not arrive;
                 2 usage or input error.
    """
    image, board = boot.load()
    run = check_image(image, until=until, max_insns=max_insns, board=board)
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
def trace(source: Path, load_address: int | None, defines: tuple[str, ...],
          include_dirs: tuple[Path, ...], boot: BootSpec, until: str, window: int | None,
          max_insns: int, as_json: bool) -> None:
    """Print each executed instruction: count, VA, PA, symbol+offset, encoding, disassembly.

    Tracing pays a Python call per instruction; `bootemu check` does not.
    """
    image, board = boot.load()
    machine = Machine(image, board)

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
def walk(va: int, source: Path, load_address: int | None, defines: tuple[str, ...],
         include_dirs: tuple[Path, ...], boot: BootSpec, regime: str | None, at: str,
         access: str, as_json: bool) -> None:
    """Explain the translation of VA level by level at a point of the boot.

    Each level shows the table address, the index, the descriptor and what it
    is; the last line gives the physical address with permissions and memory
    attributes, or the fault and its level.

    \b
    Example: bootemu walk 0x8000200000 --at primary_switched
    Exit status: 0 the VA translates, 1 it faults, 2 usage or input error.
    """
    image, board = boot.load()
    machine, stop = machine_at(image, at, board=board)
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


@main.command("run")
@source_options
@click.option("--until", default=EXIT_TARGET, show_default=True, metavar="SYMBOL|ADDR|exit",
              help="Stop when PC reaches this symbol or address; 'exit': when the program "
                   "exits through semihosting.")
@click.option("--max-insns", type=click.IntRange(min=1), default=DEFAULT_MAX_INSNS,
              show_default=True, help="Instruction budget for the run.")
@click.option("--json", "as_json", is_flag=True,
              help="At the end, one JSON object: stop, exit status, output.")
@input_errors
def run_command(source: Path, load_address: int | None, defines: tuple[str, ...],
                include_dirs: tuple[Path, ...], boot: BootSpec, until: str, max_insns: int,
                as_json: bool) -> None:
    """Boot SOURCE and run it, without checking; the guest's output goes to stdout.

    What the program prints through the UART and semihosting appears as it
    comes; how the run ended is one line on stderr.

    \b
    Exit status: 0 the run reached --until (for 'exit': the program exited
                 with status 0); 1 it did not; 2 usage or input error.
    """
    image, board = boot.load()
    machine = Machine(image, board)

    def echo(_device: str, data: bytes) -> None:
        # Bytes as the guest wrote them, flushed at once: output as it comes.
        stream = getattr(sys.stdout, "buffer", None)
        if stream is None:
            sys.stdout.write(data.decode(errors="replace"))
        else:
            stream.write(data)
        sys.stdout.flush()

    if not as_json:
        machine.console.listeners.append(echo)
    target, exits, failure_exits = run_targets(image, until)
    stop = machine.run(exits + failure_exits, max_insns=max_insns)
    if target == EXIT_TARGET:
        reached = stop.kind is StopKind.EXIT and stop.status == 0
    else:
        reached = stop.kind is StopKind.ARRIVED and stop.pc not in failure_exits
    if as_json:
        click.echo(json.dumps({
            "image": image.name, "stop": stop.kind.value, "pc": stop.pc, "index": stop.index,
            "message": stop.message, "exit_status": stop.status, "reached": reached,
            "output": machine.console.text(),
        }, indent=2))
    else:
        click.echo(f"bootemu: {stop.message}, after {stop.index} instructions", err=True)
    sys.exit(0 if reached else 1)


@main.command()
def rules() -> None:
    """List the rules `bootemu check` applies, with their explanations."""
    for cls in ALL_CHECKS:
        click.echo(f"{cls.rule_id}: {cls.title}")
        click.echo(f"    {cls.explanation}\n")


# -- layout and sweep --------------------------------------------------------
# Their library imports (emu.analysis.sweep, emu.analysis.plot) stay inside the commands, so
# that the other commands do not pay for them.


def _one_line_error(message: str) -> SystemExit:
    """Report a user's mistake on one line of stderr; the caller raises the exit (status 2)."""
    click.echo(f"bootemu: error: {message}", err=True)
    return SystemExit(INPUT_ERROR)


def _size_text(size: int) -> str:
    """A size in the largest binary unit that divides it exactly, else hex."""
    for unit, shift in (("TiB", 40), ("GiB", 30), ("MiB", 20), ("KiB", 10)):
        if size and size % (1 << shift) == 0:
            return f"{size >> shift} {unit}"
    return f"{size:#x}"


def _layout_preset_option(multiple: bool) -> Callable[..., Any]:
    from emu.image.layout import LAYOUT_PRESETS

    return click.option(
        "--layout", "layout_names", multiple=multiple, metavar="PRESET",
        type=click.Choice(list(LAYOUT_PRESETS)),
        help="Layout preset: -D definitions for head.S ("
             + ", ".join(LAYOUT_PRESETS) + ")" + (" (repeatable)." if multiple else "."))


@main.command()
@click.argument("source", required=False, default=str(BUNDLED_SOURCE),
                type=click.Path(dir_okay=False, path_type=Path))
@define_option("Preprocessor definition, applied after the preset's (repeatable).")
@include_option("Extra include directory for #include (repeatable).")
@_layout_preset_option(multiple=False)
@click.option("--identity-slots", type=click.IntRange(0, 512), default=None, metavar="N",
              help="Level-0 slots kept free for identity maps [default: the preset's, else "
                   "the source's IDENTITY_MAPPING_AREA_NR_L0, else 1].")
@click.option("--json", "as_json", is_flag=True, help="Print the analysis as JSON.")
@click.option("--plot", "plot_path", type=click.Path(dir_okay=False, path_type=Path),
              metavar="FILE.png", help="Also draw the level-0 slot map (needs matplotlib).")
@input_errors
def layout(source: Path, defines: tuple[str, ...], include_dirs: tuple[Path, ...],
           layout_names: str | None, identity_slots: int | None, as_json: bool,
           plot_path: Path | None) -> None:
    """Show SOURCE's static virtual regions, what is wrong with them, and the slot map.

    The regions are read from the source's STATIC_REGIONS(X) macro (or its
    NAME_VIRT_START / NAME_VIRT_SIZE pairs) after preprocessing with the
    preset's and your -D definitions.  Checked: regions in the identity area
    (the first level-0 slots, 512 GiB each, kept free so RAM there can be
    identity-mapped), overlapping regions, start or size not 2 MiB aligned,
    regions beyond the 48-bit VA space.

    \b
    Exit status: 0 no problem; 1 problems found; 2 usage or input error.
    """
    from emu.analysis.plot import PlotError, plot_layout
    from emu.asm.assembler import assemble_file
    from emu.image.layout import LayoutError, check_layout, get_preset, layout_from_macros, va_map

    try:
        preset = get_preset(layout_names) if layout_names else None
        merged = {**(preset.defines if preset else {}), **_defines(defines)}
        program = assemble_file(source, defines=merged, include_dirs=list(include_dirs))
        slots = identity_slots if identity_slots is not None else (
            preset.identity_slots if preset else None)
        name = preset.name if preset else source.name
        result = layout_from_macros(program.defines, name=name, identity_slots=slots)
    except LayoutError as err:
        raise _one_line_error(f"{source}: {err}") from None
    problems = check_layout(result)
    slot_map = va_map(result)
    if plot_path is not None:
        try:
            plot_layout(result, plot_path)
        except PlotError as err:
            raise _one_line_error(str(err)) from None

    if as_json:
        click.echo(json.dumps({**result.to_dict(), "source": str(source),
                               "problems": [p.to_dict() for p in problems],
                               "slots": [s.to_dict() for s in slot_map]}, indent=2))
    else:
        identity = (f"level-0 slots 0-{result.identity_slots - 1} "
                    f"([0, {result.identity_limit:#x}))" if result.identity_slots else "none")
        click.echo(f"layout {result.name} ({source}), identity area: {identity}\n")
        click.echo("Regions")
        click.echo(f"  {'name':<12} {'start':<20} {'end (exclusive)':<20} {'size':<10} slots")
        for region in result.regions:
            slots_text = (str(region.first_slot) if region.first_slot == region.last_slot
                          else f"{region.first_slot}-{region.last_slot}")
            click.echo(f"  {region.name:<12} {region.start:#018x}   {region.end:#018x}   "
                       f"{_size_text(region.size):<10} {slots_text}")
        click.echo("\nProblems")
        for problem in problems:
            click.echo(f"  [{problem.kind.value}] {problem.message}")
        if not problems:
            click.echo("  none")
        click.echo("\nLevel-0 slots (512 GiB each)")
        for entry in slot_map:
            slots_text = (str(entry.first) if entry.first == entry.last
                          else f"{entry.first}-{entry.last}")
            click.echo(f"  {slots_text:<8} {entry.start:#018x} - {entry.end - 1:#018x}  "
                       f"{entry.describe()}")
        if plot_path is not None:
            click.echo(f"\nslot map drawn in {plot_path}")
    sys.exit(1 if problems else 0)


@main.command()
@click.argument("source", required=False, default=str(BUNDLED_SOURCE),
                type=click.Path(dir_okay=False, path_type=Path))
@click.option("--load-addresses", "addresses_text", required=True,
              metavar="RANGE|LIST|PRESET",
              help="START:END[:STEP] (END exclusive, STEP default 2M, both 2 MiB aligned; "
                   "K/M/G/T suffixes allowed), a comma list of addresses, ranges and presets, "
                   "or a preset: qemu-virt, juno-bank2, above-1tib, slot1 (1 GiB stride), "
                   "first-2tib (512 MiB stride).")
@_layout_preset_option(multiple=True)
@define_option("Preprocessor definition, applied after each preset's (repeatable).")
@include_option("Extra include directory for #include (repeatable).")
@click.option("-j", "--jobs", type=click.IntRange(min=1), default=None, metavar="N",
              help="Worker processes [default: one per CPU].")
@click.option("--until", default=DEFAULT_TARGET, show_default=True, metavar="SYMBOL|ADDR",
              help="Where each boot is complete.")
@click.option("--max-insns", type=click.IntRange(min=1), default=DEFAULT_MAX_INSNS,
              show_default=True, help="Instruction budget of each boot.")
@click.option("--json", "as_json", is_flag=True, help="One JSON list of per-address results.")
@click.option("--csv", "as_csv", is_flag=True, help="Per-address results as CSV, with a header.")
@click.option("--plot", "plot_path", type=click.Path(dir_okay=False, path_type=Path),
              metavar="FILE.png", help="Also draw verdict per load address and layout "
                                       "(needs matplotlib).")
@input_errors
def sweep(source: Path, addresses_text: str, layout_names: tuple[str, ...],
          defines: tuple[str, ...], include_dirs: tuple[Path, ...], jobs: int | None,
          until: str, max_insns: int, as_json: bool, as_csv: bool,
          plot_path: Path | None) -> None:
    """Boot SOURCE at many load addresses, in parallel, and say which ones work.

    Each boot is a full `bootemu check`.  A result's verdict is `clean`, the
    rule ids that fired (joined by '+'), `boot-failed:BOOT_ERR_NAME`,
    `incomplete`, or `beyond-pa-range` (the image would not be below the CPU's
    44-bit physical address size).  With several --layout presets, SOURCE is
    swept once per preset.  The text report groups consecutive addresses with
    the same verdict.

    \b
    Exit status: 0 every boot clean; 1 any other verdict; 2 usage or input error.
    """
    import csv
    import time

    from emu.analysis.plot import PlotError, ensure_plotting, plot_sweep
    from emu.analysis.sweep import (
        SweepError,
        default_jobs,
        parse_load_addresses,
        sweep_program,
        verdict_counts,
        verdict_runs,
    )
    from emu.asm.assembler import assemble_file
    from emu.image.layout import get_preset

    if as_json and as_csv:
        raise _one_line_error("--json and --csv: choose one")
    try:
        addresses = parse_load_addresses(addresses_text)
    except SweepError as err:
        raise _one_line_error(f"--load-addresses: {err}") from None
    if plot_path is not None:
        try:
            ensure_plotting()
        except PlotError as err:
            raise _one_line_error(str(err)) from None
    user_defines = _defines(defines)
    # Assemble every variant before booting anything, so an error comes first.
    programs = {}
    for name in layout_names or (None,):
        preset = get_preset(name) if name else None
        merged = {**(preset.defines if preset else {}), **user_defines}
        programs[name] = assemble_file(source, defines=merged, include_dirs=list(include_dirs))

    workers = jobs or default_jobs()
    total = len(addresses) * len(programs)
    show_bar = sys.stderr.isatty() and total >= 32
    results = {}
    started = time.perf_counter()
    with click.progressbar(length=total, label="booting", file=sys.stderr,
                           hidden=not show_bar) as bar:
        for name, program in programs.items():
            results[name] = sweep_program(program, addresses, include_dirs=list(include_dirs),
                                          jobs=workers, progress=bar.update, until=until,
                                          max_insns=max_insns, layout=name)
    elapsed = time.perf_counter() - started
    every = [result for rows in results.values() for result in rows]

    if plot_path is not None:
        try:
            plot_sweep({name or source.name: rows for name, rows in results.items()},
                       plot_path)
        except PlotError as err:
            raise _one_line_error(str(err)) from None

    if as_json:
        click.echo(json.dumps([result.to_dict() for result in every], indent=1))
    elif as_csv:
        writer = csv.writer(sys.stdout, lineterminator="\n")
        writer.writerow(["layout", "load_address", "verdict", "failure_code", "failure_name",
                         "rules", "executed", "message"])
        for r in every:
            writer.writerow([r.layout or "", f"{r.load_address:#x}", r.verdict,
                             "" if r.failure_code is None else r.failure_code,
                             r.failure_name or "", "+".join(r.rules), r.executed, r.message])
    else:
        width = max(len(f"{a:#x}") for a in addresses)
        for name, rows in results.items():
            title = f"layout {name}" if name else "as assembled"
            click.echo(f"sweep {source} ({title}): {len(rows)} load address(es)")
            for run in verdict_runs(rows):
                span = (f"{run.first:#x}" if run.first == run.last
                        else f"{run.first:#x} - {run.last:#x}")
                click.echo(f"  {span:<{2 * width + 3}}  {run.count:>6} boot(s)  {run.verdict}")
                if run.verdict != "clean":
                    first = next(r for r in rows if r.load_address == run.first)
                    click.echo(f"  {'':<{2 * width + 3}}  {first.message}")
            counts = ", ".join(f"{verdict} {count}" for verdict, count
                               in verdict_counts(rows).items())
            click.echo(f"  verdicts: {counts}\n")
        clean = sum(1 for r in every if r.clean)
        click.echo(f"{clean} of {len(every)} boot(s) clean; {workers} worker(s), "
                   f"{elapsed:.1f} s ({len(every) / max(elapsed, 1e-9):.0f} boots/s)")
        if plot_path is not None:
            click.echo(f"verdicts drawn in {plot_path}")
    sys.exit(0 if all(r.clean for r in every) else 1)


@main.command("asm")
@click.argument("source", required=False, default=str(BUNDLED_SOURCE),
                type=click.Path(dir_okay=False, path_type=Path))
@define_option("Preprocessor definition, e.g. -D XEN_VIRT_START=0x200000 (repeatable).")
@include_option("Extra include directory for #include and .include (repeatable).")
@click.option("-o", "--output", type=click.Path(dir_okay=False, path_type=Path), default=None,
              help="Write the flat binary here (what objcopy -O binary gives: all sections "
                   "from the link address, without a trailing .bss).")
@click.option("--base", type=Address(), default=None, metavar="ADDRESS",
              help="Link address [default: the source's LINK_ADDRESS macro, else 0].")
@click.option("--list", "listing", is_flag=True,
              help="Print a listing: address, encoding, disassembly, source line, symbol.")
@click.option("--json", "as_json", is_flag=True,
              help="Print sections, symbols (nm style, with .size) and the line map as JSON.")
@input_errors
def asm(source: Path, defines: tuple[str, ...], include_dirs: tuple[Path, ...],
        output: Path | None, base: int | None, listing: bool, as_json: bool) -> None:
    """Assemble SOURCE as GNU as would, into a flat binary and a listing.

    SOURCE is preprocessed by cpp (#include, #define, #if), then assembled
    with GNU as's rules for macros, sections, literal pools, :lo12: and
    ranges; keystone encodes the instructions in a child process, so even an
    input that crashes it only gives an error.  Sections are laid out from
    the link address in the order .text*, .rodata*, .data*, .bss*.

    \b
    Examples:
      bootemu asm asm/head.S --list
      bootemu asm my_head.S -D XEN_VIRT_START=0x200000 -I include/ -o head.bin

    \b
    Exit status: 0 assembled; 2 the source does not assemble (one line on
    stderr: file:line: message).
    """
    program = assemble_file(source, defines=_defines(defines), include_dirs=list(include_dirs),
                            base=base)
    if output is not None:
        output.write_bytes(program.image)
    for warning in program.warnings:
        click.echo(f"bootemu: warning: {warning}", err=True)
    if as_json:
        click.echo(json.dumps(program_json(program), indent=2))
    elif listing:
        click.echo(format_listing(program), nl=False)
    else:
        sections = ", ".join(f"{section.name} {section.size:#x}" for section in program.sections)
        click.echo(f"{source}: {len(program.code):#x} bytes at {program.base:#x} ({sections}); "
                   f"{len(program.symbols)} symbols"
                   + (f"; wrote {len(program.image):#x} bytes to {output}" if output else ""))


if __name__ == "__main__":
    main()
