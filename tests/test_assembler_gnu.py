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
from emu.asm.assembler import assemble_file, assemble_text
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
