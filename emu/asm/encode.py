"""Turn one placed item into bytes, or into the text keystone should encode.

This is the encoding step of the back half of the assembler front-end
(``emu.asm.reader`` is the front half; ``emu.asm.link`` drives this step once
``emu.asm.placement`` has placed every section).  Every label has an
address by then, so:

* PC-relative instructions (``b``, ``bl``, ``b.cond``, ``cbz``/``cbnz``,
  ``tbz``/``tbnz``, ``adr``, ``adrp``, literal ``ldr``/``ldrsw``/``prfm``) are
  encoded here, with GNU as's range and alignment checks and messages: keystone
  aborts on an out-of-range branch and gets ``adrp`` wrong at a non-zero base;
* ``:lo12:``, ``:abs_g0:`` ... ``:abs_g3:`` become plain immediates (scaled
  and alignment-checked for loads and stores as GNU ld does), which keystone
  aborts on;
* every other immediate expression is evaluated with GNU precedence and
  handed to keystone as a number;
* ``mrs``/``msr`` of a system register and ``tlbi``/``dc``/``ic``/``at``/
  ``cfp``/``dvp``/``cpp`` operations named in ``emu.arch.sysregs`` (or its wider
  ``emu.arch.sysreg_table``) are encoded from those tables (keystone 0.9.2 lacks
  many names), and so are instructions keystone does not know: hints and
  barriers (``csdb``, ``bti``, ``sb``, ``msr pan, #1``, ...), pointer
  authentication (``pacia``, ``autib``, ``braa``, ``retaa``, ``ldraa``, ...),
  LSE atomics (``ldadd``, ``swp``, ``cas``, ``casp``, ``stadd``, ...) and the
  memory-tagging basics (``irg``, ``addg``, ``stg``, ``ldg``, ...);
* data directives and literal-pool entries are evaluated and written here;
* what is left, one instruction at a time with numeric operands only, is
  returned as text for keystone (``emu.asm.link`` hands it over).

``_Encoder`` does all of it, one item at a time.
"""

from __future__ import annotations

import re

from emu.arch.sysreg_table import SYS_OP_NO_REGISTER
from emu.arch.sysregs import sys_op_encoding, sysreg_encoding
from emu.asm.expr import ExpressionError, Value, evaluate, format_number, symbols_in
from emu.asm.placement import EncodeError, SymbolValues, Undecidable
from emu.asm.reader import Item, split_operands

__all__ = ["echoed"]

_MASK64 = (1 << 64) - 1

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
_FIXED = {"sb": 0xD50330FF, "ssbb": 0xD503309F, "pssbb": 0xD503349F,
          # DDI 0487 C6.2 RETAA, RETAB and ERETAA, ERETAB: no operands.
          "retaa": 0xD65F0BFF, "retab": 0xD65F0FFF, "eretaa": 0xD69F0BFF,
          "eretab": 0xD69F0FFF}
_BTI = {"": 32, "c": 34, "j": 36, "jc": 38}
# MSR (immediate) PSTATE fields keystone lacks: name -> (op1, op2).
_PSTATE_FIELDS = {"pan": (0, 4), "uao": (0, 3), "dit": (3, 2), "ssbs": (3, 1), "tco": (3, 4)}
# Pointer authentication (DDI 0487 C4.1 "Data-processing (1 source)": opcode in
# bits 15:10).  C6.2 PACIA, PACIB, PACDA, PACDB, AUTIA, AUTIB, AUTDA, AUTDB take
# Xd, Xn|SP; their Z forms (PACIZA, ...) and C6.2 XPACD, XPACI, XPACLRI take Xd.
_PAC_TWO = {"pacia": 0, "pacib": 1, "pacda": 2, "pacdb": 3,
            "autia": 4, "autib": 5, "autda": 6, "autdb": 7}
_PAC_ONE = {"paciza": 8, "pacizb": 9, "pacdza": 10, "pacdzb": 11, "autiza": 12,
            "autizb": 13, "autdza": 14, "autdzb": 15, "xpaci": 16, "xpacd": 17}
# C6.2 BRAA, BRAAZ, BRAB, BRABZ and BLRAA, BLRAAZ, BLRAB, BLRABZ: Xn, Xm|SP; the
# Z forms Xn only (Rm = 11111).
_PAC_BRANCH = {"braa": 0xD71F0800, "brab": 0xD71F0C00, "blraa": 0xD73F0800,
               "blrab": 0xD73F0C00}
_PAC_BRANCH_Z = {"braaz": 0xD61F081F, "brabz": 0xD61F0C1F, "blraaz": 0xD63F081F,
                 "blrabz": 0xD63F0C1F}
# LSE atomics: C6.2 LDADD, LDADDA, LDADDAL, LDADDL (and the B/H forms, and LDCLR,
# LDEOR, LDSET, LDSMAX, LDSMIN, LDUMAX, LDUMIN alike: opc in bits 14:12), SWP
# (o3 = 1), STADD ... (LD<op> with Rt = XZR), CAS, CASP.
_LSE_OPS = {"add": 0, "clr": 1, "eor": 2, "set": 3, "smax": 4, "smin": 5, "umax": 6,
            "umin": 7}
_LSE_LOAD = re.compile(r"(?:ld(add|clr|eor|set|smax|smin|umax|umin)|(swp))(al|a|l)?([bh]?)")
_LSE_STORE = re.compile(r"st(add|clr|eor|set|smax|smin|umax|umin)(l?)([bh]?)")
_CAS = re.compile(r"cas(al|a|l)?([bh]?)")
_CASP = re.compile(r"casp(al|a|l)?")
# Memory tagging: C6.2 STG, STZG, ST2G, STZ2G (bits 23:22 pick the instruction,
# 11:10 the addressing mode: 01 post-index, 10 signed offset, 11 pre-index).
_TAG_STORES = {"stg": 0xD9200000, "stzg": 0xD9600000, "st2g": 0xD9A00000,
               "stz2g": 0xD9E00000}
# C6.2 LDGM, STGM, STZGM: Xt, [Xn|SP] (bits 11:10 = 00).
_TAG_BULK = {"ldgm": 0xD9E00000, "stgm": 0xD9A00000, "stzgm": 0xD9200000}
_MEMORY = re.compile(r"\[\s*([\w]+)\s*(?:,\s*(.*?))?\s*\](!?)\Z", re.S)
_PREFETCH = re.compile(r"(pld|pli|pst)(l[123])(keep|strm)")
_GPR = re.compile(r"([xw])(\d{1,2})|([xw])zr")
_FPR = re.compile(r"([bhsdq])(\d{1,2})")
_RELOCATION = re.compile(r"#?\s*:([A-Za-z0-9_]+):(.*)\Z", re.S)
_SHIFTED = re.compile(r"(lsl|lsr|asr|ror|msl|[su]xt[bhwx])(\s+)(#?)(.*)\Z", re.I | re.S)
_LITERAL = re.compile(r"[-+]?(?:0[xX][0-9a-fA-F]+|0[bB][01]+|\d+)\Z")
_FLOAT = re.compile(r"\d\.\d*|(?<![xX\w])\d+[eE][-+]?\d|\b(?:inf|nan)\b", re.I)


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


def _x(text: str, echo: str, operand: int, sp: bool = False) -> int:
    """The number of a 64-bit register operand (``sp`` allows SP in place of XZR)."""
    name = text.strip().lower()
    if sp and name == "sp":
        return 31
    register = _gpr(name)
    if register is None or not register[1] or (sp and name == "xzr"):
        kind = "an integer or stack pointer register" if sp else "a 64-bit integer register"
        raise EncodeError(f"operand {operand} must be {kind} -- `{echo}'")
    return register[0]


def _is_x(text: str) -> bool:
    register = _gpr(text)
    return register is not None and register[1]


def echoed(mnemonic: str, operands: str) -> str:
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

    def __init__(self, context: SymbolValues) -> None:
        self.context = context
        self.warnings: list[str] = []

    # -- values -----------------------------------------------------------------

    def address(self, item: Item) -> int:
        if item.section.address is None:
            raise Undecidable
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
        extension = self._extension(mnemonic, parts, operands, item)
        if extension is not None:
            return extension
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
                echo = echoed(mnemonic, ", ".join(parts))
                raise EncodeError(f"unknown mnemonic `{mnemonic}' -- `{echo}'")
        family = mnemonic in ("b", "bl", "cbz", "cbnz", "tbz", "tbnz", "adr", "adrp")
        literal = (mnemonic in ("ldr", "ldrsw", "prfm") and len(parts) == 2
                   and not parts[1].startswith(("[", "=")))
        if condition is None and not family and not literal:
            return None
        echo = echoed(mnemonic, ", ".join(parts))
        expected = 1 if mnemonic in ("b", "bl") or condition is not None else (
            3 if mnemonic in ("tbz", "tbnz") else 2)
        if len(parts) != expected or not all(parts):
            raise EncodeError(f"operand mismatch -- `{echo}'")
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
            raise EncodeError(f"operand 1 must be an integer register -- `{echo}'")
        number, wide = register
        if mnemonic in ("cbz", "cbnz"):
            self._check_branch(offset, 21, "conditional branch")
            opcode = 0x34000000 if mnemonic == "cbz" else 0x35000000
            return (wide << 31) | opcode | (((offset >> 2) & 0x7FFFF) << 5) | number
        if mnemonic in ("tbz", "tbnz"):
            bit = self.value(parts[1].strip().lstrip("#"), item)
            limit = 63 if wide else 31
            if not 0 <= bit <= limit:
                raise EncodeError(f"immediate value out of range 0 to {limit} at operand 2 -- "
                                  f"`{echo}'")
            self._check_branch(offset, 16, "conditional branch")
            opcode = 0x36000000 if mnemonic == "tbz" else 0x37000000
            return ((bit >> 5) << 31) | opcode | ((bit & 31) << 19) | (
                ((offset >> 2) & 0x3FFF) << 5) | number
        if not wide:
            raise EncodeError(f"operand 1 must be a 64-bit integer register -- `{echo}'")
        if mnemonic == "adr":
            if not -(1 << 20) <= offset < (1 << 20):
                raise EncodeError("pc-relative address offset out of range")
            return 0x10000000 | ((offset & 3) << 29) | (((offset >> 2) & 0x7FFFF) << 5) | number
        pages = (target >> 12) - (pc >> 12)
        if not -(1 << 20) <= pages < (1 << 20):
            raise EncodeError("relocation truncated to fit: R_AARCH64_ADR_PREL_PG_HI21 against "
                              f"`{target_text.strip()}'")
        return 0x90000000 | ((pages & 3) << 29) | (((pages >> 2) & 0x7FFFF) << 5) | number

    def _target(self, expression: str, item: Item) -> int:
        if self.context.partial:
            raise Undecidable
        return self.value(expression, item)

    @staticmethod
    def _check_branch(offset: int, bits: int, what: str) -> None:
        if offset & 3:
            raise EncodeError(f"{what} target not word aligned")
        if not -(1 << (bits - 1)) <= offset < (1 << (bits - 1)):
            raise EncodeError(f"{what} out of range")

    def _load_literal(self, item: Item, register_text: str, target: int, mnemonic: str) -> int:
        pc = self.address(item)
        offset = target - pc
        register = register_text.strip().lower()
        echo = echoed(item.mnemonic, item.operands)
        if mnemonic == "prfm":
            match = _PREFETCH.fullmatch(register)
            if match is not None:
                kind, level, policy = match.groups()
                number = (("pld", "pli", "pst").index(kind) << 3) | (
                    (int(level[1]) - 1) << 1) | (policy == "strm")
            elif register.startswith("#"):
                number = self.value(register[1:], item)
                if not 0 <= number <= 31:
                    raise EncodeError("immediate value out of range 0 to 31 at operand 1 -- "
                                      f"`{echo}'")
            else:
                raise EncodeError(f"unknown or missing operation name at operand 1 -- `{echo}'")
            opc, vector = 3, 0
        else:
            gpr = _gpr(register)
            fpr = _FPR.fullmatch(register)
            if gpr is not None and mnemonic == "ldrsw":
                if not gpr[1]:
                    raise EncodeError(f"operand 1 must be a 64-bit integer register -- `{echo}'")
                number, opc, vector = gpr[0], 2, 0
            elif gpr is not None:
                number, opc, vector = gpr[0], 1 if gpr[1] else 0, 0
            elif fpr is not None and mnemonic == "ldr" and fpr.group(1) in "sdq" and int(
                    fpr.group(2)) <= 31:
                number, opc, vector = int(fpr.group(2)), "sdq".index(fpr.group(1)), 1
            else:
                raise EncodeError(f"operand 1 must be an integer or SIMD register -- `{echo}'")
        if offset & 3:
            raise EncodeError("pc-relative load offset not word aligned")
        if not -(1 << 20) <= offset < (1 << 20):
            raise EncodeError("pc-relative load offset out of range")
        return (opc << 30) | 0x18000000 | (vector << 26) | (((offset >> 2) & 0x7FFFF) << 5) | number

    def _special(self, mnemonic: str, parts: list[str], operands: str,
                 item: Item) -> int | None:
        """Encodings keystone lacks, from the architecture's tables."""
        echo = echoed(mnemonic, operands)
        if mnemonic in _HINT_ALIASES:
            if parts:
                raise EncodeError(f"unexpected characters following instruction -- `{echo}'")
            return 0xD503201F | (_HINT_ALIASES[mnemonic] << 5)
        if mnemonic in _FIXED:
            if parts:
                raise EncodeError(f"unexpected characters following instruction -- `{echo}'")
            return _FIXED[mnemonic]
        if mnemonic == "bti":
            target = parts[0].lower() if parts else ""
            if len(parts) > 1 or target not in _BTI:
                raise EncodeError(f"the only valid operands are c, j and jc -- `{echo}'")
            return 0xD503201F | (_BTI[target] << 5)
        if mnemonic in ("psb", "tsb"):
            if [part.lower() for part in parts] != ["csync"]:
                raise EncodeError(f"the specified option is not accepted in {mnemonic.upper()} -- "
                                  f"`{echo}'")
            return 0xD503201F | ((17 if mnemonic == "psb" else 18) << 5)
        if mnemonic == "udf":
            if len(parts) != 1:
                raise EncodeError(f"operand mismatch -- `{echo}'")
            value = self.value(parts[0].lstrip("#"), item)
            if not 0 <= value <= 0xFFFF:
                raise EncodeError("immediate value out of range 0 to 65535 at operand 1 -- "
                                  f"`{echo}'")
            return value
        if (mnemonic == "msr" and len(parts) == 2 and parts[0].lower() in _PSTATE_FIELDS
                and _gpr(parts[1]) is None):
            op1, op2 = _PSTATE_FIELDS[parts[0].lower()]
            value = self.value(parts[1].lstrip("#"), item)
            if not 0 <= value <= 1:
                raise EncodeError(f"immediate value out of range 0 to 1 at operand 2 -- `{echo}'")
            return 0xD500401F | (op1 << 16) | (value << 8) | (op2 << 5)
        return None

    def _system(self, mnemonic: str, parts: list[str], operands: str) -> int | None:
        """MRS/MSR of a register and TLBI/DC/IC/AT named in ``emu.arch.sysregs``.

        Encoded from the table (cross-checked against GNU as): keystone 0.9.2
        does not know every name, and its ``sys`` form drops some encodings.
        """
        echo = echoed(mnemonic, operands)
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
                raise EncodeError(f"operand {2 - index} must be a 64-bit integer register -- "
                                  f"`{echo}'")
            opcode = 0xD5200000 if mnemonic == "mrs" else 0xD5000000
            return (opcode | (op0 << 19) | (op1 << 16) | (crn << 12) | (crm << 8)
                    | (op2 << 5) | register[0])
        if mnemonic in ("tlbi", "dc", "ic", "at", "cfp", "dvp", "cpp") and parts:
            name = parts[0].strip()
            try:
                op1, crn, crm, op2 = sys_op_encoding(f"{mnemonic} {name}")
            except ValueError:
                return None
            takes_register = f"{mnemonic} {name}".upper() not in SYS_OP_NO_REGISTER
            if takes_register and len(parts) != 2:
                raise EncodeError(f"missing register at operand 2 -- `{echo}'")
            if not takes_register and len(parts) != 1:
                raise EncodeError(f"extraneous register at operand 2 -- `{echo}'")
            number = 31
            if takes_register:
                register = _gpr(parts[1])
                if register is None or not register[1]:
                    raise EncodeError(f"operand 2 must be a 64-bit integer register -- `{echo}'")
                number = register[0]
            return (0xD5080000 | (op1 << 16) | (crn << 12) | (crm << 8) | (op2 << 5)
                    | number)
        return None

    # -- instructions keystone 0.9.2 does not know (Armv8.1 and later) -----------

    def _extension(self, mnemonic: str, parts: list[str], operands: str,
                   item: Item) -> int | None:
        """Pointer authentication, LSE atomics and memory tagging, or None."""
        echo = echoed(mnemonic, operands)
        if mnemonic in _PAC_TWO or mnemonic in _PAC_ONE or mnemonic == "pacga":
            return self._pac(mnemonic, parts, echo)
        if mnemonic in _PAC_BRANCH or mnemonic in _PAC_BRANCH_Z:
            if mnemonic in _PAC_BRANCH_Z:
                self._count(parts, 1, echo)
                return _PAC_BRANCH_Z[mnemonic] | (_x(parts[0], echo, 1) << 5)
            self._count(parts, 2, echo)
            return (_PAC_BRANCH[mnemonic] | (_x(parts[0], echo, 1) << 5)
                    | _x(parts[1], echo, 2, sp=True))
        if mnemonic in ("ldraa", "ldrab"):
            # C6.2 LDRAA, LDRAB: offset S:imm9 scaled by 8, W = pre-index.
            self._count(parts, 2, echo)
            base, offset, writeback = self._address(parts[1], echo, item)
            if offset % 8:
                raise EncodeError(f"immediate value must be a multiple of 8 at operand 2 -- "
                                  f"`{echo}'")
            if not -4096 <= offset <= 4088:
                raise EncodeError(f"immediate offset out of range -4096 to 4088 at operand 2 "
                                  f"-- `{echo}'")
            scaled = (offset >> 3) & 0x3FF
            return (0xF8200400 | ((mnemonic == "ldrab") << 23) | ((scaled >> 9) << 22)
                    | ((scaled & 0x1FF) << 12) | (writeback << 11) | (base << 5)
                    | _x(parts[0], echo, 1))
        atomic = self._atomic(mnemonic, parts, echo, item)
        if atomic is not None:
            return atomic
        return self._tagging(mnemonic, parts, echo, item)

    @staticmethod
    def _count(parts: list[str], count: int, echo: str) -> None:
        if len(parts) != count or not all(part.strip() for part in parts):
            raise EncodeError(f"operand mismatch -- `{echo}'")

    def _pac(self, mnemonic: str, parts: list[str], echo: str) -> int:
        if mnemonic == "pacga":
            # C6.2 PACGA: Xd, Xn, Xm|SP.
            self._count(parts, 3, echo)
            return (0x9AC03000 | (_x(parts[2], echo, 3, sp=True) << 16)
                    | (_x(parts[1], echo, 2) << 5) | _x(parts[0], echo, 1))
        if mnemonic in _PAC_ONE:
            self._count(parts, 1, echo)
            return 0xDAC103E0 | (_PAC_ONE[mnemonic] << 10) | _x(parts[0], echo, 1)
        self._count(parts, 2, echo)
        return (0xDAC10000 | (_PAC_TWO[mnemonic] << 10) | (_x(parts[1], echo, 2, sp=True) << 5)
                | _x(parts[0], echo, 1))

    def _address(self, text: str, echo: str, item: Item) -> tuple[int, int, bool]:
        """(base register, offset, writeback) of ``[Xn|SP{, #imm}]{!}``."""
        match = _MEMORY.fullmatch(text.strip())
        if match is None:
            raise EncodeError(f"invalid addressing mode -- `{echo}'")
        base = _x(match.group(1), echo, 2, sp=True)
        offset = 0
        if match.group(2):
            offset = self.value(match.group(2).strip().removeprefix("#"), item)
        return base, offset, bool(match.group(3))

    def _base_only(self, text: str, echo: str, item: Item, operand: int) -> int:
        """The Xn|SP of ``[Xn|SP]`` (``[Xn|SP, #0]`` too, as GNU as takes it)."""
        base, offset, writeback = self._address(text, echo, item)
        if offset or writeback:
            raise EncodeError(f"invalid addressing mode at operand {operand} -- `{echo}'")
        return base

    def _atomic(self, mnemonic: str, parts: list[str], echo: str, item: Item) -> int | None:
        """LSE: LD<op>, SWP, ST<op>, CAS, CASP (all orderings, B/H/W/X), or None."""
        load, store = _LSE_LOAD.fullmatch(mnemonic), _LSE_STORE.fullmatch(mnemonic)
        cas, casp = _CAS.fullmatch(mnemonic), _CASP.fullmatch(mnemonic)
        if casp is not None:
            # C6.2 CASP: Ws|Xs, W(s+1)|X(s+1), Wt|Xt, W(t+1)|X(t+1), [Xn|SP]; s, t even.
            self._count(parts, 5, echo)
            registers = [_gpr(part) for part in parts[:4]]
            wide = registers[0][1] if registers[0] is not None else True
            for index, register in enumerate(registers):
                if register is None or register[1] != wide or (
                        index % 2 == 0 and (register[0] % 2 or register[0] == 31)) or (
                        index % 2 == 1 and register[0] != registers[index - 1][0] + 1):
                    raise EncodeError(f"reg pair must start from even reg at operand "
                                      f"{index + 1 - index % 2} -- `{echo}'")
            order = casp.group(1) or ""
            base = self._base_only(parts[4], echo, item, 5)
            return (0x08207C00 | (wide << 30) | (("a" in order) << 22) | (registers[0][0] << 16)
                    | (("l" in order) << 15) | (base << 5) | registers[2][0])
        if load is None and store is None and cas is None:
            return None
        if store is not None:
            operation, order, size = store.group(1), "l" if store.group(2) else "", store.group(3)
            self._count(parts, 2, echo)
            registers = [parts[0], "xzr" if _is_x(parts[0]) else "wzr", parts[1]]
        else:
            self._count(parts, 3, echo)
            registers = list(parts)
            if load is not None:
                operation, order, size = load.group(1) or "swp", load.group(3) or "", load.group(4)
            else:
                assert cas is not None
                operation, order, size = "cas", cas.group(1) or "", cas.group(2)
        source, target = _gpr(registers[0]), _gpr(registers[1])
        if source is None or target is None or source[1] != target[1] or (
                size and source[1]):
            raise EncodeError(f"operand mismatch -- `{echo}'")
        width = {"b": 0, "h": 1}.get(size, 3 if source[1] else 2)
        base = self._base_only(registers[2], echo, item, len(parts))
        acquire, release = "a" in order, "l" in order
        if operation == "cas":
            # C6.2 CAS: L (bit 22) = acquire, o0 (bit 15) = release.
            return (0x08A07C00 | (width << 30) | (acquire << 22) | (source[0] << 16)
                    | (release << 15) | (base << 5) | target[0])
        opcode = (1 << 15) if operation == "swp" else _LSE_OPS[operation] << 12
        return (0x38200000 | (width << 30) | (acquire << 23) | (release << 22)
                | (source[0] << 16) | opcode | (base << 5) | target[0])

    def _tagging(self, mnemonic: str, parts: list[str], echo: str, item: Item) -> int | None:
        """Memory tagging (FEAT_MTE) basics, or None."""
        if mnemonic == "irg":
            # C6.2 IRG: Xd|SP, Xn|SP{, Xm} (Xm defaults to XZR).
            if len(parts) not in (2, 3):
                raise EncodeError(f"operand mismatch -- `{echo}'")
            mask = _x(parts[2], echo, 3) if len(parts) == 3 else 31
            return (0x9AC01000 | (mask << 16) | (_x(parts[1], echo, 2, sp=True) << 5)
                    | _x(parts[0], echo, 1, sp=True))
        if mnemonic == "gmi":
            # C6.2 GMI: Xd, Xn|SP, Xm.
            self._count(parts, 3, echo)
            return (0x9AC01400 | (_x(parts[2], echo, 3) << 16)
                    | (_x(parts[1], echo, 2, sp=True) << 5) | _x(parts[0], echo, 1))
        if mnemonic in ("subp", "subps", "cmpp"):
            # C6.2 SUBP, SUBPS; CMPP is SUBPS XZR, Xn|SP, Xm|SP.
            if mnemonic == "cmpp":
                self._count(parts, 2, echo)
                parts, destination = ["xzr", *parts], 31
            else:
                self._count(parts, 3, echo)
                destination = _x(parts[0], echo, 1)
            return ((0xBAC00000 if mnemonic != "subp" else 0x9AC00000)
                    | (_x(parts[2], echo, 3, sp=True) << 16)
                    | (_x(parts[1], echo, 2, sp=True) << 5) | destination)
        if mnemonic in ("addg", "subg"):
            # C6.2 ADDG, SUBG: Xd|SP, Xn|SP, #uimm6 * 16, #uimm4.
            self._count(parts, 4, echo)
            offset = self.value(parts[2].strip().removeprefix("#"), item)
            tag = self.value(parts[3].strip().removeprefix("#"), item)
            if offset % 16:
                raise EncodeError(f"immediate value must be a multiple of 16 at operand 3 -- "
                                  f"`{echo}'")
            if not 0 <= offset <= 1008:
                raise EncodeError(f"immediate value out of range 0 to 1008 at operand 3 -- "
                                  f"`{echo}'")
            if not 0 <= tag <= 15:
                raise EncodeError(f"immediate value out of range 0 to 15 at operand 4 -- "
                                  f"`{echo}'")
            return ((0x91800000 if mnemonic == "addg" else 0xD1800000) | ((offset >> 4) << 16)
                    | (tag << 10) | (_x(parts[1], echo, 2, sp=True) << 5)
                    | _x(parts[0], echo, 1, sp=True))
        if mnemonic in _TAG_BULK:
            self._count(parts, 2, echo)
            return (_TAG_BULK[mnemonic] | (self._base_only(parts[1], echo, item, 2) << 5)
                    | _x(parts[0], echo, 1))
        if mnemonic in _TAG_STORES or mnemonic == "ldg":
            # C6.2 LDG: Xt, [Xn|SP{, #simm}] (signed offset only).
            if len(parts) not in (2, 3) or (mnemonic == "ldg" and len(parts) != 2):
                raise EncodeError(f"operand mismatch -- `{echo}'")
            base, offset, form = self._indexed(parts, 1, echo, item)
            if offset % 16:
                raise EncodeError(f"immediate value must be a multiple of 16 at operand 2 -- "
                                  f"`{echo}'")
            if not -4096 <= offset <= 4080:
                raise EncodeError(f"immediate offset out of range -4096 to 4080 at operand 2 "
                                  f"-- `{echo}'")
            if mnemonic == "ldg":
                if form != "offset":
                    raise EncodeError(f"invalid addressing mode -- `{echo}'")
                return (0xD9600000 | (((offset >> 4) & 0x1FF) << 12) | (base << 5)
                        | _x(parts[0], echo, 1))
            mode = {"post": 0b01, "offset": 0b10, "pre": 0b11}[form]
            return (_TAG_STORES[mnemonic] | (((offset >> 4) & 0x1FF) << 12) | (mode << 10)
                    | (base << 5) | _x(parts[0], echo, 1, sp=True))
        if mnemonic == "stgp":
            # C6.2 STGP: Xt1, Xt2, [Xn|SP{, #simm7 * 16}]{!} or [Xn|SP], #simm7 * 16.
            if len(parts) not in (3, 4):
                raise EncodeError(f"operand mismatch -- `{echo}'")
            base, offset, form = self._indexed(parts, 2, echo, item)
            opcode = {"post": 0x68800000, "offset": 0x69000000, "pre": 0x69800000}[form]
            if offset % 16 or not -1024 <= offset <= 1008:
                raise EncodeError(f"immediate offset out of range -1024 to 1008 at operand 3 "
                                  f"-- `{echo}'")
            return (opcode | (((offset >> 4) & 0x7F) << 15) | (_x(parts[1], echo, 2) << 10)
                    | (base << 5) | _x(parts[0], echo, 1))
        return None

    def _indexed(self, parts: list[str], at: int, echo: str, item: Item
                 ) -> tuple[int, int, str]:
        """The address at ``parts[at]`` of an MTE load or store, ``[Xn|SP{,
        #imm}]{!}`` or ``[Xn|SP], #imm`` (C6.2 STG, STGP): the base register,
        the offset, and the form: ``offset``, ``pre`` (``!``) or ``post``."""
        base, offset, writeback = self._address(parts[at], echo, item)
        if len(parts) == at + 2:
            if offset or writeback:
                raise EncodeError(f"invalid addressing mode -- `{echo}'")
            return base, self.value(parts[at + 1].strip().removeprefix("#"), item), "post"
        return base, offset, "pre" if writeback else "offset"

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
        echo = echoed(mnemonic, item.operands)
        if self.context.partial:
            raise Undecidable
        value = self.value(expression, item) & _MASK64
        if kind in ("lo12", "lo12_nc"):
            if mnemonic in ("add", "adds", "sub", "subs"):
                return f"#{value & 0xFFF:#x}"
            size = _access_size(mnemonic, parts[0].strip() if parts else "")
            if size is None:
                raise EncodeError(f"relocation `:{kind}:' is not valid with `{mnemonic}' -- "
                                  f"`{echo}'")
            low = value & 0xFFF
            if low % size:
                raise EncodeError("relocation truncated to fit: "
                                  f"R_AARCH64_LDST{8 * size}_ABS_LO12_NC against `{expression}'")
            return f"#{low:#x}"
        group = re.fullmatch(r"abs_g([0-3])(_nc)?", kind)
        if group is not None:
            if mnemonic not in ("movz", "movk", "mov"):
                raise EncodeError(f"relocation `:{kind}:' is not valid with `{mnemonic}' -- "
                                  f"`{echo}'")
            shift = 16 * int(group.group(1))
            if group.group(2) is None and group.group(1) != "3" and value >> (shift + 16):
                raise EncodeError(f"relocation truncated to fit: R_AARCH64_MOVW_UABS_G"
                                  f"{group.group(1)} against `{expression}'")
            return f"#{(value >> shift) & 0xFFFF:#x}, lsl #{shift}"
        raise EncodeError(f"relocation `:{kind}:' is not supported: bootemu links one flat image "
                          f"(no GOT, PLT or TLS) -- `{echo}'")
