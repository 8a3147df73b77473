"""Hostile-input fuzzer (issue 15): random sources, images, option values,
random code and corrupted page tables, each run as ``python -m emu.cli ...``
in a child with an address-space limit and a wall-clock timeout.

Every case is checked against the project's promise for bad input:

* no ``Traceback`` on stderr;
* exit status 0, 1 or 2 (and 124 when the case passes ``--timeout``);
* no hang: the child ends before the wall-clock timeout;
* peak RSS below 1 GiB (the children's RLIMIT_AS is 2 GiB, see MEMORY_LIMIT);
* the emulator starts (no "Could not allocate" from Unicorn);
* for exit status 2: exactly one ``bootemu: error:`` line on stderr naming a
  file or option of the case, or click's usage error (``Usage:`` and ``Try``
  preamble, then one ``Error:`` line naming the option or argument).

Usage:
    python bench/fuzz_inputs.py --cases 1200 --seed 1 --jobs 2 --out bench/FUZZ.md

Failing cases are listed (command and first stderr lines) and their inputs
saved under --save DIR (one directory per case with a ``cmd.sh`` that
reproduces it from the repository root).

The generator functions (``make_context``, ``generate_cases``, ``run_case``,
``violations``) are imported by tests/test_fuzz_inputs.py, the bounded CI
version.
"""

from __future__ import annotations

import argparse
import contextlib
import gzip
import json
import os
import random
import re
import resource
import shlex
import shutil
import signal
import struct
import subprocess
import sys
import tempfile
import threading
import time
import zlib
from collections.abc import Callable, Iterable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
HEAD_S = REPO / "asm" / "head.S"
INCLUDE = REPO / "asm" / "include"
# Peak RSS must stay under RSS_LIMIT.  The children's address space is capped
# at MEMORY_LIMIT, 2 GiB as in tests/test_hostile_input.py: under 1 GiB no run
# starts at all, since Unicorn reserves a 1 GiB translation buffer ("Could not
# allocate dynamic translator buffer", exit status 1); --memory-limit 1024
# shows that, and known bug 1 (every image read allocates 1 GiB).
RSS_LIMIT = 1 << 30
MEMORY_LIMIT = 2 << 30
WALL_TIMEOUT = 60.0
CATEGORIES = ("sources", "images", "options", "random-code", "page-tables")
IMAGE_MAGIC = 0x644D5241
NOP = 0xD503201F

# --------------------------------------------------------------------------
# Cases and results


@dataclass
class Case:
    """One command line.  ``args`` (and ``files``) may use ``{d}`` for the
    case's directory, where ``files`` are written before the run."""

    category: str
    kind: str
    args: list[str]
    files: dict[str, bytes] = field(default_factory=dict)
    fifos: list[str] = field(default_factory=list)
    names: list[str] = field(default_factory=list)  # what an error line may name

    def argv(self, directory: Path) -> list[str]:
        return [arg.replace("{d}", str(directory)) for arg in self.args]

    def allows_timeout(self) -> bool:
        return "--timeout" in self.args


@dataclass
class Result:
    case: Case
    index: int
    returncode: int | None
    stderr: str
    seconds: float
    max_rss_kib: int
    hung: bool
    directory: Path
    saved: Path | None = None  # where save_failures copied the inputs


@dataclass
class Context:
    """Inputs derived once from the repository: head.S assembled."""

    work: Path
    head_text: str
    elf: bytes
    raw: bytes
    symbols: dict[str, int]
    base: int
    dtb: bytes
    elf_path: Path
    raw_path: Path
    bomb: Path | None = None


def make_context(work: Path) -> Context:
    """Assemble head.S into ``work`` (ELF, flat binary, symbols, a device tree)."""
    work.mkdir(parents=True, exist_ok=True)
    elf_path, raw_path = work / "head.elf", work / "head.bin"
    done = subprocess.run([sys.executable, "-m", "emu.cli", "asm", str(HEAD_S), "--elf",
                           str(elf_path), "-o", str(raw_path), "--json"],
                          capture_output=True, text=True, check=True, cwd=REPO)
    listing = json.loads(done.stdout)
    symbols = {s["name"]: int(s["value"]) for s in listing["symbols"]}
    from emu.board.fdt import boot_tree, encode  # the same tree bootemu passes in x0

    dtb = encode(boot_tree(ram_base=0x4000_0000, ram_size=128 << 20, bootargs="fuzz",
                           uart_base=0x900_0000))
    return Context(work=work, head_text=HEAD_S.read_text(), elf=elf_path.read_bytes(),
                   raw=raw_path.read_bytes(), symbols=symbols, base=int(listing["base"]),
                   dtb=dtb, elf_path=elf_path, raw_path=raw_path)


def gzip_bomb(context: Context, size: int = 1536 << 20) -> Path:
    """A gzip file that inflates to ``size`` zero bytes (about 1.5 MB), made once."""
    if context.bomb is None:
        path = context.work / "bomb.gz"
        compressor = zlib.compressobj(9, zlib.DEFLATED, 31)
        chunk = bytes(1 << 24)
        with path.open("wb") as stream:
            for _ in range(size // len(chunk)):
                stream.write(compressor.compress(chunk))
            stream.write(compressor.flush())
        context.bomb = path
    return context.bomb


# --------------------------------------------------------------------------
# Building blocks

HUGE_NUMBERS = ["0x10000000000000000", "18446744073709551616", "-9223372036854775809",
                "9" * 400, "0x" + "f" * 300, "0b" + "1" * 100, "1e400", "0x", "0b2", "08",
                "-0", "0xffffffffffffffff", "-1", "1<<64", "(1<<63)*2", "0/0", "1%0"]
HOSTILE_TOKENS = ["", "(", ")", ",", "#", "\\", "\"", "'", "[", "]", "!", "{", "}", "@",
                  ":lo12:", "=", "==", "<<", "x31", "sp", "xzr", "w99", "x-1", "#-",
                  ".", "..", "\\@", "\\()", "`", "$", "\t", "\x7f", "\u00e9", "\u202e"]


def hostile_number(rng: random.Random) -> str:
    if rng.random() < 0.5:
        return rng.choice(HUGE_NUMBERS)
    return str(rng.choice([0, 1, 3, 4095, 4096, 1 << 31, 1 << 32, (1 << 63) - 1, 1 << 63,
                           (1 << 64) - 1, 1 << 64, 1 << 100, -(1 << 63), -(1 << 64)]))


def deep_parens(rng: random.Random) -> str:
    depth = rng.choice([10, 100, 999, 5000, 50_000])
    kind = rng.randrange(4)
    if kind == 0:
        return "(" * depth + "1" + ")" * depth
    if kind == 1:
        return "(" * depth + "1"  # unbalanced
    if kind == 2:
        return "-~" * (depth // 2) + "1"
    return "1" + "+1" * depth


def hostile_directive(rng: random.Random, name: str) -> str:
    """A line or a few with a directive and a hostile argument (``name`` is the
    source file's own name, for self-inclusion)."""
    big = rng.choice(["0x10000000000000000", "0xffffffffffffffff", "1<<40", "0x7fffffff",
                      "-1", "4096*4096*64", "99999999999"])
    choices: list[Callable[[], str]] = [
        lambda: f".balign {big}",
        lambda: f".balign 8, {big}",
        lambda: f".p2align {rng.choice(['64', '63', '-1', '200', '30'])}",
        lambda: f".align {rng.choice(['64', '-1', '100', '0x20'])}",
        lambda: f".skip {big}",
        lambda: f".space {big}, 0xff",
        lambda: f".fill {big}, 8, 0",
        lambda: f".fill 1, {rng.choice(['-1', '9', '1000', big])}, 1",
        lambda: f".org {big}",
        lambda: ".org 0\n.org 0",
        lambda: f".rept {big}\nnop\n.endr",
        lambda: ".rept 1000\n.rept 1000\n.rept 1000\nnop\n.endr\n.endr\n.endr",
        lambda: ".rept 2000\n.rept 2000\nnop\n.endr\n.endr",
        lambda: ".rept 3\nnop",  # no .endr
        lambda: "nop; " * rng.choice([1000, 50_000]),  # one long line of statements
        lambda: "".join(f"l{i}:\n" for i in range(rng.choice([1000, 100_000]))),
        lambda: ".quad " + ", ".join(["0x1234"] * rng.choice([1000, 100_000])),
        lambda: "x" * rng.choice([10_000, 1_000_000]),  # one long junk line
        lambda: ".endr\n.endm\n.endif\n.else",
        lambda: '.incbin "{}"'.format(rng.choice(["/dev/zero", "/dev/urandom", "/proc/self/mem",
                                             "/nonexistent", "/", name, "/etc/passwd"])),
        lambda: f".incbin \"{name}\", {big}, {big}",
        lambda: f".incbin \"{name}\", -1, -1",
        lambda: f".include \"{name}\"",
        lambda: '.include "{}"'.format(rng.choice(["/dev/zero", "/", "/nonexistent", "", "/proc"])),
        lambda: f"#include \"{name}\"",
        lambda: "#include __FILE__",
        lambda: ".macro m\nm\n.endm\nm",
        lambda: ".macro m a\nm \\a\\a\\a\\a\n.endm\nm x",
        lambda: ".macro m a:vararg\nm \\a \\a\n.endm\nm x",
        lambda: ".macro m\n.endm\n.macro m\n.endm",
        lambda: ".macro\n.endm",
        lambda: ".irp r, " + ",".join(["x0"] * 2000) + "\nmov \\r, #1\n.endr",
        lambda: ".irpc c, " + "0123456789" * 200 + "\nnop\n.endr",
        lambda: "".join(f"#define D{i} D{i + 1} D{i + 1}\n" for i in range(40)) + "D0",
        lambda: "#define A A A\nA",
        lambda: "#define A B\n#define B A\nA",
        lambda: "#define F(x) F(x) F(x)\nF(1)",
        lambda: "#if " + "(" * 5000 + "1" + ")" * 5000 + "\nnop\n#endif",
        lambda: "#if\n#endif",
        lambda: "#error " + "x" * 1000,
        lambda: "".join(f".equ e{i}, e{i + 1}+1\n" for i in range(rng.choice([50, 500, 5000])))
        + ".equ e_last, 0\n.quad e0",
        lambda: ".equ a, b\n.equ b, a\n.quad a",
        lambda: ".set a, a+1\n.quad a",
        lambda: ".equ a, 1\n.equ a, 2\n.equ a, a*a*a*a*a*a*a*a*a*a*a*a*a*a",
        lambda: "".join(".if 1\n" for _ in range(rng.choice([100, 2000]))) + "nop",
        lambda: '.error "{}"'.format(rng.choice(["a\\nb", "x" * 5000, "\\x00", ""])),
        lambda: f".print \"{'y' * rng.choice([10, 100000])}\"",
        lambda: f".string \"{'z' * rng.choice([10, 200000])}",
        lambda: f".ascii \"\\{rng.choice(['x', '777', 'u', '0'])}\"",
        lambda: ".section " + rng.choice(["", ".bss", '.text.x,"axw"', '""', "." * 300]),
        lambda: ".data\n.quad 1\n.bss\n.quad 2\n.text",
        lambda: f".quad {deep_parens(rng)}",
        lambda: f".word {hostile_number(rng)}",
        lambda: f".byte {hostile_number(rng)}",
        lambda: f".inst {hostile_number(rng)}",
        lambda: f"ldr x0, ={hostile_number(rng)}",
        lambda: "".join(f"ldr x0, ={i}\n" for i in range(rng.choice([100, 5000]))) + ".ltorg",
        lambda: f"b {rng.choice(['1f', '1b', '99999999999999999999f', '.+0x10000000', '.-1'])}",
        lambda: f"{rng.choice(['1', '0', '123456789012345678901234567890'])}: nop",
        lambda: "label:\nlabel:",
        lambda: f".global {'g' * rng.choice([1, 100000])}",
        lambda: f".type x, {rng.choice(['%function', '@object', '%bogus', ''])}",
        lambda: f".size x, {hostile_number(rng)}",
        lambda: f".cfi_{rng.choice(['startproc', 'endproc', 'bogus'])}",
        lambda: f".{rng.choice(['bogus', 'arch armv9', 'cpu x', 'ifdef', 'endfunc', 'purgem'])}",
    ]
    return rng.choice(choices)()


REGISTERS = [f"x{i}" for i in range(31)] + [f"w{i}" for i in range(31)] + ["sp", "xzr", "wzr"]
MNEMONICS = ["mov", "add", "sub", "orr", "and", "eor", "lsl", "lsr", "ubfx", "bfi", "ldr",
             "str", "ldp", "stp", "adr", "adrp", "b", "bl", "cbz", "tbz", "msr", "mrs", "tlbi",
             "dc", "ic", "dsb", "isb", "eret", "hvc", "smc", "svc", "movk", "movz", "cmp", "ret",
             "br", "blr", "nop", "wfi", "at", "sys", "udf", "hlt", "brk"]
SYSREGS = ["sctlr_el2", "ttbr0_el2", "tcr_el2", "mair_el2", "vbar_el2", "hcr_el2", "CurrentEL",
           "daif", "spsr_el2", "elr_el2", "s3_4_c15_c2_0", "s3_7_c15_c15_7", "ttbr1_el1",
           "bogus_el9"]


def random_operand(rng: random.Random) -> str:
    kind = rng.randrange(8)
    if kind < 3:
        return rng.choice(REGISTERS)
    if kind == 3:
        return "#" + hostile_number(rng) if rng.random() < 0.5 else f"#{rng.randrange(4096)}"
    if kind == 4:
        return f"[{rng.choice(REGISTERS)}, #{rng.randrange(-512, 4096)}]"
    if kind == 5:
        return rng.choice(SYSREGS)
    if kind == 6:
        return rng.choice(["1f", "1b", "label", "_start", ".", "=label", "=0x12345678"])
    return rng.choice(HOSTILE_TOKENS)


def random_statement(rng: random.Random, name: str) -> str:
    kind = rng.randrange(10)
    if kind < 6:
        ops = ", ".join(random_operand(rng) for _ in range(rng.randrange(5)))
        return f"{rng.choice(MNEMONICS)} {ops}"
    if kind < 8:
        return hostile_directive(rng, name)
    if kind == 8:
        return rng.choice(["label:", "1:", "label: nop", f"{rng.choice(HOSTILE_TOKENS)}:"])
    return "".join(chr(rng.randrange(1, 0x250)) for _ in range(rng.randrange(1, 40)))


# --------------------------------------------------------------------------
# Category: sources


def mutate_source(rng: random.Random, text: str, name: str) -> str:
    lines = text.splitlines()
    for _ in range(rng.randint(1, 5)):
        if not lines:
            lines = ["nop"]
        i = rng.randrange(len(lines))
        op = rng.randrange(9)
        if op == 0:
            del lines[i]
        elif op == 1:
            lines.insert(i, lines[i])
        elif op == 2:
            j = rng.randrange(len(lines))
            lines[i], lines[j] = lines[j], lines[i]
        elif op == 3:  # corrupt a token
            tokens = lines[i].split()
            if tokens:
                k = rng.randrange(len(tokens))
                tokens[k] = rng.choice([rng.choice(HOSTILE_TOKENS), hostile_number(rng),
                                        tokens[k][::-1], tokens[k] * 3, tokens[k][:-1]])
                lines[i] = " ".join(tokens)
        elif op == 4:  # random bytes (decoded as Latin-1: control characters included)
            junk = bytes(rng.randrange(256) for _ in range(rng.randrange(1, 64)))
            lines.insert(i, junk.decode("latin-1").replace("\n", " ").replace("\r", " "))
        elif op == 5:
            lines[i] = lines[i].replace("#", "#" + hostile_number(rng) + "+", 1)
        elif op == 6:
            lines.insert(i, f".quad {deep_parens(rng)}")
        elif op == 7:
            lines.insert(i, hostile_directive(rng, name))
        else:
            lines.insert(i, random_statement(rng, name))
    return "\n".join(lines) + rng.choice(["\n", ""])


def source_case(rng: random.Random, context: Context) -> Case:
    name = "{d}/fuzz.S"  # for .include and .incbin of itself
    roll = rng.random()
    if roll < 0.55:
        text, kind = mutate_source(rng, context.head_text, name), "mutated-head"
    elif roll < 0.8:
        statements = [random_statement(rng, name) for _ in range(rng.randint(1, 12))]
        text, kind = ".text\n" + "\n".join(statements) + "\n", "random-statements"
    else:
        lines = [".text", "nop"] + [hostile_directive(rng, name)
                                    for _ in range(rng.randint(1, 3))]
        text, kind = "\n".join(lines) + "\n", "hostile-directive"
    data = text.encode("utf-8", "surrogateescape")
    if rng.random() < 0.05:  # raw bytes in the middle of a source
        cut = rng.randrange(len(data) + 1)
        data = data[:cut] + bytes(rng.randrange(256) for _ in range(64)) + data[cut:]
    path = name
    command = rng.choice(["asm", "asm", "check", "run", "layout"])
    args = [command, path, "-I", str(INCLUDE)]
    if command == "asm":
        args += rng.choice([["-o", "{d}/out.bin"], ["--elf", "{d}/out.elf"], ["--list"],
                            ["--json"]])
    elif command in ("check", "run"):
        args += ["--max-insns", "200000"]
    return Case("sources", kind, args, {"fuzz.S": data}, names=[path])


# --------------------------------------------------------------------------
# Category: images


def image_header(code0: int, text_offset: int, image_size: int, flags: int,
                 magic: int = IMAGE_MAGIC) -> bytes:
    return struct.pack("<IIQQQQQQII", code0, 0, text_offset, image_size, flags, 0, 0, 0,
                       magic, 0)


def flip(rng: random.Random, data: bytes, count: int, start: int = 0,
         end: int | None = None) -> bytes:
    out = bytearray(data)
    end = len(out) if end is None else min(end, len(out))
    if end <= start:
        return bytes(out)
    for _ in range(count):
        out[rng.randrange(start, end)] = rng.randrange(256)
    return bytes(out)


def corrupt_elf(rng: random.Random, elf: bytes) -> tuple[bytes, str]:
    out = bytearray(elf)
    kind = rng.randrange(7)
    if kind == 0:
        return flip(rng, elf, rng.randint(1, 8), 0, 64), "elf-header-bytes"
    phoff = struct.unpack_from("<Q", elf, 32)[0]
    shoff = struct.unpack_from("<Q", elf, 40)[0]
    if kind == 1:  # ELF header fields at extreme values
        offset, fmt = rng.choice([(24, "<Q"), (32, "<Q"), (40, "<Q"), (52, "<H"), (54, "<H"),
                                  (56, "<H"), (58, "<H"), (60, "<H"), (62, "<H"), (18, "<H"),
                                  (4, "<B"), (5, "<B")])
        limit = 1 << (8 * struct.calcsize(fmt))
        value = rng.choice([0, 1, limit - 1, limit // 2, rng.randrange(limit), 0x40000001])
        value &= limit - 1
        struct.pack_into(fmt, out, offset, value)
        return bytes(out), f"elf-field@{offset}"
    if kind == 2:  # program header fields
        field_offset = rng.choice([0, 4, 8, 16, 24, 32, 40, 48])
        value = rng.choice([0, 1, (1 << 64) - 1, 1 << 63, 1 << 40, (1 << 64) - 0x1000,
                            rng.randrange(1 << 64), 0x4000_0000, 0xFFFF_FFFF])
        fmt = "<I" if field_offset in (0, 4) else "<Q"
        value &= (1 << (8 * struct.calcsize(fmt))) - 1
        if phoff + field_offset + 8 <= len(out):
            struct.pack_into(fmt, out, phoff + field_offset, value)
        return bytes(out), f"elf-phdr+{field_offset}"
    if kind == 3:  # section headers and tables
        return flip(rng, elf, rng.randint(1, 32), min(shoff, len(elf)), len(elf)), "elf-shdrs"
    if kind == 4:
        return elf[:rng.randrange(len(elf))], "elf-truncated"
    if kind == 5:
        return flip(rng, elf, rng.randint(1, 64), 0, len(elf)), "elf-random-bytes"
    return elf[:64] + bytes(rng.randrange(256) for _ in range(rng.randrange(0, 512))), \
        "elf-header-then-junk"


def image_case(rng: random.Random, context: Context) -> Case:
    roll = rng.randrange(8)
    fmt = "auto"
    if roll == 0:  # random bytes as anything
        size = rng.choice([0, 1, 3, 4, 63, 64, 65, 4096, rng.randrange(70000)])
        data = bytes(rng.randrange(256) for _ in range(size))
        if rng.random() < 0.3:
            data = rng.choice([b"\x7fELF", b"\x1f\x8b", b"\xd0\x0d\xfe\xed"]) + data
        fmt = rng.choice(["auto", "raw", "image", "elf"])
        name, kind = rng.choice(["random.bin", "Image", "random.elf", "x.gz"]), "random-bytes"
    elif roll in (1, 2):
        data, kind = corrupt_elf(rng, context.elf)
        name, fmt = "bad.elf", rng.choice(["auto", "elf"])
    elif roll in (3, 4):  # arm64 Image header fields
        body = context.raw
        text_offset = rng.choice([0, 0x80000, 0x80002, 1 << 63, (1 << 64) - 1, 0x200000,
                                  0x1FFFFF, rng.randrange(1 << 64), 1 << 40])
        image_size = rng.choice([0, 1, 64, len(body) + 64, (1 << 64) - 1, 1 << 40, 1 << 30,
                                 rng.randrange(1 << 64)])
        flags = rng.choice([0, 1, 2, 4, 6, 8, 0xE, (1 << 64) - 1, rng.randrange(1 << 64)])
        magic = IMAGE_MAGIC if rng.random() < 0.85 else rng.randrange(1 << 32)
        code0 = rng.choice([0x14000010, 0, 0xFFFFFFFF, NOP])
        data = image_header(code0, text_offset, image_size, flags, magic)
        data += body[64:] if rng.random() < 0.7 else b""
        if rng.random() < 0.3:
            data = data[:rng.randrange(len(data) + 1)]
        kind, name, fmt = "image-header", "Image", rng.choice(["auto", "image"])
        if rng.random() < 0.2:
            data, name, kind = gzip.compress(data, 1), "Image.gz", "image-gzip"
    elif roll == 5:  # truncated real files
        source = rng.choice([context.elf, context.raw,
                             image_header(0x14000010, 0, len(context.raw), 2) + context.raw])
        data = source[:rng.choice([0, 1, 4, 16, 52, 63, 64, 65, rng.randrange(len(source))])]
        name, kind = rng.choice(["t.elf", "t.bin", "Image"]), "truncated"
        fmt = rng.choice(["auto", "raw", "image", "elf"])
    elif roll == 6:  # corrupt gzip
        packed = gzip.compress(image_header(0x14000010, 0, 0, 2) + context.raw, 6)
        data = rng.choice([packed[:rng.randrange(len(packed))],
                           flip(rng, packed, rng.randint(1, 6), 10, len(packed)),
                           packed[:10] + bytes(100), packed + packed])
        name, kind, fmt = "Image.gz", "gzip-corrupt", rng.choice(["auto", "image"])
    else:  # the flat binary at odd load addresses and formats
        data = context.raw if rng.random() < 0.5 else flip(rng, context.raw, 16)
        name, kind, fmt = "head.bin", "raw-head", rng.choice(["raw", "auto", "image"])
    files: dict[str, bytes] = {name: data}
    args_tail: list[str] = []
    if roll == 7 or rng.random() < 0.2:
        args_tail += ["--load-address", rng.choice(["0x40000000", "0x40000001", "0x0",
                                                    "0xfffffffffffff000", "0x40200000",
                                                    "0x8000000000"])]
    command = rng.choice(["run", "check", "trace", "walk"])
    path = "{d}/" + name
    args = [command] + (["0x40000000"] if command == "walk" else []) + [path]
    if fmt != "auto":
        args += ["--format", fmt]
    if command == "walk":
        args += ["--at", "#200"]
    else:
        args += ["--max-insns", "20000"]
    return Case("images", kind, args + args_tail, files,
                names=[path, "--format", "--load-address", "load address"])


def bomb_case(context: Context) -> Case:
    """A gzip file that inflates to 1.5 GiB, beyond the 1 GiB address-space limit."""
    bomb = gzip_bomb(context)
    return Case("images", "gzip-bomb", ["run", str(bomb), "--max-insns", "1000"],
                names=[str(bomb)])


# --------------------------------------------------------------------------
# Category: options


def long_text(rng: random.Random) -> str:
    # An argument is at most 128 KiB (Linux's MAX_ARG_STRLEN): up to 60,000 characters.
    return rng.choice(["a", "\u00e9", "0", ",", "%s", "\\"]) * rng.choice([1000, 20000, 60000])


def option_values(rng: random.Random, option: str, context: Context) -> tuple[str, dict[str,
                                                                                   bytes]]:
    """A hostile value for ``option`` and the files it needs."""
    generic = ["", " ", "-1", "0", "-0", "0x", "0x10000000000000000", "1e9", "nan", "inf",
               "9" * 100, "\u0663", "%n%s", "\t", "--", "-h", "=", long_text(rng)]
    files: dict[str, bytes] = {}
    if option == "--ram":
        values = ["0x40000000:0", "0x40000000:-1", "0:1", "0:1T", ":", "0x40000000:",
                  ":128M", "0x40000000:128M:1", "0x40000001:128M", "0x40000000:3",
                  "0x40000000:1P", "0x40000000:1E", "0xffffffffffff0000:64K",
                  "0x40000000:0x7fffffffffffffff", "0x40000000:128Q", "1:1", "0:16E",
                  "0x40000000:128m", "0x40000000:1.5G", "0x40000000:4K", "0x40000000:64"]
    elif option == "--load-address":
        values = ["0x40000001", "0xffffffffffffffff", "0xfffffffffffff000", "0x10000000000000000",
                  "0x7fffffffffff", "1T", "0x8000000000", "0", "0x3fffffff", "0x47fffffc",
                  "0x48000000"]
    elif option in ("--until", "--at"):
        values = ["#0", "#-1", "#1", "#99999999999999999999999", "#", "@", "start_c@0",
                  "start_c@-1", "start_c@99999999999999999999", "start_c+", "start_c+-1",
                  "start_c+0x10000000000000000", "nosuch", "nosuch+4", "0x", "console:",
                  "console:" + "x" * 5000, "exit", "exit@2", "_start@1", "_start", "0x0",
                  "0xffffffffffffffff", "0x10000000000000000", "+4", "start_c++4", "#1@2",
                  "boot_failure", "switch_ttbr_id+4@3"]
    elif option == "--max-insns":
        values = ["0", "-1", "1", "2", "99999999999999999999", "1e3", "0x10", "100000000000"]
    elif option == "--timeout":
        values = ["0", "-1", "nan", "inf", "1e-9", "1e308", "0.0001", "0.5", "-inf", "1e-400",
                  "3"]
    elif option == "-D":
        values = ["=", "A", "A=", "1A=2", "A=B=C", "A=((((", "=1", "A B=1", "A=\\",
                  "XEN_VIRT_START=garbage", "XEN_VIRT_START=0x10000000000000000",
                  "XEN_VIRT_START=0x1", "XEN_VIRT_START=-1", "XEN_VIRT_START=" + "(" * 3000,
                  "XEN_VIRT_START=0xffffffffffffffff", "LINK_ADDRESS=0", "PAGE_SHIFT=64",
                  "XEN_VIRT_SIZE=0", "DIRECTMAP_VIRT_START=0", "A(x)=x", "__FILE__=1",
                  "defined=1", "XEN_VIRT_START=XEN_VIRT_START", "A=" + "B" * 50000]
    elif option == "-I":
        values = ["/nonexistent", "", "/dev/null", "/proc/self", "{d}/file-not-dir", "/",
                  "{d}/" + "x" * 300, "../../../../../../"]
        files["file-not-dir"] = b"x"
    elif option in ("--dtb", "--symbols", "--bios", "--log-file"):
        pick = rng.randrange(9)
        if pick == 0:
            files["v"] = bytes(rng.randrange(256) for _ in range(rng.randrange(2000)))
        elif pick == 1:
            files["v"] = flip(rng, context.dtb, rng.randint(1, 8), 0, 40)
        elif pick == 2:
            files["v"] = flip(rng, context.dtb, rng.randint(1, 16), 40, len(context.dtb))
        elif pick == 3:
            files["v"] = context.dtb[:rng.randrange(len(context.dtb))]
        elif pick == 4:
            lines = [f"{rng.choice(['0', 'ffffffffffffffff', 'g', '1' * 40, ''])} "
                     f"{rng.choice('tTdDbBWUa?')} {rng.choice(['x', '', 'start_c', 'y' * 500])}"
                     for _ in range(rng.randint(1, 50))]
            files["v"] = "\n".join(lines).encode()
        elif pick == 5:
            files["v"] = corrupt_elf(rng, context.elf)[0]
        elif pick == 6:
            files["v"] = b""
        elif pick == 7:
            files["v"] = context.elf
        else:
            files["v"] = context.dtb
        values = ["{d}/v", "{d}/v", "{d}/v", "{d}/v", "/dev/null", "/nonexistent", "/",
                  "{d}", "/proc/self/mem", "/dev/full", "{d}/fifo"]
        if option == "--log-file":
            values = ["/dev/full", "/nonexistent/dir/log", "{d}", "/", "{d}/log", "", "-"]
    elif option == "--events":
        values = ["", ",", "all,foo", "mmu," * 1000, "default,all", "none", "MMU", "all,",
                  ",mmu", "barrier"]
    elif option == "--window":
        values = ["0", "-1", "10" * 30, "x", "1", "99999999999"]
    elif option == "--filter":
        values = ["..", "1..0", "0xffffffffffffffff+2", "foo", "start_c..", ",,,", "0..",
                  "..0x10", "0x10000000000000000..1", "0+0", "_start+0x10000000000000000",
                  "start_c," * 2000, "0..0xffffffffffffffff", "nosuch"]
    elif option == "--log":
        values = ["", "exec,cpu,int,mmu", "foo", "exec,exec", ",", "cpu", "EXEC", "all"]
    elif option == "--el":
        values = ["0", "3", "-1", "1", "x", "99999999999999999999"]
    elif option == "--seed":
        values = ["-1", str(1 << 64), str(1 << 200), "x", "0x10", "1e3"]
    elif option == "--cpu":
        values = ["cortex-a99", "", "CORTEX-A72"]
    elif option == "--bootargs":
        values = ["", long_text(rng), "\u202e", "a" * 120_000]
    elif option == "--load-addresses":
        values = ["0:0", "0x40000000:0x40600000:0", "0x40000000:0x40600000:-2M",
                  "0x40000001:0x40600000", "x", "", "0x40000000,0x40000000,0x40000000",
                  "qemu-virt,bogus", "0x40000000:0x40600000:1", "0:1T:1",
                  "0x10000000000000000", "0xffffffffffe00000", "1T:0"]
    elif option == "--layout":
        values = ["bogus", "", "x" * 1000]
    elif option == "--identity-slots":
        values = ["-1", "0", "513", "99999999999999999999", "x"]
    else:
        values = generic
    value = rng.choice(values + generic[:8] if rng.random() < 0.2 else values)
    return value, files


COMMAND_OPTIONS: dict[str, list[str]] = {
    "check": ["--ram", "--load-address", "--until", "--max-insns", "--timeout", "-D", "-I",
              "--dtb", "--symbols", "--events", "--el", "--seed", "--cpu", "--bootargs",
              "--bios"],
    "run": ["--ram", "--load-address", "--until", "--max-insns", "--timeout", "-D", "-I",
            "--dtb", "--symbols", "--el", "--seed", "--bootargs", "--bios"],
    "trace": ["--ram", "--until", "--max-insns", "--timeout", "--window", "--filter", "--log",
              "--log-file", "--events", "--symbols", "--dtb", "-D"],
    "walk": ["--ram", "--at", "-D", "-I", "--dtb", "--load-address", "--el"],
    "asm": ["-D", "-I"],
    "layout": ["-D", "-I", "--layout", "--identity-slots"],
    "sweep": ["--load-addresses", "-D", "--until", "--max-insns", "--layout"],
}


# What an error line may say instead of an option's name (it names the thing).
OPTION_WORDS: dict[str, list[str]] = {
    "--ram": ["RAM"], "--load-address": ["load address"], "--dtb": ["device tree"],
    "--symbols": ["symbol"], "--timeout": ["timeout"], "--bios": ["firmware"],
    "--until": ["target"], "--at": ["target"], "-D": ["--define"], "-I": ["--include"],
}


def value_names(value: str) -> list[str]:
    """``value`` as written and, for a number, in the hex an error line prints
    (short ones left out: "0" or "=" would match any line)."""
    names = [value] if len(value.strip()) >= 3 else []
    for part in value.replace(":", " ").replace("+", " ").split():
        with contextlib.suppress(ValueError):
            if int(part, 0) >= 0x10000:
                names.append(f"{int(part, 0):#x}")
    return names


def options_case(rng: random.Random, context: Context) -> Case:
    command = rng.choice(["check", "check", "run", "run", "trace", "trace", "walk", "asm",
                          "layout", "sweep"])
    files: dict[str, bytes] = {}
    chosen = rng.sample(COMMAND_OPTIONS[command], k=min(rng.choice([1, 1, 2, 3]),
                                                        len(COMMAND_OPTIONS[command])))
    args: list[str] = [command]
    if command == "walk":
        args.append(rng.choice(["0x8000200000", "0x40000000", "-1", "0x10000000000000000",
                                "foo", "", "_start", "0xffffffffffffffff"]))
    source = str(HEAD_S)
    if "--symbols" in chosen or ("--load-address" in chosen and rng.random() < 0.5):
        source = str(context.raw_path)
        args += [source, "--format", "raw"]
    elif "--bios" not in chosen:
        args.append(source)
    names = [source]
    for option in chosen:
        value, extra = option_values(rng, option, context)
        files.update(extra)
        if option == "--bios" and value == "{d}/v":
            files["v"] = bytes(rng.randrange(256) for _ in range(rng.randrange(4, 4096)))
        args += [option, value]
        names += [option, *OPTION_WORDS.get(option, [])]
        if value.strip():
            names += value_names(value)
    if command in ("check", "run", "trace") and "--max-insns" not in chosen:
        args += ["--max-insns", "300000"]
    elif command in ("check", "run", "trace") and "--timeout" not in chosen:
        args += ["--timeout", "20"]  # a huge budget is allowed: it must stop on time
    if command == "sweep":
        if "--load-addresses" not in chosen:
            args += ["--load-addresses", "0x40000000,0x40200000"]
        args += ["-j", "1"]
        if "--max-insns" not in chosen:
            args += ["--max-insns", "300000"]
    if command == "trace":
        args += ["--window", "4"] if "--window" not in chosen and rng.random() < 0.5 else []
    names += ["SOURCE", "VA", "--define", "--include"]
    kind = command + ":" + ",".join(chosen)
    fifos = ["fifo"] if "{d}/fifo" in args else []  # a FIFO no one writes: must not block
    return Case("options", kind, args, files, fifos, names=names)


# --------------------------------------------------------------------------
# Category: random code


def random_word(rng: random.Random) -> int:
    kind = rng.randrange(6)
    if kind == 0:
        return rng.randrange(1 << 32)
    if kind == 1:  # system instructions: msr/mrs/sys/tlbi/dc/ic with random encodings
        return 0xD5000000 | rng.randrange(1 << 24)
    if kind == 2:  # branches (b, bl, b.cond, cbz, tbz, br/blr/ret/eret)
        return rng.choice([0x14000000, 0x94000000, 0x54000000, 0xB4000000, 0x36000000,
                           0xD61F0000, 0xD63F0000]) | rng.randrange(1 << 24)
    if kind == 3:  # loads and stores
        return rng.choice([0xF8000000, 0xF9000000, 0xA9000000, 0x38000000, 0xB8000000,
                           0x29000000]) | rng.randrange(1 << 24)
    if kind == 4:  # exception generation, hints, barriers
        return rng.choice([0xD4000001, 0xD4000002, 0xD4000003, 0xD4200000, 0xD4400000,
                           0xD503201F, 0xD503207F, 0xD5033F9F, 0xD69F03E0, 0x00000000])
    return 0xD2800000 | rng.randrange(1 << 23)  # movz


def random_code_case(rng: random.Random, context: Context) -> Case:
    count = rng.choice([1, 2, 16, 256, 1024, 4096])
    words = [random_word(rng) for _ in range(count)]
    data = struct.pack(f"<{count}I", *words)
    command = rng.choice(["run", "run", "check", "trace", "walk"])
    path = "{d}/code.bin"
    args = [command] + (["0x40000000"] if command == "walk" else []) + [path, "--format", "raw"]
    if command == "walk":
        args += ["--at", rng.choice(["#1000", "#20000", "0x40000010"])]
    else:
        args += ["--max-insns", "20000"]
        if command == "trace":
            args += rng.choice([[], ["--pc-only"], ["--log", "exec,int,mmu"], ["--tarmac"]])
    if rng.random() < 0.2:
        args += ["--el", "1"]
    return Case("random-code", f"{command}:{count}w", args, {"code.bin": data},
                names=[path])


# --------------------------------------------------------------------------
# Category: corrupted page tables

TABLES = ["boot_pgtable", "boot_first", "boot_second", "boot_first_id", "boot_second_id",
          "runtime_pgtable", "runtime_first", "runtime_second", "runtime_third",
          "runtime_first_id", "runtime_second_id", "runtime_third_id"]


def random_descriptor(rng: random.Random) -> int:
    kind = rng.randrange(7)
    if kind == 0:
        return rng.randrange(1 << 64)
    pa = rng.choice([0x4000_0000, 0x4020_0000, 0x4000_3000, 0, 0x900_0000, 1 << 47,
                     (1 << 48) - 0x1000, 1 << 52, rng.randrange(1 << 48) & ~0xFFF])
    low = rng.choice([0b00, 0b01, 0b10, 0b11])
    attrs = rng.choice([0x710, 0x700, 0x400, 0x404, 0x4C0, 0, rng.randrange(1 << 12)])
    upper = rng.choice([0, 1 << 54, 1 << 53, 0xFFF << 52, 1 << 51, rng.randrange(1 << 12) << 52])
    if kind == 1:  # a table descriptor to somewhere
        return pa | 0b11 | upper
    if kind == 2:  # a block or page
        return pa | attrs | low | upper
    if kind == 3:
        return 0
    if kind == 4:
        return (pa | attrs | low) & ~1  # invalid with stray bits
    if kind == 5:
        return 1 << rng.randrange(64)
    return (1 << 64) - 1


def table_patch_asm(rng: random.Random, mmu_on: bool) -> str:
    """Statements that overwrite or XOR a few descriptors of head.S's tables."""
    lines: list[str] = []
    prefix = "runtime_" if mmu_on else "boot_"
    for _ in range(rng.randint(1, 4)):
        table = rng.choice([t for t in TABLES if t.startswith(prefix)])
        index = rng.choice([0, 1, 2, rng.randrange(512), rng.randrange(16)])
        lines.append(f"    adr     x9, {table}")
        if rng.random() < 0.5:
            lines.append(f"    ldr     x10, ={random_descriptor(rng):#x}")
        else:
            mask = rng.choice([1 << rng.randrange(64), rng.randrange(1 << 64),
                               0b11, 0b10, 1 << 10, 0xFFF << 52])
            lines += [f"    ldr     x10, [x9, #{index * 8}]", f"    ldr     x11, ={mask:#x}",
                      "    eor     x10, x10, x11"]
        lines.append(f"    str     x10, [x9, #{index * 8}]")
    return "\n".join(lines)


def page_table_case(rng: random.Random, context: Context) -> Case:
    roll = rng.randrange(4)
    command = rng.choice(["check", "check", "check", "walk", "trace"])
    extra: list[str] = []
    files: dict[str, bytes] = {}
    names: list[str] = []
    if roll <= 1:  # patch the source: descriptors changed after the tables are built
        text = context.head_text
        boot = "    bl      create_boot_page_tables\n"
        runtime = "    bl      create_runtime_page_tables\n"
        assert boot in text and runtime in text, "head.S changed: update page_table_case"
        if rng.random() < 0.7:
            text = text.replace(boot, boot + table_patch_asm(rng, False) + "\n", 1)
        if rng.random() < 0.6:
            text = text.replace(runtime, runtime + table_patch_asm(rng, True) + "\n", 1)
        files["tables.S"] = text.encode()
        path, kind = "{d}/tables.S", "source-patched-descriptors"
        extra = ["-I", str(INCLUDE)]
    elif roll == 2:  # patch the flat binary: no BSS clearing, random table contents
        data = bytearray(context.raw)
        zero_call = context.symbols["_start"] + 0x34  # `bl zero_bss`, checked below
        offset = zero_call - context.base
        word = struct.unpack_from("<I", data, offset)[0]
        assert word >> 26 == 0b100101, "head.S changed: update the bl zero_bss offset"
        struct.pack_into("<I", data, offset, NOP)
        for _ in range(rng.randint(1, 64)):
            table = rng.choice(TABLES)
            index = rng.choice([0, 1, 2, rng.randrange(512)])
            at = context.symbols[table] - context.base + 8 * index
            struct.pack_into("<Q", data, at, random_descriptor(rng))
        if rng.random() < 0.3:  # also corrupt the code that builds them
            start = context.symbols["create_boot_page_tables"] - context.base
            data = bytearray(flip(rng, bytes(data), rng.randint(1, 4), start, start + 0x80))
        files["tables.bin"] = bytes(data)
        path, kind = "{d}/tables.bin", "raw-patched-tables"
        # No --symbols: bootemu refuses an ELF whose bytes differ from the raw
        # file's; the run ends at start_c's link address instead.
        extra = ["--format", "raw", "--until", f"{context.symbols['start_c']:#x}"]
    else:  # -D definitions that move the layout, hence the tables' contents
        name = rng.choice(["XEN_VIRT_START", "FIXMAP_VIRT_START", "VMAP_VIRT_START",
                           "FRAMETABLE_VIRT_START", "DIRECTMAP_VIRT_START", "XEN_VIRT_SIZE",
                           "FIXMAP_VIRT_SIZE", "VMAP_VIRT_SIZE", "FRAMETABLE_VIRT_SIZE",
                           "DIRECTMAP_VIRT_SIZE"])
        value = rng.choice([0, 0x200000, 0x40000000, 0x8000000000, 0x7FFFFFE00000,
                            0xFFFF000000000000, 1 << 47, 1 << 48, (1 << 64) - 0x200000,
                            rng.randrange(1 << 48) & ~0x1FFFFF, rng.randrange(1 << 64)])
        path, kind = str(HEAD_S), f"define-{name}"
        extra = ["-D", f"{name}={value:#x}"]
        if rng.random() < 0.3:
            extra += ["--load-address", rng.choice(["0x40200000", "0x40000000", "0x80000000"])]
    args = [command]
    if command == "walk":
        args.append(rng.choice(["0x8000200000", "0x40000000", "0x8000201000", "0x0"]))
        args += [path, *extra, "--at", rng.choice(["start_c", "switch_ttbr_id", "#3000"])]
        args += ["--access", rng.choice(["fetch", "read", "write"])]
    else:
        args += [path, *extra, "--max-insns", "300000"]
        if command == "trace":
            args += ["--window", "3"]
    return Case("page-tables", kind, args, files, names=[path, "-D", *names])


GENERATORS: dict[str, Callable[[random.Random, Context], Case]] = {
    "sources": source_case,
    "images": image_case,
    "options": options_case,
    "random-code": random_code_case,
    "page-tables": page_table_case,
}


def generate_cases(count: int, seed: int, context: Context,
                   categories: Iterable[str] = CATEGORIES, bomb: bool = True) -> list[Case]:
    """``count`` cases, round robin over ``categories``; the same seed gives the
    same cases.  ``bomb`` adds the gzip-bomb case (a 1.5 MB file made once)."""
    rng = random.Random(seed)
    names = list(categories)
    cases = [GENERATORS[names[i % len(names)]](rng, context) for i in range(count)]
    if bomb and "images" in names:
        cases.append(bomb_case(context))
    return cases


# --------------------------------------------------------------------------
# Running and judging


def _limiter(limit: int) -> Callable[[], None]:
    def limit_memory() -> None:
        resource.setrlimit(resource.RLIMIT_AS, (limit, limit))
    return limit_memory


def run_case(case: Case, index: int, work: Path, wall_timeout: float = WALL_TIMEOUT,
             memory_limit: int = MEMORY_LIMIT) -> Result:
    """Run ``case`` in a child (own session, RLIMIT_AS ``memory_limit``),
    killed after ``wall_timeout`` seconds; its peak RSS comes from wait4."""
    directory = work / f"case{index:05d}"
    directory.mkdir(parents=True, exist_ok=True)
    for name, data in case.files.items():  # {d} in a file is the directory too
        (directory / name).write_bytes(data.replace(b"{d}", bytes(directory)))
    for name in case.fifos:
        os.mkfifo(directory / name)
    stderr_path = directory / "stderr.txt"
    command = [sys.executable, "-m", "emu.cli", *case.argv(directory)]
    start = time.monotonic()
    hung = False
    with stderr_path.open("wb") as stderr:
        try:
            process = subprocess.Popen(command, stdin=subprocess.DEVNULL,
                                       # In the case's own directory: an option value
                                       # such as `-o ' '` writes a file where it runs.
                                       stdout=subprocess.DEVNULL, stderr=stderr, cwd=directory,
                                       preexec_fn=_limiter(memory_limit),
                                       start_new_session=True)
        except OSError as error:  # the generator's fault (an argument too long, say)
            return Result(case, index, None, f"fuzzer: cannot start the child: {error}", 0.0,
                          0, False, directory)

        def kill() -> None:
            nonlocal hung
            hung = True
            with contextlib.suppress(ProcessLookupError):
                os.killpg(process.pid, signal.SIGKILL)

        timer = threading.Timer(wall_timeout, kill)
        timer.start()
        try:
            _, status, usage = os.wait4(process.pid, 0)
        finally:
            timer.cancel()
        process.returncode = os.waitstatus_to_exitcode(status)
    # The children it may have left behind (cpp, the keystone worker).
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(process.pid, signal.SIGKILL)
    seconds = time.monotonic() - start
    text = stderr_path.read_bytes()[:1 << 20].decode("utf-8", "replace")
    return Result(case, index, None if hung else process.returncode, text, seconds,
                  usage.ru_maxrss, hung, directory)


def _names_something(line: str, case: Case, directory: Path) -> bool:
    """Whether the error line names one of the case's files, options or values."""
    message = line.removeprefix("bootemu: error: ")
    names = [name.replace("{d}", str(directory)) for name in case.names if name.strip()]
    return any(name in message for name in names)


def violations(result: Result) -> list[str]:
    """The properties ``result`` breaks (empty: none)."""
    found: list[str] = []
    stderr = result.stderr
    if "Traceback" in stderr:
        found.append("traceback")
    if result.hung:
        found.append("hang")
        return found
    if result.returncode is None:
        found.append("fuzzer error")
        return found
    allowed = {0, 1, 2} | ({124} if result.case.allows_timeout() else set())
    if result.returncode not in allowed:
        found.append(f"exit status {result.returncode}")
    if result.max_rss_kib * 1024 >= RSS_LIMIT:
        found.append(f"peak RSS {result.max_rss_kib // 1024} MiB")
    if "Could not allocate" in stderr:
        found.append("emulator did not start")
    if result.returncode == 2 and "traceback" not in found:
        lines = [line for line in stderr.splitlines() if line.strip()]
        if any(line.startswith("Error:") for line in lines):  # click's usage error
            errors = [line for line in lines if line.startswith("Error:")]
            rest = [line for line in lines if not line.startswith(("Error:", "Usage:", "Try "))]
            if len(errors) != 1 or rest:
                found.append("multi-line error")
        elif len(lines) != 1 or not lines[0].startswith("bootemu: error: "):
            found.append("multi-line error")
        elif not _names_something(lines[0], result.case, result.directory):
            found.append("error names no file or option")
    return found


_TRACE_FRAME = re.compile(r'File "(?:[^"]*/)?(emu/[^"]+)", line (\d+), in (\S+)')
_VARYING = re.compile(r"0x[0-9a-fA-F]+|\d+|'[^']*'|\"[^\"]*\"|/\S+")


def signature(result: Result) -> str:
    """What tells one bug from another: for a traceback, the innermost frame
    in emu/ and the exception; else the violations and stderr's first line with
    numbers, quoted text and paths left out."""
    found = violations(result)
    lines = [line for line in result.stderr.splitlines() if line.strip()]
    if "traceback" in found:
        frames = _TRACE_FRAME.findall(result.stderr)
        where = f"{frames[-1][0]}:{frames[-1][1]} in {frames[-1][2]}" if frames else "?"
        errors = [line for line in lines if not line.startswith((" ", "\t", "Traceback"))]
        return f"traceback at {where}: {(errors[-1] if errors else '?')[:120]}"
    first = _VARYING.sub("_", lines[0])[:100] if lines else "(no stderr)"
    return f"{', '.join(found)}: {first}"


def reproduce(result: Result) -> str:
    """The command line, runnable from the repository root."""
    directory = result.saved or result.directory
    return " ".join(shlex.quote(arg) for arg in
                    ["python", "-m", "emu.cli", *result.case.argv(directory)])


def run_all(cases: list[Case], jobs: int, work: Path, wall_timeout: float = WALL_TIMEOUT,
            progress: bool = False, memory_limit: int = MEMORY_LIMIT) -> list[Result]:
    results: list[Result] = []
    lock = threading.Lock()

    def one(item: tuple[int, Case]) -> Result:
        result = run_case(item[1], item[0], work, wall_timeout, memory_limit)
        with lock:
            results.append(result)
            if progress and len(results) % 50 == 0:
                print(f"  {len(results)}/{len(cases)} cases", file=sys.stderr, flush=True)
        return result

    with ThreadPoolExecutor(max_workers=jobs) as pool:
        list(pool.map(one, enumerate(cases)))
    return sorted(results, key=lambda r: r.index)


# --------------------------------------------------------------------------
# Reporting


def table(results: list[Result]) -> str:
    rows = ["| category | cases | tracebacks | hangs | bad exit statuses | multi-line errors "
            "| unnamed errors | RSS >= 1 GiB | other | exit 0/1/2/124 | peak RSS max (MiB) "
            "| slowest (s) |",
            "|---|---:|---:|---:|---:|---:|---:|---:|---:|---|---:|---:|"]
    groups: dict[str, list[Result]] = {}
    for result in results:
        groups.setdefault(result.case.category, []).append(result)
    groups["all"] = results
    for category, members in groups.items():
        found = [violations(r) for r in members]

        def count(prefix: str, found: list[list[str]] = found) -> int:
            return sum(any(v.startswith(prefix) for v in f) for f in found)

        statuses = "/".join(str(sum(r.returncode == s for r in members)) for s in (0, 1, 2, 124))
        rss = max((r.max_rss_kib for r in members), default=0) // 1024
        slowest = max((r.seconds for r in members), default=0.0)
        rows.append(f"| {category} | {len(members)} | {count('traceback')} | {count('hang')} "
                    f"| {count('exit status')} | {count('multi-line')} | {count('error names')} "
                    f"| {count('peak RSS')} | {count('emulator')} | {statuses} | {rss} "
                    f"| {slowest:.1f} |")
    return "\n".join(rows)


def failures_text(results: list[Result], lines: int = 4, per_signature: int = 3) -> str:
    """The failing cases, grouped by :func:`signature`, ``per_signature`` of each."""
    groups: dict[str, list[Result]] = {}
    for result in results:
        if violations(result):
            groups.setdefault(signature(result), []).append(result)
    out: list[str] = []
    for number, (key, members) in enumerate(groups.items(), 1):
        kinds = sorted({f"{r.case.category}/{r.case.kind.split(':')[0]}" for r in members})
        out += ["", f"### {number}. {key}", "",
                f"{len(members)} cases ({', '.join(kinds[:8])}{', ...' if len(kinds) > 8 else ''})"
                f"; the first {min(per_signature, len(members))}:", ""]
        out.append(_cases_text(members[:per_signature], lines))
    return "\n".join(out)


def _cases_text(results: list[Result], lines: int) -> str:
    out: list[str] = []
    for result in results:
        found = violations(result)
        out.append(f"- case {result.index} ({result.case.category}, {result.case.kind}): "
                   f"{', '.join(found)}; exit {result.returncode}, {result.seconds:.1f} s, "
                   f"{result.max_rss_kib // 1024} MiB; "
                   f"inputs in {result.saved or result.directory}")
        out += ["", "  ```", f"  {reproduce(result)[:600]}"]
        tail = result.stderr.strip().splitlines()
        shown = tail[:lines] + (["..."] + tail[-lines:] if len(tail) > 2 * lines else
                                tail[lines:])
        out += [f"  {line[:300]}" for line in shown] + ["  ```"]
    return "\n".join(out)


def save_failures(results: list[Result], target: Path) -> int:
    saved = 0
    for result in results:
        if not violations(result):
            continue
        destination = target / result.directory.name
        if destination.exists():
            shutil.rmtree(destination)
        shutil.copytree(result.directory, destination, ignore=lambda d, names: [
            n for n in names if (Path(d) / n).is_fifo()])
        result.saved = destination  # judged on .directory still, as it ran
        (destination / "cmd.sh").write_text(
            "#!/bin/sh\n# from the repository root\n" + reproduce(result) + "\n")
        saved += 1
    return saved


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--cases", type=int, default=200, help="number of cases [200]")
    parser.add_argument("--seed", type=int, default=1, help="random seed [1]")
    parser.add_argument("--jobs", type=int, default=1, help="cases run at once [1]")
    parser.add_argument("--out", type=Path, help="write the Markdown report here")
    parser.add_argument("--save", type=Path, help="copy failing cases' inputs here "
                        "[default: a new directory under the system's temporary one]")
    parser.add_argument("--timeout", type=float, default=WALL_TIMEOUT,
                        help=f"wall-clock limit per case, s [{WALL_TIMEOUT:g}]")
    parser.add_argument("--memory-limit", type=int, default=MEMORY_LIMIT >> 20, metavar="MIB",
                        help=f"the children's RLIMIT_AS, MiB [{MEMORY_LIMIT >> 20}]; peak "
                        f"RSS must stay under {RSS_LIMIT >> 20} MiB whatever it is")
    parser.add_argument("--category", action="append", choices=CATEGORIES,
                        help="only these categories (repeatable) [all]")
    parser.add_argument("--no-bomb", action="store_true", help="leave out the gzip bomb")
    args = parser.parse_args(argv)
    if args.cases < 0 or args.jobs < 1 or args.timeout <= 0 or args.memory_limit < 64:
        parser.error("--cases >= 0, --jobs >= 1, --timeout > 0, --memory-limit >= 64")
    started = time.monotonic()
    with tempfile.TemporaryDirectory(prefix="bootemu-fuzz-") as tmp:
        work = Path(tmp)
        context = make_context(work / "context")
        cases = generate_cases(args.cases, args.seed, context, args.category or CATEGORIES,
                               bomb=not args.no_bomb)
        print(f"{len(cases)} cases, seed {args.seed}, {args.jobs} jobs", file=sys.stderr)
        results = run_all(cases, args.jobs, work / "cases", args.timeout, progress=True,
                          memory_limit=args.memory_limit << 20)
        bad = [r for r in results if violations(r)]
        save = args.save
        if bad:
            save = save or Path(tempfile.mkdtemp(prefix="bootemu-fuzz-failures-"))
            save.mkdir(parents=True, exist_ok=True)
            save_failures(bad, save)
            (save / "failures.txt").write_text("".join(
                f"{r.directory.name}\t{signature(r)}\t{reproduce(r)}\n" for r in bad))
        elapsed = time.monotonic() - started
        command = (f"python bench/fuzz_inputs.py --cases {args.cases} --seed {args.seed} "
                   f"--jobs {args.jobs}"
                   + (f" --memory-limit {args.memory_limit}"
                      if args.memory_limit << 20 != MEMORY_LIMIT else ""))
        report = ["# Hostile-input fuzzing (bench/fuzz_inputs.py)\n",
                  f"`{command}`: {len(results)} cases"
                  f"{'' if args.no_bomb else ' (the gzip bomb included)'} in {elapsed:.0f} s on "
                  f"{time.strftime('%Y-%m-%d', time.gmtime())}; each a child with RLIMIT_AS "
                  f"{args.memory_limit} MiB (peak RSS must stay under {RSS_LIMIT >> 20} "
                  f"MiB) and a {args.timeout:g} s wall-clock limit.\n",
                  "Columns: cases breaking each property (a case may break several); "
                  "exit 0/1/2/124 counts every case's status.\n",
                  table(results), ""]
        if bad:
            distinct = len({signature(r) for r in bad})
            report += [f"## Failing cases: {len(bad)}, {distinct} distinct\n",
                       f"Inputs saved under {save} (a `cmd.sh` each; `failures.txt` lists "
                       "all of them).", failures_text(bad), ""]
        else:
            report.append("No case broke a property.\n")
        text = "\n".join(report)
        print(text)
        if args.out:
            args.out.write_text(text)
    return 1 if bad else 0


if __name__ == "__main__":
    sys.exit(main())
