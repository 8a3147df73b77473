"""Read preprocessed assembly the way GNU as does, and lay it out.

This is the front half of the assembler front-end.  It turns the C
preprocessor's output into a flat list of items (instructions, data, padding,
literal-pool entries), each at an offset in its section, and collects labels,
equates, ``.size`` records and symbol bindings.  It does everything keystone
either cannot do or does differently from GNU as:

* ``.macro`` (positional, keyword, ``:req``, ``:vararg`` and default
  arguments, ``\\@``, ``\\()``, ``.exitm``, ``.purgem``), ``.rept``, ``.irp``,
  ``.irpc`` (``macros``), the ``.if`` family (``conditionals``) and
  ``.include`` (``files``) are expanded here, so every statement a macro
  produces can be checked and located like any other, and a numeric local
  label inside a macro works as in GNU as;
* sections (``.text``, ``.data``, ``.bss``, ``.section``, ``.pushsection``,
  ``.popsection``, ``.previous``) are kept apart, each with its own offsets and
  alignment, to be placed one after the other later (keystone segfaults on a
  section switch) (``sections``);
* ``ldr Rt, =expr`` gets a GNU-style literal pool: one per section and entry
  size, equal entries shared, dumped at ``.ltorg``/``.pool`` and at the end of
  the section, aligned with zeros (keystone turns small constants into ``mov``,
  never shares entries and pads with ``nop``) (``sections``);
* alignment pads code sections with ``nop`` after any odd bytes, data
  sections with zeros, and an instruction after odd-sized data is aligned to
  4 bytes with zeros, as GNU as does (``data``, ``state``).

Expressions needed while reading (``.if``, ``.rept``, ``.space``, ``.align``,
``.org``) are evaluated at once: labels already defined are known by their
section offset, so the difference of two of them in one section is a
constant.  Everything else (instruction operands, data values, equates that
refer to later labels) is evaluated once all sections are placed
(``emu.asm.link``).

The modules: ``items`` (what reading produces), ``syntax`` (splitting
statements and operands, string literals), ``state`` (the reader's state and
the primitives every directive uses), one mixin per concern (``macros``,
``conditionals``, ``sections``, ``data``, ``files``), and ``core``, whose
:class:`Reader` combines them and reads statement by statement.
"""

from emu.asm.reader.core import Reader
from emu.asm.reader.items import (
    PREFIX,
    SECTION_KINDS,
    EquateDef,
    Item,
    Label,
    PoolEntry,
    ReadError,
    Section,
)
from emu.asm.reader.syntax import split_operands, split_statements

__all__ = [
    "PREFIX",
    "SECTION_KINDS",
    "EquateDef",
    "Item",
    "Label",
    "PoolEntry",
    "ReadError",
    "Reader",
    "Section",
    "split_operands",
    "split_statements",
]
