"""bootemu's assembler against GNU as: byte-identical output and identical symbols.

Reference build: ``aarch64-linux-gnu-gcc -c -x assembler-with-cpp`` (the same
preprocessor flags as the front-end) then ``aarch64-linux-gnu-ld`` with a
linker script placing the sections in bootemu's order at the same base, then
``objcopy -O binary`` and ``nm`` (Debian's binutils-aarch64-linux-gnu and
gcc-aarch64-linux-gnu).

Corpora: asm/head.S; fixtures/asm/forms.S (the instruction forms boot code
uses); fixtures/asm/ranges.S and branch_limits.S (PC-relative instructions at
the limits of their ranges).  The forms test also assembles every form with
keystone alone and checks that the forms where keystone alone is wrong are
exactly those listed in KEYSTONE_GAPS, each with what the front-end does.
"""

from __future__ import annotations

import re
import shutil
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest

from emu.asm import assembler
from emu.asm.assembler import AssemblyError, assemble_file, assemble_text
from emu.asm.keystone_runner import encode
from emu.asm.program import Program

ROOT = Path(__file__).resolve().parent.parent
HEAD = ROOT / "asm" / "head.S"
FORMS = ROOT / "fixtures" / "asm" / "forms.S"
RANGES = ROOT / "fixtures" / "asm" / "ranges.S"
BRANCH_LIMITS = ROOT / "fixtures" / "asm" / "branch_limits.S"
XEN_STYLE = ROOT / "fixtures" / "asm" / "xen_style.S"
BASE = 0x4000_0000
TOOLS = ("aarch64-linux-gnu-gcc", "aarch64-linux-gnu-ld", "aarch64-linux-gnu-objcopy",
         "aarch64-linux-gnu-nm")

pytestmark = pytest.mark.skipif(
    any(shutil.which(tool) is None for tool in TOOLS),
    reason="GNU aarch64 toolchain (binutils-aarch64-linux-gnu, gcc-aarch64-linux-gnu) missing",
)


@pytest.fixture(autouse=True)
def isolated_cache(tmp_path_factory: pytest.TempPathFactory,
                   monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    monkeypatch.setenv("BOOTEMU_CACHE_DIR", str(tmp_path_factory.mktemp("cache")))
    assembler.clear_cache()
    yield
    assembler.clear_cache()


def gnu_build(source: Path, program: Program, out: Path,
              defines: dict[str, str] | None = None) -> tuple[bytes, str]:
    """Assemble and link ``source`` with the GNU tools like ``program``; (binary, nm)."""
    flags = [f"-I{directory}" for directory in [source.parent, source.parent / "include"]]
    flags += [f"-D{name}={value}" for name, value in (defines or {}).items()]
    obj, elf, binary = out / "gnu.o", out / "gnu.elf", out / "gnu.bin"
    subprocess.run(["aarch64-linux-gnu-gcc", "-c", "-x", "assembler-with-cpp", "-undef",
                    "-nostdinc", "-D__aarch64__=1", "-D__AARCH64EL__=1", *flags, str(source),
                    "-o", str(obj)], check=True)
    body = "".join(f"  {section.name} : {{ *({section.name}) }}\n"
                   for section in program.sections)
    script = out / "gnu.ld"
    script.write_text(f"SECTIONS {{\n  . = {program.base:#x};\n{body}}}\n")
    subprocess.run(["aarch64-linux-gnu-ld", "-T", str(script), str(obj), "-o", str(elf)],
                   check=True, capture_output=True)
    subprocess.run(["aarch64-linux-gnu-objcopy", "-O", "binary", str(elf), str(binary)],
                   check=True)
    nm = subprocess.run(["aarch64-linux-gnu-nm", str(elf)], check=True, capture_output=True,
                        text=True).stdout
    return binary.read_bytes(), nm


def nm_table(nm: str) -> set[tuple[int | None, str, str]]:
    table: set[tuple[int | None, str, str]] = set()
    for line in nm.splitlines():
        parts = line.split()
        if len(parts) == 3:
            table.add((int(parts[0], 16), parts[1], parts[2]))
        elif len(parts) == 2:
            table.add((None, parts[0], parts[1]))
    return table


def differences(program: Program, gnu: bytes) -> list[str]:
    """Each statement whose bytes differ from GNU's, as 'address file:line text: ours/gnu'."""
    ours = program.image
    found = []
    if len(ours) != len(gnu):
        found.append(f"size: ours {len(ours):#x}, GNU {len(gnu):#x}")
    for (address, location), end, text in zip(program.lines, program.line_ends,
                                              program.line_texts, strict=True):
        start, stop = address - program.base, end - program.base
        if ours[start:stop] != gnu[start:stop]:
            found.append(f"{address:#x} {location} {text!r}: ours {ours[start:stop][:16].hex()} "
                         f"GNU {gnu[start:stop][:16].hex()}")
    if not found and ours != gnu:
        found.append("bytes outside statements (padding, literal pools) differ")
    return found


# --------------------------------------------------------------------------
# asm/head.S


def test_head_bytes_and_symbols_equal_gnu(tmp_path: Path) -> None:
    program = assemble_file(HEAD)
    gnu, nm = gnu_build(HEAD, program, tmp_path)
    assert differences(program, gnu) == []
    assert program.code == gnu  # head.S keeps its page tables in .text: no .bss
    # Every symbol of GNU as's table, with its value and type, and no other.
    assert set(program.nm()) == nm_table(nm)
    assert len(program.nm()) == 27


def test_head_relinked_elsewhere_equals_gnu(tmp_path: Path) -> None:
    defines = {"XEN_VIRT_START": "0x0000010000200000"}
    program = assemble_file(HEAD, defines=defines)
    gnu, nm = gnu_build(HEAD, program, tmp_path, defines)
    assert program.base == 0x0000010000200000
    assert differences(program, gnu) == []
    assert set(program.nm()) == nm_table(nm)


def test_xen_style_source_equals_gnu(tmp_path: Path) -> None:
    program = assemble_file(XEN_STYLE)
    gnu, nm = gnu_build(XEN_STYLE, program, tmp_path)
    assert program.base == 0x8000200000  # from LINK_ADDRESS
    assert differences(program, gnu) == []
    assert set(program.nm()) == nm_table(nm)
    assert [s.name for s in program.sections] == [".text.header", ".text", ".rodata.str",
                                                  ".data", ".bss"]
    # .size as GNU as records it (nm -S).
    sized = subprocess.run(["aarch64-linux-gnu-nm", "-S", str(tmp_path / "gnu.elf")],
                           check=True, capture_output=True, text=True).stdout
    gnu_sizes = {parts[3]: int(parts[1], 16) for line in sized.splitlines()
                 if len(parts := line.split()) == 4}
    assert program.sizes == gnu_sizes == {"start": 0x54, "puts": 0x10, "start_c": 8}
    assert program.symbols["_end"] - program.symbols["boot_stack"] == 0x1000


# --------------------------------------------------------------------------
# The forms corpus


def form_lines(program: Program) -> list[tuple[int, int, int, str]]:
    """(address, end, line, text) of each form of forms.S (between its markers)."""
    text = FORMS.read_text().splitlines()
    begin = next(i for i, line in enumerate(text, 1) if line.startswith("// FORMS-BEGIN"))
    end = next(i for i, line in enumerate(text, 1) if line.startswith("// FORMS-END"))
    return [(address, stop, location.line, statement)
            for (address, location), stop, statement in zip(
                program.lines, program.line_ends, program.line_texts, strict=True)
            if begin < location.line < end]


def test_forms_corpus_equals_gnu(tmp_path: Path) -> None:
    program = assemble_file(FORMS, base=BASE)
    forms = form_lines(program)
    assert len(forms) >= 300, len(forms)
    gnu, nm = gnu_build(FORMS, program, tmp_path)
    assert differences(program, gnu) == []
    assert set(program.nm()) == nm_table(nm)
    # Several sections, laid out like a linker script: header first, then by kind.
    assert [s.name for s in program.sections] == [".text.header", ".text", ".rodata", ".data",
                                                  ".bss"]
    assert program.sizes == {"boot_data": 20}
    assert program.symbols["_start"] == BASE


# What keystone, given a form alone (with its labels placed at the right
# addresses), gets wrong compared with GNU as, and what the front-end does
# instead.  Each entry is (regular expression over the form's text, what the
# front-end does).  test_keystone_gaps_are_exactly_these checks that every
# form keystone alone gets wrong matches one entry and that every entry
# matches at least one such form: none is hidden, none is stale.
KEYSTONE_GAPS: list[tuple[str, str]] = [
    (r"mrs x6, id_aa64mmfr2_el1",
     "keystone 0.9.2 does not know this register name: the front-end encodes MRS/MSR "
     "from emu.arch.sysregs (checked against GNU as)"),
    (r"msr pan, #1",
     "keystone does not know the PAN PSTATE field: encoded by the front-end"),
    (r"(csdb|ssbb|pssbb|sb|esb|bti c|paciasp|autiasp|udf #0)",
     "unknown to keystone (later architecture versions, or udf): the front-end encodes "
     "these hints and barriers from a table"),
    (r"dc cvap, x8",
     "keystone emits no bytes at all, silently: the front-end encodes the SYS operation "
     "from emu.arch.sysregs"),
    (r"adrp x\d+, \w+( \+ 8)?",
     "keystone computes adrp from page 0, not from the PC's page, at a non-zero base: "
     "the front-end encodes adrp itself"),
    (r".*:lo12:.*",
     "keystone aborts (LLVM ERROR: invalid imm12 fixup value): the front-end resolves "
     ":lo12: to the low 12 bits, checked for the access size as GNU ld does"),
    (r"mov[zk] x1[78], #:abs_g\d(_nc)?:.*",
     "keystone aborts or rejects :abs_gN: (no MOVZ/MOVK fixups): the front-end resolves it"),
    (r"ldr [xw]\d, =.*",
     "keystone turns a small literal into mov, does not share equal entries and places "
     "its pool elsewhere: the front-end builds GNU-style literal pools"),
    (r"(b|bl|b\.\w\w|beq|cbn?z [xw]\d+,|tbn?z [xw]\d+, #\d+,) 1[bf]",
     "keystone has no numeric local labels: the front-end resolves 1b/1f (GNU semantics)"),
    (r"tst x0, #\(1 << 2 \+ 4\)",
     "keystone evaluates 1 << 2 + 4 with C precedence (64), GNU as with its own (8): the "
     "front-end evaluates every expression the GNU way"),
]


def keystone_alone(statement: str, address: int, symbols: dict[str, int]) -> bytes | None:
    """What keystone makes of one statement at ``address``, its labels placed around it."""
    used = {name: value for name, value in symbols.items()
            if re.search(rf"(?<![\w.$]){re.escape(name)}(?![\w.$])", statement)}
    points = sorted([(address, "")] + [(value, name) for name, value in used.items()],
                    key=lambda point: (point[0], point[1] == ""))
    start = cursor = points[0][0]
    lines = []
    for where, name in points:
        if where > cursor:
            lines.append(f".space {where - cursor}")
            cursor = where
        if name:
            lines.append(f"{name}:")
        else:
            lines.append(statement)
            cursor += 4
    source = "\n".join(lines)
    result = encode([source], base=start)[source]
    if result.code is None:
        return None
    return result.code[address - start:address - start + 4]


def test_keystone_gaps_are_exactly_these(tmp_path: Path) -> None:
    program = assemble_file(FORMS, base=BASE)
    gnu, _ = gnu_build(FORMS, program, tmp_path)
    wrong: list[str] = []
    for address, end, _line, statement in form_lines(program):
        expected = gnu[address - program.base:end - program.base]
        if keystone_alone(statement, address, program.symbols) != expected:
            wrong.append(statement)
    unexplained = [form for form in wrong
                   if not any(re.fullmatch(pattern, form) for pattern, _ in KEYSTONE_GAPS)]
    stale = [pattern for pattern, _ in KEYSTONE_GAPS
             if not any(re.fullmatch(pattern, form) for form in wrong)]
    assert unexplained == [], "forms keystone alone gets wrong, not in KEYSTONE_GAPS"
    assert stale == [], "KEYSTONE_GAPS entries no form needs any more"
    assert len(wrong) == 64  # of 316 forms; the front-end matches GNU on all of them


@pytest.mark.parametrize("source", [RANGES, BRANCH_LIMITS], ids=["ranges", "branch-limits"])
def test_branches_at_their_range_limits_equal_gnu(source: Path, tmp_path: Path) -> None:
    program = assemble_file(source, base=BASE, cache=False)
    gnu, nm = gnu_build(source, program, tmp_path)
    assert differences(program, gnu) == []
    assert set(program.nm()) == nm_table(nm)


# --------------------------------------------------------------------------
# Smaller GNU behaviours


GNU_CASES = {
    "duplicate-literals": "_start:\n  ldr x0, =_start\n  ldr x1, =_start\n  .align 3\n  .ltorg\n",
    "pool-padding-is-zeros": "_start:\n  ldr x0, =0x123456789\n  .ltorg\n",
    "pools-by-size": ("_start:\n ldr x0, =t\n ldr x1, =t+0\n ldr x3, =5\n ldr w4, =5\n"
                      " ldr x5, =5\n ldr w6, =t\nt: nop\n"),
    "numeric-labels": ("_start:\n1:  nop\n    b 1b\n    b 1f\n    cbz x0, 2f\n1:  b 1b\n"
                       "2:  b 1b\n    b.ne 1b\n1:  b 1b\n    b 3f\n3:\n"),
    "numeric-labels-in-macros": (".macro spin reg\n1:  cbz \\reg, 1f\n    b 1b\n1:\n.endm\n"
                                 "_start:\n    spin x0\n    spin x1\n"),
    "macro-features": (".macro m a, b=7, c:vararg\n  mov \\a, #\\b\n  .ifnb \\c\n  \\c\n"
                       "  .endif\n.endm\n_start:\n  m x0\n  m x1, 3, add x2, x2, #1\n"
                       "  m b=9, a=x3\n.macro n\n  .exitm\n  nop\n.endm\n  n\n"),
    "rept-irp-irpc": ("_start:\n.rept 3\n nop\n.endr\n.irp r, x0, x1, x2\n mov \\r, #1\n"
                      ".endr\n.irpc c, 123\n mov x0, #\\c\n.endr\n"),
    "conditionals": (".set V, 3\n_start:\n.if V == 3\n nop\n.elseif V == 4\n wfe\n.else\n wfi\n"
                     ".endif\n.ifdef V\n sev\n.endif\n.ifndef W\n yield\n.endif\n"
                     ".ifc abc, abc\n isb\n.endif\n"),
    "set-redefinition": "_start:\n.set i, 0\n.rept 4\n.word i\n.set i, i + 1\n.endr\n",
    "expression-precedence": ("_start:\n.quad 1 << 2 + 3, 6 & 3 + 1, 2 == 1 + 1, 3 ! 1, -7 / 2,"
                              " -7 % 2, ~0 >> 1, 1 && 2, 0 || 3, 5 > 3\n"),
    "data-and-strings": ('_start:\n.byte 1, 2\n.hword 3\n.asciz "a\\tb\\n\\101"\n.balign 4\n'
                         '.quad _start + 8, . - _start\n.fill 3, 2, 0x1234\n.zero 3\n'
                         ".p2align 3, 0xaa\n.ascii \"x\"\n.balign 8, 0xcc, 4\n.word 7\n"),
    "code-alignment-nops": "_start:\n nop\n.byte 1\n.align 4\n nop\n.byte 1\n nop\n",
    "sections-and-pools": ('_start:\n  ldr x0, =data_word\n  adrp x1, data_word\n'
                           '  ldr w2, [x1, :lo12:data_word]\n  .section .rodata, "a"\n'
                           'ro: .quad 1\n  .data\ndata_word: .word 5\n  ldr x3, =0x12345678\n'
                           '  .text\n  b ro\n  .pushsection .data\n  .quad ro\n  .popsection\n'
                           '  .previous\n  .quad 2\n  .bss\n  .space 32\n'),
    "equates-forward": ("_start:\n  .word later_value\n  .equ later_value, 42\n"
                        "  mov x0, #later_value\n"),
    "org-and-space": "_start:\n nop\n .org 0x40, 0xff\n nop\n .skip 8, 0x11\n",
    "macro-counter-and-aliases": (".macro lbl\nl\\@: .word \\@\n.endm\n_start:\n lbl\n lbl\n"
                                  "base .req x20\n add base, base, #1\n.unreq base\n"
                                  ".purgem lbl\n.macro lbl\n nop\n.endm\n lbl\n"),
    "include-and-incbin": ('_start:\n .include "part.inc"\n .incbin "blob.bin", 1, 3\n'
                           " .balign 4\n nop\n"),
    "bindings-and-sizes": (".globl _start, helper\n.weak maybe\n_start:\n bl helper\n"
                           ".size _start, . - _start\n.type helper, %function\nhelper:\n ret\n"
                           ".size helper, . - helper\nmaybe: nop\n.equ K, 0x40\n.set R, helper\n"),
    "label-difference-conditionals": ("_start:\n nop\n nop\nmid:\n.if mid - _start == 8\n"
                                      " wfe\n.endif\n.rept (mid - _start) / 4\n sev\n.endr\n"
                                      ".ifeqs \"a\", \"a\"\n isb\n.endif\n"),
}

# Extra files some cases read (.include, .incbin), written next to the source.
GNU_CASE_FILES = {
    "include-and-incbin": {"part.inc": " mov x0, #1\n .word 0x12345678\n",
                           "blob.bin": "ABCDEFG"},
}


@pytest.mark.parametrize("case", sorted(GNU_CASES))
def test_gnu_behaviours(case: str, tmp_path: Path) -> None:
    source = tmp_path / f"{case}.S"
    source.write_text(GNU_CASES[case])
    for name, content in GNU_CASE_FILES.get(case, {}).items():
        (tmp_path / name).write_text(content)
    program = assemble_text(GNU_CASES[case], filename=str(source), base=BASE)
    gnu, nm = gnu_build(source, program, tmp_path)
    assert differences(program, gnu) == []
    assert set(program.nm()) == nm_table(nm)


# --------------------------------------------------------------------------
# System registers, SYS operations and Armv8.1+ instructions (issue 15)

GNU_MARCH = "armv9.3-a+memtag+rng+sme+ssbs+predres+profile+ls64+pauth+lse+lor+ras+sb"

# Forms boot code writes, by hand; every register and SYS operation of
# emu.arch.sysregs and emu.arch.sysreg_table is added by system_forms().
SYSTEM_FORMS = """
mrs x0, zcr_el1
msr zcr_el2, x1
msr zcr_el12, x2
mrs x3, hcrx_el2
msr vncr_el2, x4
mrs x5, rndr
mrs x6, rndrrs
mrs x7, ssbs
msr ssbs, x8
msr ssbs, #1
msr pan, x9
mrs x10, pan
msr pan, #0
msr dit, #1
msr tco, #0
mrs x11, cntpctss_el0
mrs x12, cntvctss_el0
mrs x13, id_aa64zfr0_el1
mrs x14, id_aa64smfr0_el1
mrs x15, id_aa64isar2_el1
mrs x16, id_aa64mmfr2_el1
msr apiakeylo_el1, x17
msr apiakeyhi_el1, x18
mrs x19, accdata_el1
msr cntpoff_el2, x20
mrs x21, s3_0_c15_c2_0
msr s3_7_c15_c15_7, x22
mrs x23, S3_4_C1_C2_2
mrs x24, s2_0_c0_c0_4
mrs xzr, s3_3_c4_c2_6
msr sctlr_el1, xzr
tlbi vmalle1os
tlbi alle2os
tlbi alle1os
tlbi vae2os, x0
tlbi vale1os, x1
tlbi rvae1, x0
tlbi rvale1, x2
tlbi rvae2, x3
tlbi rvale2, x4
tlbi rvae1is, x5
tlbi rvae1os, x6
tlbi ripas2e1, x7
tlbi ripas2le1is, x8
tlbi paallos
tlbi rpaos, x9
tlbi vmalle1
tlbi vae1is, x10
dc cvadp, x0
dc cvap, x1
dc cgvac, x2
dc gva, x3
dc gzva, x4
dc cigdvac, x5
at s1e1rp, x6
at s1e1wp, x7
cfp rctx, x8
dvp rctx, x9
cpp rctx, x10
ic ivau, x11
pacia x0, x1
pacia x2, sp
pacib x3, x4
pacda x5, x6
pacdb x7, x8
autia x0, x1
autib x9, sp
autda x10, x11
autdb x12, x13
paciza x0
pacizb x1
pacdza x2
pacdzb x3
autiza x4
autizb x5
autdza x6
autdzb x7
xpaci x0
xpacd x30
xpaclri
pacga x0, x1, x2
pacga x3, x4, sp
paciasp
autiasp
pacibsp
autibsp
paciaz
autibz
pacia1716
autib1716
retaa
retab
braa x0, x1
brab x2, sp
blraa x0, x1
blrab x3, x4
braaz x5
brabz x6
blraaz x7
blrabz x30
eretaa
eretab
ldraa x0, [x1]
ldrab x2, [sp]
ldraa x3, [x4, #8]
ldraa x5, [x6, #-4096]
ldrab x7, [x8, #4088]
ldraa x9, [x10, #-8]!
ldrab x11, [x12, #16]!
ldadd x0, x1, [x2]
ldadd w0, w1, [x2]
ldadda x3, x4, [sp]
ldaddal x0, x1, [x2]
ldaddl w5, w6, [x7]
ldaddb w0, w1, [x2]
ldaddh w0, w1, [x2]
ldaddalb w3, w4, [x5]
ldaddlh w6, w7, [x8]
ldclr x0, x1, [x2]
ldclral w3, w4, [x5]
ldeor x6, x7, [x8]
ldset x0, x1, [x2]
ldsetal x3, x4, [x5]
ldsmax x6, x7, [x8]
ldsmin w9, w10, [x11]
ldumax x12, x13, [x14]
lduminalh w15, w16, [x17]
swp x0, x1, [x2]
swpal x0, x1, [x2]
swpb w3, w4, [x5]
swplh w6, w7, [x8]
swpa w9, w10, [x11]
cas x0, x1, [x2]
casa w3, w4, [x5]
casal x0, x1, [x2]
casl x6, x7, [sp]
casb w8, w9, [x10]
casalh w11, w12, [x13]
casp x0, x1, x2, x3, [x4]
caspal x6, x7, x8, x9, [sp]
caspa w10, w11, w12, w13, [x14]
caspl w16, w17, w18, w19, [x20]
stadd x0, [x2]
stadd w1, [x3]
staddl x4, [x5]
staddb w6, [x7]
staddlh w8, [x9]
stclr x10, [x11]
steor w12, [x13]
stset x14, [x15]
stsetl w16, [x17]
stsmax x18, [x19]
stumin w20, [sp]
ldadd x0, xzr, [x2]
ldadd x0, x1, [x2, #0]
bti
bti c
bti j
bti jc
irg x0, x1
irg sp, sp, x2
addg x0, x1, #16, #2
addg sp, sp, #1008, #15
subg x3, x4, #0, #0
gmi x5, x6, x7
subp x8, x9, x10
subps x11, sp, x12
cmpp x13, x14
stg x0, [x1]
stg sp, [x1, #16]
stg x2, [x3, #-4096]
stg x4, [x5, #4080]!
stg x6, [x7], #32
stzg x8, [x9]
st2g x10, [x11, #-16]!
stz2g x12, [x13], #-32
ldg x0, [x1]
ldg x2, [x3, #-16]
ldgm x4, [x5]
stgm x6, [x7]
stzgm x8, [sp]
stgp x0, x1, [x2]
stgp x3, x4, [x5, #1008]
stgp x6, x7, [x8, #-1024]!
stgp x9, x10, [sp], #16
"""


def system_forms() -> list[str]:
    """SYSTEM_FORMS, then MRS/MSR of every named register, then every SYS operation."""
    from emu.arch.sysreg_table import EXTRA_SYS_OPS, EXTRA_SYSREGS, SYS_OP_NO_REGISTER
    from emu.arch.sysregs import SYS_OPS, SYSREGS

    forms = [line.strip() for line in SYSTEM_FORMS.splitlines() if line.strip()]
    registers = [(name, "w" if name == "OSLAR_EL1" else "r") for name in SYSREGS.values()]
    registers += [(name, access) for name, _encoding, access in EXTRA_SYSREGS]
    for name, access in registers:
        if "r" in access:
            forms.append(f"mrs x3, {name.lower()}")
        if "w" in access and name != "OSLAR_EL1":
            forms.append(f"msr {name.lower()}, x4")
    operations = list(SYS_OPS.values()) + [name for name, _encoding in EXTRA_SYS_OPS]
    forms += [name.lower() + ("" if name in SYS_OP_NO_REGISTER else ", x5")
              for name in operations]
    return list(dict.fromkeys(forms))  # hand-written forms may repeat generated ones


def gnu_words(statements: list[str], out: Path) -> list[bytes]:
    """GNU as's 4 bytes for each statement (one run; its warnings are errors)."""
    from elftools.elf.elffile import ELFFile

    source, obj = out / "system.s", out / "system.o"
    source.write_text("\n".join(statements) + "\n")
    subprocess.run(["aarch64-linux-gnu-as", f"-march={GNU_MARCH}", "--fatal-warnings",
                    str(source), "-o", str(obj)], check=True, capture_output=True)
    with obj.open("rb") as handle:
        text = ELFFile(handle).get_section_by_name(".text").data()
    assert len(text) == 4 * len(statements)
    return [text[index:index + 4] for index in range(0, len(text), 4)]


def bootemu_words(statements: list[str], out: Path) -> list[bytes | str]:
    """bootemu's 4 bytes for each statement, or its message where it refuses one."""
    try:
        program = assemble_text("\n".join(statements) + "\n", filename=str(out / "system.S"),
                                base=BASE, cache=False)
    except AssemblyError:
        pass
    else:
        if len(program.image) == 4 * len(statements):
            return [program.image[index:index + 4]
                    for index in range(0, len(program.image), 4)]
    words: list[bytes | str] = []
    for statement in statements:
        try:
            words.append(assemble_text(statement + "\n", filename=str(out / "one.S"),
                                       base=BASE, cache=False).image)
        except AssemblyError as error:
            words.append(f"refused: {error.message}")
    return words


def test_system_forms_equal_gnu(tmp_path: Path) -> None:
    statements = system_forms()
    assert len(statements) >= 1000, len(statements)
    gnu = gnu_words(statements, tmp_path)
    ours = bootemu_words(statements, tmp_path)
    mismatches = [f"{statement}: ours {word if isinstance(word, str) else word.hex()} "
                  f"GNU {expected.hex()}"
                  for statement, word, expected in zip(statements, ours, gnu, strict=True)
                  if word != expected]
    assert mismatches == []
