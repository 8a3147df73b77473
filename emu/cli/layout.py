"""``bootemu layout``: a source's static virtual regions, their problems, the slot map."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import click

from emu.analysis.clashes import ClashAnalysis, ClashKind, clash_ranges
from emu.analysis.layout import check_layout, get_preset, va_map
from emu.asm.assembler import assemble_file
from emu.board.board import CPU_MODELS
from emu.board.cpu import cpu_pa_bits
from emu.cli.options import (
    BUNDLED_SOURCE,
    define_option,
    include_option,
    input_errors,
    layout_preset_option,
    one_line_error,
    parse_defines,
)
from emu.image.boot_image import ImageError
from emu.image.layout import LayoutError, layout_from_macros
from emu.image.program import image_from_program

# emu.analysis.plot is imported inside the command, so that the other commands do not
# pay for it.


def _size_text(size: int) -> str:
    """A size in the largest binary unit that divides it exactly, else hex."""
    for unit, shift in (("TiB", 40), ("GiB", 30), ("MiB", 20), ("KiB", 10)):
        if size and size % (1 << shift) == 0:
            return f"{size >> shift} {unit}"
    return f"{size:#x}"


@click.command()
@click.argument("source", required=False, default=str(BUNDLED_SOURCE),
                type=click.Path(dir_okay=False, path_type=Path))
@define_option("Preprocessor definition, applied after the preset's (repeatable).")
@include_option("Extra include directory for #include (repeatable).")
@layout_preset_option(multiple=False)
@click.option("--identity-slots", type=click.IntRange(0, 512), default=None, metavar="N",
              help="Level-0 slots kept free for identity maps [default: the preset's, else "
                   "the source's IDENTITY_MAPPING_AREA_NR_L0, else 1].")
@click.option("--clashes", is_flag=True,
              help="Also say, for every load address of the CPU's physical address space "
                   "(2 MiB steps), whether the image's identity map clashes with a static "
                   "region, as exact ranges: what a sweep of every address would find, "
                   "computed from the layout alone.")
@click.option("--cpu", type=click.Choice(CPU_MODELS), default=CPU_MODELS[0], show_default=True,
              help="With --clashes: the CPU whose physical address size bounds the loads "
                   "(44 bits for the A72 and A57, 40 for the A53).")
@click.option("--image-size", "image_size_text", metavar="SIZE",
              help="With --clashes: bytes the identity map must cover from the load address "
                   "(K/M/G suffixes allowed) [default: the assembled image's size].")
@click.option("--json", "as_json", is_flag=True, help="Print the analysis as JSON.")
@click.option("--plot", "plot_path", type=click.Path(dir_okay=False, path_type=Path),
              metavar="FILE.png", help="Also draw the level-0 slot map (needs matplotlib); "
                                       "with --clashes, the load addresses' outcomes too.")
@input_errors
def layout(source: Path, defines: tuple[str, ...], include_dirs: tuple[Path, ...],
           layout_names: str | None, identity_slots: int | None, clashes: bool, cpu: str,
           image_size_text: str | None, as_json: bool, plot_path: Path | None) -> None:
    """Show SOURCE's static virtual regions, what is wrong with them, and the slot map.

    The regions are read from the source's STATIC_REGIONS(X) macro (or its
    NAME_VIRT_START / NAME_VIRT_SIZE pairs) after preprocessing with the
    preset's and your -D definitions.  Checked: regions in the identity area
    (the first level-0 slots, 512 GiB each, kept free so RAM there can be
    identity-mapped), overlapping regions, start or size not 2 MiB aligned,
    regions beyond the 48-bit VA space.

    With --clashes, the load addresses too, as exact ranges over the whole
    64-bit space: where the identity map of the image gets a level-0 slot of
    its own, where it would share one with a static region (identity-clash),
    and where the image would end past the CPU's physical address size
    (beyond-pa-range); then what holds wherever the image is loaded (the
    image linked inside the identity area, layout problems).

    \b
    Examples:
      bootemu layout --layout rework-2t --clashes
      bootemu layout --layout rework-10t --clashes --json

    \b
    Exit status: 0 no problem; 1 problems found; 2 usage or input error.
    """
    from emu.analysis.plot import PlotError, plot_layout
    from emu.analysis.sweep import SweepError, parse_size

    if image_size_text is not None and not clashes:
        raise one_line_error("--image-size goes with --clashes")

    try:
        preset = get_preset(layout_names) if layout_names else None
        merged = {**(preset.defines if preset else {}), **parse_defines(defines)}
        program = assemble_file(source, defines=merged, include_dirs=list(include_dirs))
        slots = identity_slots if identity_slots is not None else (
            preset.identity_slots if preset else None)
        name = preset.name if preset else source.name
        result = layout_from_macros(program.defines, name=name, identity_slots=slots)
    except LayoutError as err:
        raise one_line_error(f"{source}: {err}") from None
    problems = check_layout(result)
    slot_map = va_map(result)
    analysis = None
    if clashes:
        try:
            image = image_from_program(program, 0x4000_0000, include_dirs=list(include_dirs))
            image_size = (image.memory_size if image_size_text is None
                          else parse_size(image_size_text))
        except (ImageError, SweepError) as err:
            raise one_line_error(f"--image-size: {err}" if isinstance(err, SweepError)
                                 else f"{source}: {err}") from None
        if not 0 < image_size < 1 << 64:
            raise one_line_error(f"--image-size: {image_size:#x} is not a size below 2^64")
        analysis = clash_ranges(result, image_size=image_size, pa_bits=cpu_pa_bits(cpu),
                                link_address=image.link_address)
    if plot_path is not None:
        try:
            plot_layout(result, plot_path, clashes=analysis)
        except PlotError as err:
            raise one_line_error(str(err)) from None

    if as_json:
        document = {**result.to_dict(), "source": str(source),
                    "problems": [p.to_dict() for p in problems],
                    "slots": [s.to_dict() for s in slot_map]}
        if analysis is not None:
            document["clashes"] = {**analysis.to_dict(), "cpu": cpu}
        click.echo(json.dumps(document, indent=2))
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
        if analysis is not None:
            _echo_clashes(analysis, cpu)
        if plot_path is not None:
            click.echo(f"\nslot map drawn in {plot_path}")
    sys.exit(1 if problems else 0)


def _range_size(start: int, end: int) -> str:
    """A range's size for the eye: exact in a binary unit, else in TiB to 0.1,
    and "to 2^64" for the last range."""
    if end == 1 << 64:
        return "to 2^64"
    size = end - start
    exact = _size_text(size)
    if size < 1 << 40 or exact.endswith("TiB"):
        return exact
    return f"{size / (1 << 40):.1f} TiB"


def _echo_clashes(analysis: ClashAnalysis, cpu: str) -> None:
    click.echo(f"\nLoad addresses ({_size_text(analysis.align)} steps; the identity map "
               f"covers the image's {analysis.image_size:#x} bytes; {cpu}: "
               f"{analysis.pa_bits}-bit physical addresses)")
    for load_range in analysis.ranges:
        span = f"{load_range.start:#018x} - {load_range.end - 1:#018x}"
        if load_range.kind is ClashKind.CLASH:
            assert load_range.slots is not None
            first, last = load_range.slots
            slots = f"slot {first}" if first == last else f"slots {first}-{last}"
            what = (f"identity-clash: the identity map would share level-0 {slots} with "
                    f"{', '.join(load_range.regions)}")
        elif load_range.kind is ClashKind.BEYOND_PA:
            what = (f"beyond-pa-range: the image would end past 2^{analysis.pa_bits}")
        else:
            what = "fits: the identity map gets a level-0 slot of its own"
        click.echo(f"  {span}  {_range_size(load_range.start, load_range.end):>10}  {what}")
    click.echo("\nWherever the image is loaded")
    for finding in analysis.layout_findings:
        click.echo(f"  {finding}")
    if not analysis.layout_findings:
        click.echo("  nothing: the layout itself is sound")

