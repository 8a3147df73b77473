"""Hostile input (issue 15): every case is one line on stderr and exit status 2,
in bounded time and memory, never a traceback.

Each case runs the real command line in a child process with a timeout and an
address-space limit, so that a regression fails the test instead of hanging
or eating the machine.
"""

from __future__ import annotations

import os
import resource
import struct
import subprocess
import sys
from pathlib import Path
from types import SimpleNamespace
from typing import cast

import pytest

from emu.asm.files import MAX_IMAGE_FILE_BYTES, MAX_SOURCE_BYTES, FileRefused, read_limited
from emu.checks import identity_clash
from emu.checks.base import CheckContext
from emu.image.layout import Layout, Region
from emu.machine.stop import Stop

ROOT = Path(__file__).resolve().parents[1]
MEMORY_LIMIT = 2 << 30


def _limit_memory() -> None:
    resource.setrlimit(resource.RLIMIT_AS, (MEMORY_LIMIT, MEMORY_LIMIT))


def bootemu(*args: str | Path, timeout: float = 120,
            prelude: str | None = None) -> subprocess.CompletedProcess[str]:
    """Run ``python -m emu.cli ARGS`` (after ``prelude``, Python run first in the
    child, to lower a limit) bounded in time and memory."""
    if prelude is None:
        command = [sys.executable, "-m", "emu.cli"]
    else:
        command = [sys.executable, "-c", f"{prelude}\nfrom emu.cli.main import main\nmain()"]
    return subprocess.run([*command, *map(str, args)], capture_output=True, text=True,
                          timeout=timeout, cwd=ROOT, preexec_fn=_limit_memory)


def one_line_error(result: subprocess.CompletedProcess[str], *names: str) -> str:
    """The single ``bootemu: error:`` line, after checking the status and ``names``."""
    assert "Traceback" not in result.stderr, result.stderr[-2000:]
    assert result.returncode == 2, (result.returncode, result.stderr[-2000:])
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, lines[:5]
    assert lines[0].startswith("bootemu: error: "), lines[0]
    for name in names:
        assert name in lines[0], (name, lines[0])
    return lines[0]


def usage_error(result: subprocess.CompletedProcess[str], option: str) -> str:
    """Click's usage error: exit status 2, one ``Error:`` line naming ``option``."""
    assert "Traceback" not in result.stderr, result.stderr[-2000:]
    assert result.returncode == 2, (result.returncode, result.stderr[-2000:])
    errors = [line for line in result.stderr.splitlines() if line.startswith("Error:")]
    assert len(errors) == 1, result.stderr
    assert option in errors[0], errors[0]
    return errors[0]


def source(tmp_path: Path, text: str, name: str = "hostile.S") -> Path:
    path = tmp_path / name
    path.write_text(text)
    return path


def asm(path: Path, *extra: str | Path, **kwargs: object) -> subprocess.CompletedProcess[str]:
    return bootemu("asm", path, "-o", path.with_suffix(".bin"), *extra,
                   **kwargs)  # type: ignore[arg-type]


# 1. Output size ------------------------------------------------------------


@pytest.mark.parametrize("directive", [".balign 0x10000000000", ".skip 0x10000000000",
                                       ".org 0x10000000000", ".p2align 30",
                                       ".fill 0x10000000, 8, 1"])
def test_huge_output_is_refused_at_its_line(tmp_path: Path, directive: str) -> None:
    path = source(tmp_path, f".text\nnop\n{directive}\n")
    message = one_line_error(asm(path), f"{path}:3:")
    assert "larger than 256 MiB" in message


# 2. Nesting ----------------------------------------------------------------


def test_a_long_equ_chain_is_refused_not_a_recursion_error(tmp_path: Path) -> None:
    count = 100_000
    chain = "".join(f".equ a{i}, a{i + 1}\n" for i in range(count))
    path = source(tmp_path, f".text\n{chain}.equ a{count}, 1\nmov x0, #a0\n")
    message = one_line_error(asm(path), f"{path}:{count + 3}:")
    assert "nested more than 100 deep" in message


def test_a_long_equ_chain_read_while_reading_is_refused(tmp_path: Path) -> None:
    chain = "".join(f".equ a{i}, a{i + 1}\n" for i in range(5000))
    path = source(tmp_path, f".text\n{chain}.equ a5000, 1\n.if a0\nnop\n.endif\n")
    one_line_error(asm(path), f"{path}:5003:", "nested")


@pytest.mark.parametrize("expression", ["(" * 50_000 + "1" + ")" * 50_000, "-" * 50_000 + "1"])
def test_deeply_nested_expressions_are_refused(tmp_path: Path, expression: str) -> None:
    path = source(tmp_path, f".text\n.quad {expression}\n")
    one_line_error(asm(path), f"{path}:2:", "nested")


# 3. --ram beyond 64 bits ---------------------------------------------------


@pytest.mark.parametrize("ram", ["0x40000000:0x10000000000000000", "0x10000000000000000:128M",
                                 "0xfffffffff0000000:1G", "0x40000000:99999999999T"])
def test_ram_beyond_64_bits_is_a_usage_error(ram: str) -> None:
    usage_error(bootemu("check", "--ram", ram), "--ram")


# 4. Special and huge files -------------------------------------------------


@pytest.fixture
def fifo(tmp_path: Path) -> Path:
    path = tmp_path / "fifo"
    os.mkfifo(path)
    return path


def test_a_fifo_as_source_is_refused(fifo: Path) -> None:
    one_line_error(bootemu("check", fifo, timeout=60), str(fifo), "is a FIFO, not a regular file")


def test_a_fifo_to_asm_is_refused(fifo: Path) -> None:
    one_line_error(bootemu("asm", fifo, "-o", fifo.with_suffix(".bin"), timeout=60),
                   str(fifo), "is a FIFO")


@pytest.mark.parametrize("device", ["/dev/zero", "/dev/urandom"])
def test_a_character_device_as_source_is_refused(device: str) -> None:
    one_line_error(bootemu("run", device, timeout=60), device, "is a character device")
    one_line_error(bootemu("run", "--format", "raw", device, timeout=60), device,
                   "is a character device")


def test_a_fifo_as_firmware_is_refused(fifo: Path) -> None:
    one_line_error(bootemu("run", "--bios", fifo, timeout=60), str(fifo), "is a FIFO")


def test_a_fifo_or_device_as_dtb_is_refused(fifo: Path) -> None:
    one_line_error(bootemu("check", "--dtb", fifo, timeout=60), str(fifo), "is a FIFO")
    one_line_error(bootemu("check", "--dtb", "/dev/zero", timeout=60), "/dev/zero",
                   "is a character device")


def test_a_fifo_as_symbols_is_refused(tmp_path: Path, fifo: Path) -> None:
    raw = tmp_path / "boot.bin"
    raw.write_bytes(bytes(16))
    one_line_error(bootemu("run", raw, "--symbols", fifo, timeout=60), str(fifo), "is a FIFO")


def test_an_include_of_a_fifo_is_refused(tmp_path: Path, fifo: Path) -> None:
    path = source(tmp_path, f'.text\n.include "{fifo}"\n')
    one_line_error(asm(path, timeout=60), f"{path}:2:", str(fifo), "is a FIFO")


def test_an_include_of_a_directory_is_refused(tmp_path: Path) -> None:
    path = source(tmp_path, f'.text\n.include "{tmp_path}"\n')
    one_line_error(asm(path, timeout=60), f"{path}:2:", "is a directory")


def test_an_incbin_of_dev_zero_is_refused(tmp_path: Path) -> None:
    path = source(tmp_path, '.text\n.incbin "/dev/zero"\n')
    one_line_error(asm(path, timeout=60), f"{path}:2:", "/dev/zero", "is a character device")


def test_a_cpp_include_of_a_fifo_times_out(tmp_path: Path, fifo: Path) -> None:
    path = source(tmp_path, f'#include "{fifo}"\nnop\n')
    prelude = "import emu.asm.preprocess as p\np.CPP_TIMEOUT_SECONDS = 2.0"
    message = one_line_error(asm(path, timeout=60, prelude=prelude), str(path))
    assert "ran for more than 2 s" in message
    # cpp's cc1, blocked opening the FIFO, is killed with it (it was left behind).
    left = subprocess.run(["pgrep", "-f", str(tmp_path)], capture_output=True, text=True)
    assert left.stdout == "", left.stdout


def test_a_cpp_include_of_dev_zero_is_bounded(tmp_path: Path) -> None:
    path = source(tmp_path, '#include "/dev/zero"\nnop\n')
    message = one_line_error(asm(path, timeout=120), f"{path}:1:")
    assert "ran out of memory" in message or "larger than" in message


def test_a_source_over_the_size_limit_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "huge.S"
    with path.open("wb") as stream:
        stream.truncate(MAX_SOURCE_BYTES + 1)  # sparse: no disk space used
    one_line_error(asm(path), str(path), "more than the 64 MiB")


def test_an_image_over_the_size_limit_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "huge.bin"
    with path.open("wb") as stream:
        stream.truncate(MAX_IMAGE_FILE_BYTES + 1)
    one_line_error(bootemu("run", path), str(path), "more than the 1024 MiB")


# 5. Runaway expansion ------------------------------------------------------


def test_a_recursive_macro_doubling_its_arguments_is_refused(tmp_path: Path) -> None:
    path = source(tmp_path, ".macro m a:vararg\nm \\a \\a\n.endm\nm x\n")
    one_line_error(asm(path), f"{path}:4:", "macro `m'")


def test_a_define_doubled_thirty_times_is_refused(tmp_path: Path) -> None:
    defines = "".join(f"#define A{i} A{i - 1} A{i - 1}\n" for i in range(1, 31))
    path = source(tmp_path, f"#define A0 x\n{defines}A30\n")
    message = one_line_error(asm(path, timeout=120), f"{path}:32:")
    assert "preprocess" in message


def test_preprocessed_output_is_capped(tmp_path: Path) -> None:
    word = "x" * 40
    levels = [f"#define A0 {word}\n"] + [f"#define A{i} " + f" A{i - 1}" * 16 + "\n"
                                         for i in range(1, 6)]
    path = source(tmp_path, "nop\n" + "".join(levels) + "A5\n" * 8)
    message = one_line_error(asm(path, timeout=120), str(path))
    assert "larger than 64 MiB" in message


# 6. Numbers beyond 64 bits -------------------------------------------------


def test_a_define_beyond_64_bits_is_a_usage_error() -> None:
    usage_error(bootemu("check", "-D", "XEN_VIRT_START=0x10000000000000000"), "-D")


def test_a_literal_beyond_64_bits_is_refused_at_its_line(tmp_path: Path) -> None:
    path = source(tmp_path, ".text\n.quad 0x10000000000000000\n")
    one_line_error(asm(path), f"{path}:2:", "does not fit in 64 bits")
    path = source(tmp_path, ".text\n.quad " + "9" * 10_000 + "\n", "decimal.S")
    one_line_error(asm(path), f"{path}:2:", "does not fit in 64 bits")


def test_a_define_expression_beyond_64_bits_is_refused_where_used(tmp_path: Path) -> None:
    path = source(tmp_path, ".text\nldr x0, =VALUE\n")
    one_line_error(asm(path, "-D", "VALUE=(0x10000000000000000)"), f"{path}:2:", "64 bits")


# 7. Messages with newlines -------------------------------------------------


def test_an_error_directive_with_newlines_is_one_line(tmp_path: Path) -> None:
    path = source(tmp_path, '.text\n.error "a\\nb\\nc"\n')
    message = one_line_error(asm(path), f"{path}:2:")
    assert message.endswith("a\\nb\\nc")


# 8, 9. Binary and empty special sources ------------------------------------


def test_a_file_of_nul_bytes_is_named_as_binary(tmp_path: Path) -> None:
    path = tmp_path / "zeros.S"
    path.write_bytes(bytes(1 << 20))
    one_line_error(asm(path), str(path), "binary")
    including = source(tmp_path, '#include "zeros.S"\n', "including.S")
    one_line_error(asm(including), f"{path}:1:", "binary")


def test_dev_null_is_not_a_regular_file() -> None:
    message = one_line_error(bootemu("check", "/dev/null"), "/dev/null")
    assert "not a regular file" in message and "no such file" not in message


# 10. Empty or missing option values ---------------------------------------


@pytest.mark.parametrize("command", ["check", "run"])
def test_an_empty_until_is_a_usage_error(command: str) -> None:
    usage_error(bootemu(command, "--until", ""), "--until")


def test_a_missing_include_directory_is_a_usage_error() -> None:
    usage_error(bootemu("check", "-I", "/nonexistent"), "-I")


# 11. Image headers ---------------------------------------------------------


def test_an_image_with_an_unaligned_text_offset_is_refused(tmp_path: Path) -> None:
    header = struct.pack("<IIQQQQQQ4sI", 0x14000010, 0, 0x80002, 0x1000, 2, 0, 0, 0,
                         b"ARM\x64", 0)
    path = tmp_path / "Image"
    path.write_bytes(header + bytes(0x1000 - len(header)))
    one_line_error(bootemu("run", path), str(path), "text_offset 0x80002")


def test_an_elf_entry_that_is_not_4_aligned_stops_at_once(tmp_path: Path) -> None:
    """An entry of 1 mod 0x400 used to make the run loop spin (Unicorn's end
    address was the entry itself) past any --max-insns.  A PC that is not a
    multiple of 4 is a PC alignment fault (DDI 0487 D1.3.5): the run ends there.
    The ELF comes from GNU as and ld, so bootemu's own assembler plays no part."""
    (tmp_path / "odd.s").write_text(".text\n.global _start\n_start:\n    b .\n    .space 0x800\n")
    subprocess.run(["aarch64-linux-gnu-as", "odd.s", "-o", "odd.o"], cwd=tmp_path, check=True)
    subprocess.run(["aarch64-linux-gnu-ld", "-Ttext=0x40000000", "-e", "0x40000401", "odd.o",
                    "-o", "odd.elf"], cwd=tmp_path, check=True)
    result = bootemu("run", tmp_path / "odd.elf", "--max-insns", "10", timeout=60)
    assert result.returncode == 1, result.stderr
    assert "PC alignment fault: the PC 0x40000401 is not a multiple of 4" in result.stderr
    assert "Traceback" not in result.stderr


# 12. Found by the fuzzer (bench/FUZZ.md; tests/test_fuzz_inputs.py) ---------


def test_a_small_file_is_read_without_a_buffer_the_size_of_the_limit(tmp_path: Path) -> None:
    """Bug 1: read_limited asked for ``limit + 1`` bytes at once, a 1 GiB buffer for
    any image; with a 1 TiB limit that is a MemoryError at once."""
    path = tmp_path / "blob"
    path.write_bytes(b"\x1f\x20\x03\xd5")
    assert read_limited(path, 1 << 40) == b"\x1f\x20\x03\xd5"
    data = os.urandom(3 << 20) + b"tail"  # more than one 1 MiB chunk
    path.write_bytes(data)
    assert read_limited(path, 1 << 40) == data
    with pytest.raises(FileRefused, match="more than the 3 MiB"):
        read_limited(path, 3 << 20)


def test_a_proc_file_of_size_0_is_read_whole() -> None:
    """/proc's files say they are 0 bytes long: read in chunks up to their end."""
    assert b"\nPid:" in read_limited("/proc/self/status", 1 << 20)


def test_nested_rept_is_refused_at_its_line_before_expanding(tmp_path: Path) -> None:
    """Bug 2: nested .rept 1000 x3 was expanded to the 2,000,000-statement cap (1.1 GiB,
    ~45 s) before it was refused; now the product of the counts is refused first."""
    path = source(tmp_path, ".text\n.rept 1000\n.rept 1000\n.rept 1000\nnop\n.endr\n.endr\n"
                            ".endr\n")
    message = one_line_error(asm(path, timeout=30), f"{path}:2:", ".rept 1000")
    assert "more than 1000000 statements" in message
    # Through a macro too: the repetitions of its body count.
    path = source(tmp_path, ".text\n.macro block\n.rept 1000\n.rept 1000\nnop\n.endr\n.endr\n"
                            ".endm\n.rept 10\nblock\n.endr\n", "macro.S")
    one_line_error(asm(path, timeout=30), f"{path}:9:", "more than 1000000 statements")


def test_nested_rept_within_the_cap_is_read(tmp_path: Path) -> None:
    path = source(tmp_path, ".text\n.rept 3\n.rept 4\nnop\n.endr\n.endr\n")
    result = asm(path, timeout=60)
    assert result.returncode == 0, result.stderr
    assert path.with_suffix(".bin").read_bytes() == (0xD503201F).to_bytes(4, "little") * 12


def _clashing(monkeypatch: pytest.MonkeyPatch, load_address: int, memory_size: int,
              regions: tuple[Region, ...]) -> list[str]:
    """The regions the identity-clash rule names for an image at ``load_address``."""
    monkeypatch.setattr(identity_clash, "image_layout",
                        lambda image: Layout(name="test", regions=regions))
    image = SimpleNamespace(load_address=load_address, memory_size=memory_size,
                            entry=load_address)
    context = SimpleNamespace(image=image, on_finding=None, symbolize=lambda va, pa=None: "")
    rule = identity_clash.IdentityClash(cast(CheckContext, context))
    rule.finish(cast(Stop, None))
    if not rule.findings:
        return []
    return [line.split(":", 1)[0] for line in rule.findings[0].evidence]


def test_identity_clash_of_a_region_of_2_to_the_25_slots(
        monkeypatch: pytest.MonkeyPatch) -> None:
    """Bug 3: the rule made a set of every level-0 slot of each region: 2^25 of them
    (2.2 GiB) for -D XEN_VIRT_SIZE=0xffffffffffe00000."""
    huge = Region("xen", 0x0000_0a00_0000_0000, 0xFFFF_FFFF_FFE0_0000)
    assert len(huge.slots()) > 1 << 24
    assert _clashing(monkeypatch, 0x4000_0000, 0x20_0000, (huge,)) == []
    assert _clashing(monkeypatch, 0x0000_8000_0000_0000, 0x20_0000, (huge,)) == ["xen"]


def test_identity_clash_verdicts_are_those_of_the_slot_sets(
        monkeypatch: pytest.MonkeyPatch) -> None:
    """Ranges of slots intersected by their ends give the verdicts that sets of
    slots gave, at slot boundaries and for empty images and regions."""
    slot = 1 << 39
    regions = (Region("a", 0, 0x20_0000), Region("b", slot, 2 * slot),
               Region("c", 3 * slot - 0x1000, 0x2000), Region("empty", 5 * slot, 0))
    for load_address in (0, 0x4000_0000, slot - 0x1000, slot, 3 * slot - 0x2000,
                         4 * slot, 5 * slot):
        for memory_size in (0, 0x1000, 0x2000, slot, 3 * slot):
            image_slots = set(range(load_address >> 39,
                                    ((load_address + memory_size - 1) >> 39) + 1))
            expected = [r.name for r in regions if image_slots & set(r.slots())]
            assert _clashing(monkeypatch, load_address, memory_size, regions) == expected, (
                hex(load_address), hex(memory_size))


def test_a_load_address_whose_ram_passes_2_to_the_64_is_refused(tmp_path: Path) -> None:
    """Bug 4: RAM placed around the image ran past 2^64 and Unicorn refused it,
    naming neither the file nor the option."""
    raw = tmp_path / "boot.bin"
    raw.write_bytes((0x14000000).to_bytes(4, "little"))  # b .
    message = one_line_error(bootemu("run", raw, "--format", "raw", "--load-address",
                                     "0xfffffffffffff000", timeout=60),
                             str(raw), "--load-address", "--ram")
    assert "past the top of the 64-bit address space" in message


@pytest.mark.parametrize("seconds", ["inf", "-inf", "nan", "1e308", "31536001"])
def test_a_timeout_beyond_a_year_is_a_usage_error(seconds: str) -> None:
    """Bug 5: --timeout inf reached threading's wait: an OverflowError traceback."""
    usage_error(bootemu("check", "--timeout", seconds, timeout=60), "--timeout")


def test_an_elf_segment_past_2_to_the_64_is_refused_at_load(tmp_path: Path) -> None:
    """Bug 6: a p_memsz sending a segment past 2^64 reached the device tree
    (struct.error); it is refused when the ELF file is read."""
    path = source(tmp_path, ".text\nb .\n")
    elf_path = tmp_path / "boot.elf"
    assert asm(path, "--elf", elf_path, "--base", "0x40000000", timeout=60).returncode == 0
    elf = bytearray(elf_path.read_bytes())
    phoff = int.from_bytes(elf[32:40], "little")
    elf[phoff + 40:phoff + 48] = (0xFFFF_FFFF_FFFF_FFFF).to_bytes(8, "little")  # p_memsz
    elf_path.write_bytes(elf)
    message = one_line_error(bootemu("run", elf_path, timeout=60), str(elf_path),
                             "segment 0")
    assert "past the top of the 64-bit address space" in message


def test_a_read_error_names_the_file(tmp_path: Path) -> None:
    """Bug 7: reading /proc/self/mem fails in read() (EIO), whose OSError names no
    file: 'bootemu: error: : Input/output error'."""
    with pytest.raises(OSError) as raised:
        read_limited("/proc/self/mem", 1 << 20)
    assert raised.value.filename == "/proc/self/mem"
    one_line_error(bootemu("check", "--dtb", "/proc/self/mem", timeout=60), "/proc/self/mem",
                   "Input/output error")
    path = source(tmp_path, '.text\n.incbin "/proc/self/mem"\n')
    one_line_error(asm(path, timeout=60), f"{path}:2:", "/proc/self/mem")


def test_a_sweep_of_short_boots_fits_in_the_memory_limit() -> None:
    """Each machine's engine reserved Unicorn's 1 GiB translation buffer, and a
    boot's machine lives until a full collection: the second boot of `sweep
    --until '#0'` (boots too short to trigger one) could not start under 2 GiB
    of address space ('Could not allocate dynamic translator buffer', exit 1)."""
    done = bootemu("sweep", ROOT / "asm" / "head.S", "--until", "#0", "--load-addresses",
                   "0:64G:2G", "-j", "1", timeout=120)
    assert done.returncode == 0, done.stderr[-2000:]
    assert "32 of 32 boot(s) clean" in done.stdout


def test_a_sweep_target_the_program_lacks_is_refused_before_booting() -> None:
    one_line_error(bootemu("sweep", ROOT / "asm" / "head.S", "--until", "nosuch",
                           "--load-addresses", "0:4G:1G", "-j", "2", timeout=60),
                   "--until", "no symbol 'nosuch'")
