"""``bootemu asm``: assemble a source as GNU as would, into a flat binary and a listing."""

from __future__ import annotations

import json
from pathlib import Path

import click

from emu.asm.assembler import assemble_file
from emu.asm.elf_writer import write_elf
from emu.asm.listing import format_listing, program_json
from emu.cli.options import (
    BUNDLED_SOURCE,
    Address,
    define_option,
    include_option,
    input_errors,
    parse_defines,
)


@click.command("asm")
@click.argument("source", required=False, default=str(BUNDLED_SOURCE),
                type=click.Path(dir_okay=False, path_type=Path))
@define_option("Preprocessor definition, e.g. -D XEN_VIRT_START=0x200000 (repeatable).")
@include_option("Extra include directory for #include and .include (repeatable).")
@click.option("-o", "--output", type=click.Path(dir_okay=False, path_type=Path), default=None,
              help="Write the flat binary here (what objcopy -O binary gives: all sections "
                   "from the link address, without a trailing .bss).")
@click.option("--elf", "elf_output", type=click.Path(dir_okay=False, path_type=Path),
              default=None, metavar="OUT",
              help="Write an ELF64 AArch64 executable here, for gdb, objdump and addr2line: "
                   "the sections at the link address, the labels in .symtab, and DWARF line "
                   "info giving each instruction's file:line (for a macro, the line invoking "
                   "it).")
@click.option("--base", type=Address(), default=None, metavar="ADDRESS",
              help="Link address [default: the source's LINK_ADDRESS macro, else 0].")
@click.option("--list", "listing", is_flag=True,
              help="Print a listing: address, encoding, disassembly, source line, symbol.")
@click.option("--json", "as_json", is_flag=True,
              help="Print sections, symbols (nm style, with .size) and the line map as JSON.")
@input_errors
def asm(source: Path, defines: tuple[str, ...], include_dirs: tuple[Path, ...],
        output: Path | None, elf_output: Path | None, base: int | None, listing: bool,
        as_json: bool) -> None:
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
      bootemu asm asm/head.S --elf head.elf && gdb-multiarch head.elf

    \b
    Exit status: 0 assembled; 2 the source does not assemble (one line on
    stderr: file:line: message).
    """
    program = assemble_file(source, defines=parse_defines(defines), include_dirs=list(include_dirs),
                            base=base)
    if output is not None:
        output.write_bytes(program.image)
    if elf_output is not None:
        write_elf(program, elf_output)
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
                   + (f"; wrote {len(program.image):#x} bytes to {output}" if output else "")
                   + (f"; wrote ELF to {elf_output}" if elf_output else ""))

