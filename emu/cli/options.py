"""What the ``bootemu`` commands share: option types (addresses, RAM), the -D/-I
options, SOURCE and how to boot it, and how a user's bad input is reported.

A user's bad input is one line on stderr, ``bootemu: error: ...``, and exit
status 2.
"""

from __future__ import annotations

import sys
from collections.abc import Callable
from functools import wraps
from pathlib import Path
from typing import Any

import click
from click.core import ParameterSource

from emu.analysis.layout import LAYOUT_PRESETS
from emu.asm.preprocess import parse_define
from emu.asm.source import AssemblyError
from emu.board.board import CPU_MODELS
from emu.board.spec import BootSpec, parse_ram
from emu.image.boot_image import ImageError
from emu.image.load import ImageKind
from emu.machine.events import EVENT_CATEGORIES
from emu.report.timeline import ALL_EVENTS, DEFAULT_EVENTS, EventsError, parse_events

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
                        # A missing directory is a typo to report, not one to skip.
                        type=click.Path(exists=True, file_okay=False, path_type=Path),
                        help=help_text)


def parse_defines(values: tuple[str, ...]) -> dict[str, str]:
    """-D NAME=VALUE options as a mapping; a malformed one is a usage error on -D."""
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
            # The library names the file (emu.asm.files.named); without one,
            # no empty name before the colon.
            reason = err.strerror or str(err)
            where = f"{err.filename}: " if err.filename is not None else ""
            click.echo(f"bootemu: error: {where}{reason}", err=True)
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
    --symbols, --el, --ram, --dtb, --bootargs, --cpu, --seed and --bios, whose
    ``load()`` gives the image and the board to boot it on.  With --bios,
    SOURCE is the firmware file (and giving SOURCE too is an error).
    """

    @wraps(func)
    def wrapper(*args: Any, image_format: str, symbols: Path | None, el: int,
                ram: tuple[int, int] | None, dtb: Path | None, bootargs: str | None,
                cpu: str, seed: int, bios: Path | None, **kwargs: Any) -> Any:
        path = kwargs["source"]
        if "until" in kwargs and not str(kwargs["until"]).strip():
            # An empty target would otherwise mean "never": a run to the step limit.
            raise click.BadParameter("the target is empty", param_hint="--until")
        if bios is not None:
            given = click.get_current_context().get_parameter_source("source")
            if given is not ParameterSource.DEFAULT:
                raise one_line_error(f"--bios {bios} and SOURCE {path}: --bios FILE is the "
                                     "image to boot, give one or the other")
            path = kwargs["source"] = bios
        kwargs["boot"] = BootSpec(
            path=path,
            kind=None if image_format == "auto" else ImageKind(image_format),
            load_address=kwargs["load_address"],
            defines=parse_defines(kwargs["defines"]),
            include_dirs=list(kwargs["include_dirs"]),
            symbols=symbols, el=el, ram=ram, dtb=dtb, bootargs=bootargs,
            cpu=cpu, seed=seed, bios=bios is not None,
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
        click.option("--symbols", type=file_type, default=None, metavar="ELF|System.map",
                     help="Name a raw or Image file's addresses with the symbols of this "
                          "ELF build (e.g. vmlinux, xen-syms) or of an `nm` listing such "
                          "as Linux's System.map (physical and virtual)."),
        click.option("--el", type=click.IntRange(1, 2), default=2, show_default=True,
                     help="Exception level at entry."),
        click.option("--ram", type=Ram(), default=None,
                     help="RAM as BASE:SIZE [default: the --dtb's memory, else QEMU virt's "
                          "0x40000000:128M when the image fits there, else around it]."),
        click.option("--dtb", type=file_type, default=None, metavar="FILE",
                     help="Pass this device tree blob in x0 instead of the generated one "
                          "(memory, /chosen, CPU, PSCI, GICv2, timer, a PL011 at 0x9000000); "
                          "the UART goes where its PL011 node says, and the GIC is modelled "
                          "only if the tree has a GICv2."),
        click.option("--bootargs", default=None, metavar="TEXT",
                     help="/chosen/bootargs of the generated device tree."),
        click.option("--cpu", type=click.Choice(CPU_MODELS), default=CPU_MODELS[0],
                     show_default=True,
                     help="The CPU model: what its ID registers tell the guest."),
        click.option("--seed", type=click.IntRange(min=0), default=0, show_default=True,
                     metavar="N",
                     help="Seeds the device tree's kaslr-seed and rng-seed: the same seed "
                          "gives the same run."),
        click.option("--bios", type=file_type, default=None, metavar="FILE",
                     help="Boot FILE as firmware, as QEMU's -bios does: a raw image (or an "
                          "ELF file) loaded at the flash base 0 and entered there, the device "
                          "tree at the start of RAM.  Instead of SOURCE."),
    ]
    for option in reversed(options):
        wrapper = option(wrapper)
    return wrapper


def one_line_error(message: str) -> SystemExit:
    """Report a user's mistake on one line of stderr; the caller raises the exit (status 2)."""
    click.echo(f"bootemu: error: {message}", err=True)
    return SystemExit(INPUT_ERROR)


def layout_preset_option(multiple: bool) -> Callable[..., Any]:
    """--layout PRESET (repeatable if ``multiple``), into ``layout_names``."""
    return click.option(
        "--layout", "layout_names", multiple=multiple, metavar="PRESET",
        type=click.Choice(list(LAYOUT_PRESETS)),
        help="Layout preset: -D definitions for head.S ("
             + ", ".join(LAYOUT_PRESETS) + ")" + (" (repeatable)." if multiple else "."))


TARGET_HELP = ("SYMBOL, SYMBOL+0x14 (or +20), ADDRESS, #N (after N instructions have "
               "executed: in front of the instruction the reports number #N), PLACE@K "
               "(the K-th arrival at a symbol or address), or 'console:TEXT' (once the "
               "guest has printed TEXT)")


def events_option(default: frozenset[str] = DEFAULT_EVENTS, what: str = "the timeline shows"
                  ) -> Callable[[Callable[..., Any]], Callable[..., Any]]:
    """--events CATEGORY,..., into ``events`` (a frozenset of category names);
    ``default`` when not given, ``what`` says what it chooses in the help."""

    def convert(_ctx: click.Context, _param: click.Parameter, value: str | None
                ) -> frozenset[str]:
        if value is None:
            return default
        try:
            return parse_events(value)
        except EventsError as err:
            raise one_line_error(f"--events {value}: {err}") from None

    categories = "; ".join(f"{name}: {text}" for name, text in EVENT_CATEGORIES.items())
    default_words = ("all" if default == ALL_EVENTS else
                     "default: " + ",".join(n for n in EVENT_CATEGORIES if n in default))
    return click.option(
        "--events", "events", default=None, callback=convert, metavar="LIST",
        help=f"What {what}: a comma list of event categories, 'all', or 'default' (all but "
             f"barrier) [{default_words}].  Categories: {categories}.")
