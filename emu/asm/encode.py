"""Place the sections, evaluate every operand and produce the bytes.

This is the back half of the assembler front-end (``emu.asm.reader`` is the
front half).  With every section placed, every label has an address, so:

* PC-relative instructions (``b``, ``bl``, ``b.cond``, ``cbz``/``cbnz``,
  ``tbz``/``tbnz``, ``adr``, ``adrp``, literal ``ldr``/``ldrsw``/``prfm``) are
  encoded here, with GNU as's range and alignment checks and messages: keystone
  aborts on an out-of-range branch and gets ``adrp`` wrong at a non-zero base;
* ``:lo12:``, ``:abs_g0:`` ... ``:abs_g3:`` become plain immediates (scaled
  and alignment-checked for loads and stores as GNU ld does), which keystone
  aborts on;
* every other immediate expression is evaluated with GNU precedence and
  handed to keystone as a number;
* ``mrs``/``msr`` of a system register and ``tlbi``/``dc``/``ic``/``at``
  operations named in ``emu.arch.sysregs`` are encoded from that table (keystone
  0.9.2 lacks some names), and so are a few instructions keystone does not
  know (``csdb``, ``bti``, ``sb``, ``msr pan, #1``, ...);
* data directives and literal-pool entries are evaluated and written here;
* what is left, one instruction at a time with numeric operands only, goes
  to keystone (``emu.asm.keystone_runner``), whose errors are reworded the way GNU
  as words them.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field

from emu.arch.sysregs import sys_op_encoding, sysreg_encoding
from emu.asm.expr import (
    ExpressionError,
    NotAbsolute,
    UndefinedSymbol,
    Value,
    evaluate,
    format_number,
    symbols_in,
)
from emu.asm.keystone_runner import KeystoneResult, encode
from emu.asm.reader import PREFIX, SECTION_KINDS, Item, Reader, Section, split_operands
from emu.asm.source import Origin

__all__ = ["Encoded", "Failure", "encode_program", "first_keystone_error", "place_sections"]

_MASK64 = (1 << 64) - 1
_HEADER_SECTIONS = (".text.header", ".head.text")

_CONDITIONS = {"eq": 0, "ne": 1, "cs": 2, "hs": 2, "cc": 3, "lo": 3, "mi": 4, "pl": 5,
               "vs": 6, "vc": 7, "hi": 8, "ls": 9, "ge": 10, "lt": 11, "gt": 12, "le": 13,
               "al": 14, "nv": 15}

# Instructions keystone 0.9.2 does not know (later architecture versions, all
# hints or barriers with fixed encodings); encoded here, checked against GNU as.
_HINT_ALIASES = {
    "xpaclri": 7, "pacia1716": 8, "pacib1716": 10, "autia1716": 12, "autib1716": 14,
    "esb": 16, "csdb": 20, "clrbhb": 22, "paciaz": 24, "paciasp": 25, "pacibz": 26,
    "pacibsp": 27, "autiaz": 28, "autiasp": 29, "autibz": 30, "autibsp": 31, "dgh": 6,
}
_FIXED = {"sb": 0xD50330FF, "ssbb": 0xD503309F, "pssbb": 0xD503349F}
_BTI = {"": 32, "c": 34, "j": 36, "jc": 38}
# MSR (immediate) PSTATE fields keystone lacks: name -> (op1, op2).
_PSTATE_FIELDS = {"pan": (0, 4), "uao": (0, 3), "dit": (3, 2), "ssbs": (3, 1), "tco": (3, 4)}
_LSE = re.compile(r"(?:ld|st)(?:add|clr|eor|set|smax|smin|umax|umin)(?:a|l|al)?[bh]?"
                  r"|swp(?:a|l|al)?[bh]?|cas(?:a|l|al)?[bhp]?|casp(?:a|l|al)?")
_PREFETCH = re.compile(r"(pld|pli|pst)(l[123])(keep|strm)")
_GPR = re.compile(r"([xw])(\d{1,2})|([xw])zr")
_FPR = re.compile(r"([bhsdq])(\d{1,2})")
_RELOCATION = re.compile(r"#?\s*:([A-Za-z0-9_]+):(.*)\Z", re.S)
_SHIFTED = re.compile(r"(lsl|lsr|asr|ror|msl|[su]xt[bhwx])(\s+)(#?)(.*)\Z", re.I | re.S)
_LITERAL = re.compile(r"[-+]?(?:0[xX][0-9a-fA-F]+|0[bB][01]+|\d+)\Z")
_FLOAT = re.compile(r"\d\.\d*|(?<![xX\w])\d+[eE][-+]?\d|\b(?:inf|nan)\b", re.I)


class Failure(Exception):
    """An error found after reading; ``seq`` orders it, ``crash`` marks a keystone crash."""

    def __init__(self, message: str, origin: Origin | None, seq: int, crash: bool = False,
                 transient: bool = False) -> None:
        super().__init__(message)
        self.message = message
        self.origin = origin
        self.seq = seq
        self.crash = crash
        self.transient = transient


class _Error(Exception):
    """Raised while encoding one item; becomes a Failure with the item's origin."""


class _Skip(Exception):
    """Not decidable without addresses (only when checking a partly read source)."""


@dataclass
class Encoded:
    """The assembled image and everything learnt on the way."""

    code: bytearray
    base: int
    sections: list[Section]
    symbols: dict[str, int]
    symbol_sections: dict[str, str]
    constants: dict[str, int]
    sizes: dict[str, int]
    items: list[Item]  # placed items with bytes, in address order
    code_items: set[int] = field(default_factory=set)  # id() of items that hold instructions
    warnings: list[str] = field(default_factory=list)


def place_sections(reader: Reader, base: int) -> list[Section]:
    """Lay the allocated sections out from ``base``: text, rodata, data, bss.

    Within a kind, sections keep the order in which the source first used
    them, each aligned to the largest alignment asked for inside it: what a
    linker script listing ``*(.text .text.*)`` and so on would do, except that
    a header section (``.text.header``, ``.head.text``) comes first, as Xen's
    and Linux's linker scripts put it: it holds the entry point.
    """
    used = [section for section in reader.sections
            if section.kind != "none" and (section.size or any(
                label.section is section for label in reader.labels.values()))]
    used.sort(key=lambda section: (SECTION_KINDS.index(section.kind),
                                   section.name not in _HEADER_SECTIONS, section.order))
    address = base
    for index, section in enumerate(used):
        aligned = -(-address // section.align) * section.align
        if index == 0 and aligned != address:
            raise _Error(f"link address {base:#x} is not aligned to the {section.align}-byte "
                         f"alignment section `{section.name}' asks for")
        section.address = aligned
        address = aligned + section.size
    if address > _MASK64 + 1:
        raise _Error(f"the image does not fit below 2^64 when linked at {base:#x}")
    return used


class _Context:
    """Symbol values after layout (or, with ``partial``, only constants)."""

    def __init__(self, reader: Reader, partial: bool = False) -> None:
        self.reader = reader
        self.partial = partial
        self._evaluating: set[int] = set()

    def symbol(self, name: str, seq: int, here: int | None) -> Value:
        if name == ".":
            if here is None:
                raise _Skip
            return Value(here)
        label = self.reader.labels.get(name)
        if label is not None:
            if label.section.address is None:
                if self.partial:
                    raise _Skip
                raise _Error(f"symbol `{name}' is in section `{label.section.name}', which is "
                             "not allocated")
            return Value(label.section.address + label.offset)
        definition = self.reader.equate_at(name, seq)
        if definition is None and self.reader.equates.get(name):
            definition = self.reader.equates[name][-1]  # used before set: its final value
        if definition is None:
            raise UndefinedSymbol(self.reader.local_names.get(name, name))
        value = definition.value
        if value is not None and value.section is None:
            return value
        if value is not None:
            assert isinstance(value.section, Section)
            if value.section.address is None:
                raise _Skip if self.partial else _Error(f"symbol `{name}' is not allocated")
            return Value(value.section.address + value.offset)
        if id(definition) in self._evaluating:
            raise _Error(f"symbol definition loop encountered at `{name}'")
        self._evaluating.add(id(definition))
        try:
            section = definition.section
            where = None if section.address is None else section.address + definition.offset
            return self.evaluate(definition.expression, definition.seq, where)
        finally:
            self._evaluating.discard(id(definition))

    def evaluate(self, expression: str, seq: int, here: int | None) -> Value:
        return evaluate(expression, lambda name: self.symbol(name, seq, here))

    def value(self, expression: str, seq: int, here: int | None) -> int:
        """An expression's absolute value; errors read like GNU as's."""
        try:
            result = self.evaluate(expression, seq, here)
        except UndefinedSymbol as err:
            if self.partial:
                raise _Skip from None
            name = err.name
            if name.startswith(PREFIX):
                raise _Error(f"undefined local label `{name}'") from None
            raise _Error(f"undefined symbol `{name}'") from None
        except NotAbsolute as err:
            raise _Error(str(err)) from None
        except ExpressionError as err:
            raise _Error(str(err)) from None
        return result.require_absolute()

    def defined(self, name: str) -> bool:
        return name == "." or name in self.reader.labels or name in self.reader.equates


# --------------------------------------------------------------------------
# Operands


def _gpr(text: str) -> tuple[int, bool] | None:
    """(number, 64-bit) of a general-purpose register name, or None."""
    match = _GPR.fullmatch(text.strip().lower())
    if match is None:
        return None
    if match.group(3):
        return 31, match.group(3) == "x"
    number = int(match.group(2))
    return (number, match.group(1) == "x") if number <= 30 else None


def _echo(mnemonic: str, operands: str) -> str:
    """The statement as GNU as echoes it in a message: no blanks after commas."""
    text = f"{mnemonic} {operands}".strip()
    return re.sub(r"\s*,\s*", ",", text)


def _access_size(mnemonic: str, register: str) -> int | None:
    """Bytes a load/store moves, for scaling ``:lo12:`` (None: not a load/store)."""
    if mnemonic in ("ldrb", "strb", "ldrsb"):
        return 1
    if mnemonic in ("ldrh", "strh", "ldrsh"):
        return 2
    if mnemonic == "ldrsw":
        return 4
    if mnemonic == "prfm":
        return 8
    if mnemonic in ("ldr", "str") and register:
        return {"x": 8, "w": 4, "b": 1, "h": 2, "s": 4, "d": 8, "q": 16}.get(register[0].lower())
    return None


class _Encoder:
    """Turns one item into bytes (or keystone text) with GNU as's checks."""

    def __init__(self, context: _Context) -> None:
        self.context = context
        self.warnings: list[str] = []

    # -- values -----------------------------------------------------------------

    def address(self, item: Item) -> int:
        if item.section.address is None:
            raise _Skip
        return item.section.address + item.offset

    def here(self, item: Item) -> int | None:
        return None if item.section.address is None else item.section.address + item.offset

    def value(self, expression: str, item: Item) -> int:
        return self.context.value(expression, item.seq, self.here(item))

    # -- data -------------------------------------------------------------------

    def data(self, item: Item) -> bytes:
        out = bytearray()
        origin = item.pool.origin if item.pool is not None else item.origin
        for index, expression in enumerate(item.values):
            here = self.here(item)
            where = None if here is None else here + index * item.width
            value = self.context.value(expression, item.seq, where)
            bits = 8 * item.width
            if not -(1 << (bits - 1)) <= value < (1 << bits) and bits < 64:
                truncated = value & ((1 << bits) - 1)
                location = origin.location if origin is not None else "?"
                self.warnings.append(f"{location}: Warning: value {value & _MASK64:#x} "
                                     f"truncated to {truncated:#x}")
            out += (value & ((1 << bits) - 1)).to_bytes(item.width, "little")
        return bytes(out)

    # -- instructions -------------------------------------------------------------

    def instruction(self, item: Item) -> int | str:
        """The encoding of an instruction, or the text keystone should encode."""
        mnemonic, operands = item.mnemonic, item.operands
        parts = split_operands(operands) if operands else []
        if item.pool is not None:
            return self._literal_load(item, parts, item.pool.item)
        encoded = self._pc_relative(item, mnemonic, parts)
        if encoded is not None:
            return encoded
        special = self._special(mnemonic, parts, operands, item)
        if special is not None:
            return special
        system = self._system(mnemonic, parts, operands)
        if system is not None:
            return system
        rewritten = [self._operand(part, item, mnemonic, parts, index)
                     for index, part in enumerate(parts)]
        return f"{mnemonic} {', '.join(rewritten)}" if rewritten else mnemonic

    def _literal_load(self, item: Item, parts: list[str], pool_item: Item | None) -> int:
        assert pool_item is not None
        return self._load_literal(item, parts[0], self.address(pool_item), "ldr")

    def _pc_relative(self, item: Item, mnemonic: str, parts: list[str]) -> int | None:
        condition = None
        if mnemonic.startswith("b.") or (len(mnemonic) == 3 and mnemonic[0] == "b"
                                         and mnemonic[1:] in _CONDITIONS):
            condition = _CONDITIONS.get(mnemonic[2:] if mnemonic[1] == "." else mnemonic[1:])
            if condition is None:
                echo = _echo(mnemonic, ", ".join(parts))
                raise _Error(f"unknown mnemonic `{mnemonic}' -- `{echo}'")
        family = mnemonic in ("b", "bl", "cbz", "cbnz", "tbz", "tbnz", "adr", "adrp")
        literal = (mnemonic in ("ldr", "ldrsw", "prfm") and len(parts) == 2
                   and not parts[1].startswith(("[", "=")))
        if condition is None and not family and not literal:
            return None
        echo = _echo(mnemonic, ", ".join(parts))
        expected = 1 if mnemonic in ("b", "bl") or condition is not None else (
            3 if mnemonic in ("tbz", "tbnz") else 2)
        if len(parts) != expected or not all(parts):
            raise _Error(f"operand mismatch -- `{echo}'")
        pc = self.address(item)
        target_text = parts[-1].strip()
        if target_text.startswith("#"):
            target_text = target_text[1:]
        if mnemonic == "adrp":
            target_text = re.sub(r"^:pg_hi21(?:_nc)?:", "", target_text.strip(), flags=re.I)
        if literal:
            target = self._target(target_text, item)
            return self._load_literal(item, parts[0], target, mnemonic)
        target = self._target(target_text, item)
        offset = target - pc
        if mnemonic in ("b", "bl"):
            self._check_branch(offset, 28, "branch")
            return (0x94000000 if mnemonic == "bl" else 0x14000000) | ((offset >> 2) & 0x3FFFFFF)
        if condition is not None:
            self._check_branch(offset, 21, "conditional branch")
            return 0x54000000 | (((offset >> 2) & 0x7FFFF) << 5) | condition
        register = _gpr(parts[0])
        if register is None:
            raise _Error(f"operand 1 must be an integer register -- `{echo}'")
        number, wide = register
        if mnemonic in ("cbz", "cbnz"):
            self._check_branch(offset, 21, "conditional branch")
            opcode = 0x34000000 if mnemonic == "cbz" else 0x35000000
            return (wide << 31) | opcode | (((offset >> 2) & 0x7FFFF) << 5) | number
        if mnemonic in ("tbz", "tbnz"):
            bit = self.value(parts[1].strip().lstrip("#"), item)
            limit = 63 if wide else 31
            if not 0 <= bit <= limit:
                raise _Error(f"immediate value out of range 0 to {limit} at operand 2 -- "
                             f"`{echo}'")
            self._check_branch(offset, 16, "conditional branch")
            opcode = 0x36000000 if mnemonic == "tbz" else 0x37000000
            return ((bit >> 5) << 31) | opcode | ((bit & 31) << 19) | (
                ((offset >> 2) & 0x3FFF) << 5) | number
        if not wide:
            raise _Error(f"operand 1 must be a 64-bit integer register -- `{echo}'")
        if mnemonic == "adr":
            if not -(1 << 20) <= offset < (1 << 20):
                raise _Error("pc-relative address offset out of range")
            return 0x10000000 | ((offset & 3) << 29) | (((offset >> 2) & 0x7FFFF) << 5) | number
        pages = (target >> 12) - (pc >> 12)
        if not -(1 << 20) <= pages < (1 << 20):
            raise _Error("relocation truncated to fit: R_AARCH64_ADR_PREL_PG_HI21 against "
                         f"`{target_text.strip()}'")
        return 0x90000000 | ((pages & 3) << 29) | (((pages >> 2) & 0x7FFFF) << 5) | number

    def _target(self, expression: str, item: Item) -> int:
        if self.context.partial:
            raise _Skip
        return self.value(expression, item)

    @staticmethod
    def _check_branch(offset: int, bits: int, what: str) -> None:
        if offset & 3:
            raise _Error(f"{what} target not word aligned")
        if not -(1 << (bits - 1)) <= offset < (1 << (bits - 1)):
            raise _Error(f"{what} out of range")

    def _load_literal(self, item: Item, register_text: str, target: int, mnemonic: str) -> int:
        pc = self.address(item)
        offset = target - pc
        register = register_text.strip().lower()
        echo = _echo(item.mnemonic, item.operands)
        if mnemonic == "prfm":
            match = _PREFETCH.fullmatch(register)
            if match is not None:
                kind, level, policy = match.groups()
                number = (("pld", "pli", "pst").index(kind) << 3) | (
                    (int(level[1]) - 1) << 1) | (policy == "strm")
            elif register.startswith("#"):
                number = self.value(register[1:], item)
                if not 0 <= number <= 31:
                    raise _Error(f"immediate value out of range 0 to 31 at operand 1 -- `{echo}'")
            else:
                raise _Error(f"unknown or missing operation name at operand 1 -- `{echo}'")
            opc, vector = 3, 0
        else:
            gpr = _gpr(register)
            fpr = _FPR.fullmatch(register)
            if gpr is not None and mnemonic == "ldrsw":
                if not gpr[1]:
                    raise _Error(f"operand 1 must be a 64-bit integer register -- `{echo}'")
                number, opc, vector = gpr[0], 2, 0
            elif gpr is not None:
                number, opc, vector = gpr[0], 1 if gpr[1] else 0, 0
            elif fpr is not None and mnemonic == "ldr" and fpr.group(1) in "sdq" and int(
                    fpr.group(2)) <= 31:
                number, opc, vector = int(fpr.group(2)), "sdq".index(fpr.group(1)), 1
            else:
                raise _Error(f"operand 1 must be an integer or SIMD register -- `{echo}'")
        if offset & 3:
            raise _Error("pc-relative load offset not word aligned")
        if not -(1 << 20) <= offset < (1 << 20):
            raise _Error("pc-relative load offset out of range")
        return (opc << 30) | 0x18000000 | (vector << 26) | (((offset >> 2) & 0x7FFFF) << 5) | number

    def _special(self, mnemonic: str, parts: list[str], operands: str,
                 item: Item) -> int | None:
        """Encodings keystone lacks, from the architecture's tables."""
        echo = _echo(mnemonic, operands)
        if mnemonic in _HINT_ALIASES:
            if parts:
                raise _Error(f"unexpected characters following instruction -- `{echo}'")
            return 0xD503201F | (_HINT_ALIASES[mnemonic] << 5)
        if mnemonic in _FIXED:
            if parts:
                raise _Error(f"unexpected characters following instruction -- `{echo}'")
            return _FIXED[mnemonic]
        if mnemonic == "bti":
            target = parts[0].lower() if parts else ""
            if len(parts) > 1 or target not in _BTI:
                raise _Error(f"the only valid operands are c, j and jc -- `{echo}'")
            return 0xD503201F | (_BTI[target] << 5)
        if mnemonic in ("psb", "tsb"):
            if [part.lower() for part in parts] != ["csync"]:
                raise _Error(f"the specified option is not accepted in {mnemonic.upper()} -- "
                             f"`{echo}'")
            return 0xD503201F | ((17 if mnemonic == "psb" else 18) << 5)
        if mnemonic == "udf":
            if len(parts) != 1:
                raise _Error(f"operand mismatch -- `{echo}'")
            value = self.value(parts[0].lstrip("#"), item)
            if not 0 <= value <= 0xFFFF:
                raise _Error(f"immediate value out of range 0 to 65535 at operand 1 -- `{echo}'")
            return value
        if mnemonic == "msr" and len(parts) == 2 and parts[0].lower() in _PSTATE_FIELDS:
            op1, op2 = _PSTATE_FIELDS[parts[0].lower()]
            value = self.value(parts[1].lstrip("#"), item)
            if not 0 <= value <= 1:
                raise _Error(f"immediate value out of range 0 to 1 at operand 2 -- `{echo}'")
            return 0xD500401F | (op1 << 16) | (value << 8) | (op2 << 5)
        return None

    def _system(self, mnemonic: str, parts: list[str], operands: str) -> int | None:
        """MRS/MSR of a register and TLBI/DC/IC/AT named in ``emu.arch.sysregs``.

        Encoded from the table (cross-checked against GNU as): keystone 0.9.2
        does not know every name, and its ``sys`` form drops some encodings.
        """
        echo = _echo(mnemonic, operands)
        if mnemonic in ("mrs", "msr") and len(parts) == 2:
            index = 1 if mnemonic == "mrs" else 0
            other = parts[1 - index].strip()
            if other.startswith("#"):
                return None
            try:
                op0, op1, crn, crm, op2 = sysreg_encoding(parts[index])
            except ValueError:
                return None
            register = _gpr(other)
            if register is None or not register[1]:
                raise _Error(f"operand {2 - index} must be a 64-bit integer register -- `{echo}'")
            opcode = 0xD5300000 if mnemonic == "mrs" else 0xD5100000
            return (opcode | ((op0 - 2) << 19) | (op1 << 16) | (crn << 12) | (crm << 8)
                    | (op2 << 5) | register[0])
        if mnemonic in ("tlbi", "dc", "ic", "at") and parts:
            name = parts[0].strip()
            try:
                op1, crn, crm, op2 = sys_op_encoding(f"{mnemonic} {name}")
            except ValueError:
                return None
            upper = name.upper()
            takes_register = (mnemonic in ("dc", "at") or upper == "IVAU"
                              or any(key in upper for key in ("VA", "IPA", "ASID")))
            if takes_register and len(parts) != 2:
                raise _Error(f"missing register at operand 2 -- `{echo}'")
            if not takes_register and len(parts) != 1:
                raise _Error(f"extraneous register at operand 2 -- `{echo}'")
            number = 31
            if takes_register:
                register = _gpr(parts[1])
                if register is None or not register[1]:
                    raise _Error(f"operand 2 must be a 64-bit integer register -- `{echo}'")
                number = register[0]
            return (0xD5080000 | (op1 << 16) | (crn << 12) | (crm << 8) | (op2 << 5)
                    | number)
        return None

    def _operand(self, part: str, item: Item, mnemonic: str, parts: list[str],
                 index: int) -> str:
        part = part.strip()
        if part.startswith("["):
            close = part.rfind("]")
            if close < 0:
                return part
            inner = [self._simple(piece, item, mnemonic, parts)
                     for piece in split_operands(part[1:close])]
            return "[" + ", ".join(inner) + "]" + part[close + 1:]
        if part.startswith("{"):
            return part
        return self._simple(part, item, mnemonic, parts)

    def _simple(self, part: str, item: Item, mnemonic: str, parts: list[str]) -> str:
        part = part.strip()
        relocation = _RELOCATION.match(part)
        if relocation is not None:
            return self._relocation(relocation.group(1).lower(), relocation.group(2).strip(),
                                    item, mnemonic, parts)
        if part.startswith("#"):
            expression = part[1:].strip()
            if not expression or _LITERAL.match(expression) or _FLOAT.search(expression):
                return part
            return "#" + format_number(self.value(expression, item))
        shifted = _SHIFTED.match(part)
        if shifted is not None:
            keyword, space, hash_sign, expression = shifted.groups()
            if not expression or _LITERAL.match(expression.strip()):
                return part
            return f"{keyword}{space}#{format_number(self.value(expression, item))}"
        if _LITERAL.match(part):
            return part
        names = symbols_in(part)
        if names and all(self.context.defined(name) for name in names) or (
                not names and re.search(r"[-+*/%<>&|^~!()]", part)):
            try:
                evaluate(part, lambda name: Value(0))
            except ExpressionError:
                return part
            return "#" + format_number(self.value(part, item))
        return part

    def _relocation(self, kind: str, expression: str, item: Item, mnemonic: str,
                    parts: list[str]) -> str:
        echo = _echo(mnemonic, item.operands)
        if self.context.partial:
            raise _Skip
        value = self.value(expression, item) & _MASK64
        if kind in ("lo12", "lo12_nc"):
            if mnemonic in ("add", "adds", "sub", "subs"):
                return f"#{value & 0xFFF:#x}"
            size = _access_size(mnemonic, parts[0].strip() if parts else "")
            if size is None:
                raise _Error(f"relocation `:{kind}:' is not valid with `{mnemonic}' -- `{echo}'")
            low = value & 0xFFF
            if low % size:
                raise _Error(f"relocation truncated to fit: R_AARCH64_LDST{8 * size}_ABS_LO12_NC"
                             f" against `{expression}'")
            return f"#{low:#x}"
        group = re.fullmatch(r"abs_g([0-3])(_nc)?", kind)
        if group is not None:
            if mnemonic not in ("movz", "movk", "mov"):
                raise _Error(f"relocation `:{kind}:' is not valid with `{mnemonic}' -- `{echo}'")
            shift = 16 * int(group.group(1))
            if group.group(2) is None and group.group(1) != "3" and value >> (shift + 16):
                raise _Error(f"relocation truncated to fit: R_AARCH64_MOVW_UABS_G"
                             f"{group.group(1)} against `{expression}'")
            return f"#{(value >> shift) & 0xFFFF:#x}, lsl #{shift}"
        raise _Error(f"relocation `:{kind}:' is not supported: bootemu links one flat image "
                     f"(no GOT, PLT or TLS) -- `{echo}'")


# --------------------------------------------------------------------------
# Keystone's errors, worded like GNU as's

_IMMEDIATE_ERRNOS = {520, 524, 525, 527, 528, 529}


def _keystone_message(result: KeystoneResult, mnemonic: str, operands: str, text: str) -> str:
    echo = _echo(mnemonic, operands)
    if result.crashed:
        return result.message
    if _LSE.fullmatch(mnemonic):
        return (f"keystone cannot encode `{mnemonic}' (an ARMv8.1 LSE atomic) and bootemu has "
                f"no encoder of its own for it -- `{echo}'")
    errno = result.errno
    if errno == 514:
        return f"unknown mnemonic `{mnemonic}' -- `{echo}'"
    if errno == 513:
        return f"selected processor does not support `{echo}'"
    if errno == 520:
        return "immediate out of range"
    if errno in _IMMEDIATE_ERRNOS:
        return f"immediate value out of range -- `{echo}'"
    if errno in (547, 548):
        return "immediate offset out of range"
    if errno == 561:
        if mnemonic in ("mov", "movz", "movn"):
            return "immediate cannot be moved by a single instruction"
        position = next((i + 1 for i, part in enumerate(split_operands(operands))
                         if part.strip().startswith("#")), 0)
        where = f" at operand {position}" if position else ""
        return f"immediate out of range{where} -- `{echo}'"
    if errno in (562, 563):
        return f"unknown or missing system register name -- `{echo}'"
    if errno == 144:
        names = [name for name in symbols_in(operands) if name != "."]
        return f"undefined symbol `{names[0]}'" if names else "undefined symbol"
    if errno in (512, 516):
        return f"operand mismatch -- `{echo}'"
    words = result.message or f"keystone error {errno}"
    if words == "Unknown error":
        words = f"invalid operands (keystone error {errno})"
    return f"{words[:1].lower()}{words[1:]} -- `{echo}'"


# --------------------------------------------------------------------------
# The whole program


def encode_program(reader: Reader, base: int) -> Encoded:
    """Place, evaluate and encode everything read; raises Failure at the first error.

    "First" is in reading order, so the error reported is the one GNU as
    would print first.
    """
    try:
        placed = place_sections(reader, base)
    except _Error as err:
        raise Failure(str(err), None, 0) from None
    context = _Context(reader)
    encoder = _Encoder(context)
    failures: list[Failure] = []
    pending: dict[int, str] = {}  # id(item) -> keystone text
    words: dict[int, bytes] = {}
    items = [item for section in placed for item in section.items if item.size]
    for item in items:
        origin = item.pool.origin if item.pool is not None and item.kind == "pool" else item.origin
        try:
            if item.kind == "insn":
                result = encoder.instruction(item)
                if isinstance(result, int):
                    words[id(item)] = result.to_bytes(4, "little")
                else:
                    pending[id(item)] = result
            elif item.kind in ("data", "pool", "inst"):
                words[id(item)] = encoder.data(item)
            else:
                words[id(item)] = item.data
        except _Error as err:
            failures.append(Failure(str(err), origin, item.seq))
    by_id = {id(item): item for item in items}
    failures += _keystone(pending, by_id, words)
    if failures:
        raise min(failures, key=lambda failure: failure.seq)

    end = placed[-1].address + placed[-1].size if placed else base  # type: ignore[operator]
    code = bytearray(end - base)
    code_items: set[int] = set()
    for item in items:
        start = encoder.address(item) - base
        code[start:start + item.size] = words[id(item)]
        if item.kind in ("insn", "inst") or (item.kind == "align" and item.section.code
                                              and item.data[-4:] == b"\x1f\x20\x03\xd5"):
            code_items.add(id(item))
    symbols: dict[str, int] = {}
    symbol_sections: dict[str, str] = {}
    for name, label in reader.labels.items():
        if name.startswith(PREFIX) or label.section.address is None:
            continue
        symbols[name] = label.section.address + label.offset
        symbol_sections[name] = label.section.name
    constants: dict[str, int] = {}
    for name, definitions in reader.equates.items():
        final = definitions[-1]
        try:
            value = context.symbol(name, final.seq + 1, None)
        except (ExpressionError, _Error, _Skip):
            continue
        constants[name] = value.offset
        if final.value is not None and final.value.section is not None:
            assert isinstance(final.value.section, Section)
            symbol_sections[name] = final.value.section.name
    sizes: dict[str, int] = {}
    for name, expression, marker in reader.sizes:
        try:
            sizes[name] = context.value(expression, marker.seq, encoder.here(marker))
        except _Error as err:
            raise Failure(str(err), marker.origin, marker.seq) from None
    return Encoded(code, base, placed, symbols, symbol_sections, constants, sizes, items,
                   code_items, encoder.warnings)


def _keystone(pending: dict[int, str], items: dict[int, Item],
              words: dict[int, bytes]) -> list[Failure]:
    failures: list[Failure] = []
    if not pending:
        return failures
    results = encode(pending.values())
    for key, text in pending.items():
        item = items[key]
        result = results[text]
        if result.code is not None and len(result.code) == 4:
            words[key] = result.code
            continue
        if result.code is not None:
            message = (f"keystone produced {len(result.code)} bytes for one instruction -- "
                       f"`{_echo(item.mnemonic, item.operands)}'")
        else:
            message = _keystone_message(result, item.mnemonic, item.operands, text)
        failures.append(Failure(message, item.origin, item.seq, crash=result.crashed,
                                transient=result.transient))
    return failures


def first_keystone_error(reader: Reader, before: int) -> Failure | None:
    """The first keystone error among the instructions read before statement ``before``.

    Used when reading stopped at an error: GNU as would still have reported
    an earlier bad instruction first.  Instructions whose operands need
    addresses are skipped.
    """
    context = _Context(reader, partial=True)
    encoder = _Encoder(context)
    pending: dict[int, str] = {}
    failures: list[Failure] = []
    by_id: dict[int, Item] = {}
    for item in reader.items:
        if item.seq >= before or item.kind != "insn" or item.pool is not None:
            continue
        try:
            result = encoder.instruction(item)
        except (_Skip, _Error):
            continue
        if isinstance(result, str):
            pending[id(item)] = result
            by_id[id(item)] = item
    failures += _keystone(pending, by_id, {})
    return min(failures, key=lambda failure: failure.seq) if failures else None

