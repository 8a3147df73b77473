"""Real boot images: ELF, arm64 Image (plain and gzipped) and raw files, the
device tree, the UART, semihosting, the EL2 -> EL1 drop and calls with no
firmware behind them.

The test programs (tests/images) are our own C and assembly, built here with
Debian's aarch64-linux-gnu-gcc into a temporary directory.
"""

from __future__ import annotations

import gzip
import struct
import subprocess
import sys
import time
from pathlib import Path

import pytest
from conftest import LOAD, Tables
from conftest import build_image as assemble_image

from emu.board.board import Board
from emu.board.fdt import FdtError, FdtNode, board_facts, boot_tree, decode, encode
from emu.board.firmware import PSCI_NOT_SUPPORTED
from emu.board.spec import BootSpec, load_image, parse_ram
from emu.checks.run import CheckRun, check_image
from emu.image.arm64 import parse_arm64_header
from emu.image.boot_image import ImageError
from emu.image.load import ImageKind, detect_kind
from emu.machine.events import MmuDisable, MmuEnable, SysRegWrite, TlbInvalidate, TtbrWrite
from emu.machine.machine import Machine
from emu.machine.stop import StopKind

sys.path.insert(0, str(Path(__file__).resolve().parent / "images"))
from build import EL1_VIRT, EL2_LOAD, EL2_VIRT, Built, build, toolchain_missing  # noqa: E402

BOOTEMU = [sys.executable, "-m", "emu.cli.main"]
needs_gcc = pytest.mark.skipif(toolchain_missing() is not None,
                               reason=toolchain_missing() or "")


def bootemu(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([*BOOTEMU, *args], capture_output=True, text=True, timeout=120)


@pytest.fixture(scope="session")
def el2(tmp_path_factory: pytest.TempPathFactory) -> Built:
    return build("el2", tmp_path_factory.mktemp("el2"))


@pytest.fixture(scope="session")
def el1(tmp_path_factory: pytest.TempPathFactory) -> Built:
    return build("el1", tmp_path_factory.mktemp("el1"))


@pytest.fixture(scope="session")
def el1_live(tmp_path_factory: pytest.TempPathFactory) -> Built:
    return build("el1-live", tmp_path_factory.mktemp("el1-live"))


def spin_checksum(rounds: int) -> int:
    """What el2_main's spin() computes, for checking that loads and stores went right."""
    mask = (1 << 64) - 1
    acc, workspace = 0x9E3779B97F4A7C15, [0] * 1024
    for i in range(rounds):
        slot = (i * 7) & 1023
        workspace[slot] = (workspace[slot] + (acc ^ i)) & mask
        acc = ((acc << 5) + (acc >> 3) + workspace[slot]) & mask
    return acc


def timeline(run: CheckRun) -> list[tuple[str, int, int, int | None, str, str]]:
    return [(e.kind, e.index, e.pc, e.pa, run.image.symbolize(e.pc, e.pa), e.describe())
            for e in run.events]


# -- the EL2 program: ELF --------------------------------------------------------


@needs_gcc
def test_el2_elf_boots_checks_clean_prints_and_exits_0(el2: Built) -> None:
    image = load_image(el2.elf)
    assert image.kind == "elf"
    assert (image.load_address, image.link_address) == (EL2_LOAD, EL2_VIRT)
    assert image.entry == EL2_LOAD  # e_entry is the link address; it runs at its PA
    run = check_image(image, until="exit", board=Board(bootargs="spin=1000"))
    assert run.verdict == "clean", (run.stop.message, [f.message for f in run.findings])
    assert run.stop.kind is StopKind.EXIT and run.exit_status == 0

    # C ran at its link address: it prints its own address, taken PC-relative.
    assert f"hello from C at EL2, el2_main at VA {image.symbols['el2_main']:#x}\n" in run.output
    assert "bootargs: spin=1000\nRAM: 0x40000000+0x8000000\n" in run.output
    assert f"spin 1000: {spin_checksum(1000):#x}\n" in run.output

    # The MMU goes on from identity-mapped code, and the TTBR switch runs at PA == VA
    # with the MMU off, named the same as at its link address.
    kinds = [(type(e), run.image.symbolize(e.pc, e.pa)) for e in run.events
             if isinstance(e, MmuEnable | MmuDisable | TtbrWrite)]
    assert [k for k, _ in kinds] == [TtbrWrite, MmuEnable, MmuDisable, TtbrWrite, MmuEnable]
    assert [s.split("+")[0] for _, s in kinds] == ["enable_mmu"] * 2 + ["switch_ttbr"] * 3
    switch = next(e for e in run.events if isinstance(e, MmuDisable))
    assert switch.pc == switch.pa == image.symbol_physical("switch_ttbr") + 0xC
    ttbr = [e for e in run.events if isinstance(e, TtbrWrite)][1]
    assert not ttbr.mmu_enabled and ttbr.old != ttbr.new
    tlbi = [e.index for e in run.events if isinstance(e, TlbInvalidate)]
    assert any(switch.index < index < ttbr.index for index in tlbi)
    assert len(run.windows) == 2


@needs_gcc
def test_el2_output_goes_through_both_the_uart_and_semihosting(el2: Built) -> None:
    machine = Machine(load_image(el2.elf), Board(bootargs="status=0"))
    stop = machine.run(max_insns=5_000_000)
    assert stop.kind is StopKind.EXIT and stop.status == 0, stop.message
    uart, semihosting = machine.console.text("uart"), machine.console.text("semihosting")
    for line in ("hello from C at EL2", "switched to the runtime tables\n", "bye\n"):
        assert line in uart and line in semihosting
    # SYS_WRITE (to the handle SYS_OPEN gave for ":tt") and SYS_WRITEC only go to semihosting.
    assert "written with SYS_WRITE\n!\n" in semihosting and "SYS_WRITE" not in uart
    names = [call.name for call in machine.devices.semihosting.calls]
    assert {"SYS_OPEN", "SYS_WRITE0", "SYS_WRITE", "SYS_WRITEC", "SYS_EXIT"} <= set(names)
    # Semihosting calls from C carry virtual addresses (after the MMU is on).
    assert any(call.pc >= EL2_VIRT for call in machine.devices.semihosting.calls)
    # After the switch the UART is reached through its new virtual address.
    assert machine.devices.uart is not None and machine.devices.uart.base == 0x0900_0000


@needs_gcc
def test_a_nonzero_exit_status_is_a_failed_boot(el2: Built) -> None:
    run = check_image(load_image(el2.elf), until="exit", board=Board(bootargs="status=3"))
    assert run.exit_status == 3
    assert run.verdict == "boot-failed" and run.exit_code == 1
    assert "status 3" in run.stop.message


# -- the same program as an arm64 Image --------------------------------------------


@needs_gcc
def test_image_and_gzipped_image_with_symbols_give_the_elf_events_and_names(el2: Built) -> None:
    board = Board(bootargs="spin=10")
    reference = check_image(load_image(el2.elf), until="exit", board=board)
    for path in (el2.image, el2.image_gz):
        image = load_image(path, symbols=el2.elf, board=board)
        assert image.kind == "image" and image.header is not None
        assert image.header.text_offset == 0x20_0000
        assert image.load_address == EL2_LOAD  # RAM base 0x40000000 + text_offset
        assert image.link_address == EL2_VIRT
        assert image.bss is not None  # image_size covers BSS; the loader leaves garbage
        run = check_image(image, until="exit", board=board)
        assert run.verdict == "clean", run.stop.message
        assert timeline(run) == timeline(reference)
        assert run.output == reference.output
        # The same PC is named before the MMU is on (PA) and after (VA).
        assert image.symbolize(image.symbol_physical("switch_ttbr")) == "switch_ttbr"
        assert image.symbolize(image.symbols["el2_main"] + 8) == "el2_main+0x8"


@needs_gcc
def test_an_image_without_symbols_is_named_by_its_file(el2: Built) -> None:
    image = load_image(el2.image)
    assert image.symbolize(EL2_LOAD + 0x40) == "el2.Image+0x40"
    run = check_image(image, until="exit")
    assert run.verdict == "clean"


@needs_gcc
def test_raw_binary_at_an_address(el2: Built, tmp_path: Path) -> None:
    raw = tmp_path / "el2.bin"
    raw.write_bytes(el2.image.read_bytes())
    # Its bytes hold an Image header, so only --format raw makes it a raw binary.
    image = load_image(raw, kind=ImageKind.RAW, load_address=EL2_LOAD, symbols=el2.elf)
    assert image.kind == "raw" and image.entry == EL2_LOAD
    run = check_image(image, until="exit")
    assert run.verdict == "clean", run.stop.message
    assert "bye" in run.output


@needs_gcc
def test_ram_and_device_tree_options_reach_the_guest(el2: Built, tmp_path: Path) -> None:
    image, board = BootSpec(el2.image, ram=(0x8000_0000, 256 << 20), bootargs="hi").load()
    assert image.load_address == 0x8020_0000
    run = check_image(image, until="exit", board=board)
    assert run.verdict == "clean", run.stop.message
    assert "bootargs: hi\nRAM: 0x80000000+0x10000000\n" in run.output

    # A device tree of our own: its memory is the RAM, its PL011 is where the UART goes.
    dtb = tmp_path / "board.dtb"
    dtb.write_bytes(encode(boot_tree(ram_base=0x4000_0000, ram_size=64 << 20,
                                     bootargs="from a file", uart_base=0x0A00_0000)))
    image, board = BootSpec(el2.elf, dtb=dtb).load()
    machine = Machine(image, board)
    stop = machine.run(max_insns=5_000_000)
    assert stop.kind is StopKind.EXIT and stop.status == 0, stop.message
    assert machine.devices.uart is not None and machine.devices.uart.base == 0x0A00_0000
    assert "bootargs: from a file\nRAM: 0x40000000+0x4000000\n" in machine.console.text("uart")
    assert machine.reg("x19") == machine.dtb_address == 0x4000_0000 + (62 << 20)


@needs_gcc
def test_a_boot_of_50_million_instructions_completes_in_check_mode(el2: Built) -> None:
    rounds = 4_400_000  # about 11.7 instructions a round
    started = time.perf_counter()
    run = check_image(load_image(el2.elf), until="exit", max_insns=100_000_000,
                      board=Board(bootargs=f"spin={rounds}"))
    elapsed = time.perf_counter() - started
    assert run.verdict == "clean", run.stop.message
    assert run.executed >= 50_000_000
    assert f"spin {rounds}: 0x" in run.output
    assert elapsed < 20, f"{run.executed} instructions took {elapsed:.1f} s"


# -- the EL1 program ---------------------------------------------------------------


@needs_gcc
def test_el1_drop_and_ttbr1_replaced_through_a_reserved_table_is_clean(el1: Built) -> None:
    image = load_image(el1.elf)
    run = check_image(image, until="exit")
    assert run.verdict == "clean", (run.stop.message, [f.message for f in run.findings])
    assert "hello from C at EL1, el1_main at VA 0xffff8000002" in run.output
    assert "TTBR1 replaced" in run.output
    hcr = next(e for e in run.events if isinstance(e, SysRegWrite) and e.register == "HCR_EL2")
    assert hcr.el == 2 and hcr.new & (1 << 31) and not hcr.new & (1 << 34)  # RW, no E2H
    enable = next(e for e in run.events if isinstance(e, MmuEnable))
    assert enable.el == 1 and enable.register == "SCTLR_EL1"
    # TTBR1, MMU on: live tables -> the reserved empty table, TLBI, -> the new tables.
    writes = [e for e in run.events if isinstance(e, TtbrWrite) and e.mmu_enabled]
    assert [w.register for w in writes] == ["TTBR1_EL1", "TTBR1_EL1"]
    reserved = image.symbol_physical("reserved_pg_dir")
    assert writes[0].new == reserved and writes[1].old == reserved
    assert any(isinstance(e, TlbInvalidate) and e.operation == "TLBI VMALLE1"
               and writes[0].index < e.index < writes[1].index for e in run.events)
    assert all(image.symbolize(w.pc, w.pa).startswith("replace_ttbr1") for w in writes)
    assert image.symbols["el1_main"] >= EL1_VIRT


@needs_gcc
def test_el1_program_entered_at_el1(el1: Built) -> None:
    run = check_image(load_image(el1.elf), until="exit", board=Board(el=1))
    assert run.verdict == "clean", run.stop.message
    assert not any(isinstance(e, SysRegWrite) and e.register == "HCR_EL2" for e in run.events)
    assert "hello from C at EL1" in run.output


@needs_gcc
def test_swapping_ttbr1_from_live_tables_to_live_tables_is_flagged(el1_live: Built) -> None:
    image = load_image(el1_live.elf)
    run = check_image(image, until="exit")
    assert {f.rule for f in run.findings} == {"ttbr-switch-live"}, \
        [f.message for f in run.findings]
    [finding] = run.findings
    assert finding.symbol.startswith("replace_ttbr1")
    assert "TTBR1_EL1" in finding.message


# -- the command line ---------------------------------------------------------------


@needs_gcc
def test_run_prints_the_guest_output_and_ends_with_its_status(el2: Built) -> None:
    result = bootemu("run", str(el2.elf))
    assert result.returncode == 0, result.stderr
    assert result.stdout.count("hello from C at EL2") == 2  # UART and semihosting
    assert "written with SYS_WRITE" in result.stdout
    [line] = result.stderr.splitlines()
    assert "exited with status 0" in line
    failed = bootemu("run", str(el2.image_gz), "--symbols", str(el2.elf),
                     "--bootargs", "status=5")
    assert failed.returncode == 1
    assert "exited with status 5" in failed.stderr and "sh_exit" in failed.stderr
    arrived = bootemu("run", str(el2.elf), "--until", "el2_main")
    assert arrived.returncode == 0 and "arrived at" in arrived.stderr
    assert "hello" not in arrived.stdout


@needs_gcc
def test_check_and_trace_work_on_images(el2: Built, el1: Built, el1_live: Built) -> None:
    result = bootemu("check", str(el2.image_gz), "--symbols", str(el2.elf))
    assert result.returncode == 0, result.stdout + result.stderr
    assert "switch_ttbr" in result.stdout and "Verdict: clean" in result.stdout
    flagged = bootemu("check", str(el1_live.elf), "--json")
    assert flagged.returncode == 1
    assert "ttbr-switch-live" in flagged.stdout
    entered_el1 = bootemu("check", str(el1.elf), "--el", "1")
    assert entered_el1.returncode == 0, entered_el1.stdout
    trace = bootemu("trace", str(el2.elf), "--until", "switch_ttbr", "--window", "2")
    assert trace.returncode == 0, trace.stderr
    assert "enable_mmu" in trace.stdout and "arrived at" in trace.stdout


def _one_line_error(result: subprocess.CompletedProcess[str], *words: str) -> str:
    assert result.returncode == 2, (result.stdout, result.stderr)
    assert "Traceback" not in result.stderr
    [line] = result.stderr.strip().splitlines()
    for word in words:
        assert word in line, line
    return line


def _patched(source: Path, target: Path, offset: int, data: bytes) -> Path:
    content = bytearray(source.read_bytes())
    content[offset:offset + len(data)] = data
    target.write_bytes(bytes(content))
    return target


@needs_gcc
def test_malformed_images_give_one_clear_error_and_exit_2(el2: Built, tmp_path: Path) -> None:
    image = el2.image.read_bytes()
    truncated = tmp_path / "truncated.Image"
    truncated.write_bytes(image[:40])
    _one_line_error(bootemu("run", str(truncated)), str(truncated), "truncated",
                    "header")

    wrong_magic = _patched(el2.image, tmp_path / "magic.Image", 0x38, b"ARM\x65")
    _one_line_error(bootemu("check", str(wrong_magic), "--format", "image"),
                    str(wrong_magic), "magic")

    too_big = _patched(el2.image, tmp_path / "big.Image", 16, struct.pack("<Q", 256 << 20))
    _one_line_error(bootemu("run", str(too_big)), str(too_big), "does not fit in RAM")

    elf = el2.elf.read_bytes()
    no_load = _patched(el2.elf, tmp_path / "noload.elf", 56, struct.pack("<H", 0))  # e_phnum
    _one_line_error(bootemu("check", str(no_load)), str(no_load), "PT_LOAD")

    phoff = struct.unpack_from("<Q", elf, 32)[0]
    over_dtb = _patched(el2.elf, tmp_path / "overdtb.elf", phoff + 24,  # p_paddr
                        struct.pack("<Q", 0x4000_0000 + (126 << 20)))
    _one_line_error(bootemu("run", str(over_dtb)), str(over_dtb), "overlaps the device tree")

    cut = tmp_path / "cut.Image.gz"
    cut.write_bytes(el2.image_gz.read_bytes()[:-40])
    _one_line_error(bootemu("trace", str(cut)), str(cut), "gzip", "cut short")

    bad_dtb = tmp_path / "bad.dtb"
    bad_dtb.write_bytes(b"\xd0\x0d\xfe\xee" + bytes(60))
    _one_line_error(bootemu("run", str(el2.elf), "--dtb", str(bad_dtb)), str(bad_dtb),
                    "device tree")

    other = tmp_path / "other.elf"
    other.write_bytes(elf[:0x40])  # an ELF header and nothing else
    _one_line_error(bootemu("run", str(el2.image), "--symbols", str(other)), str(other))

    _one_line_error(bootemu("run", str(el2.elf), "--ram", "0x80000000:128M"),
                    "does not fit in RAM")
    assert bootemu("run", str(el2.elf), "--ram", "nonsense").returncode == 2
    _one_line_error(bootemu("run", str(el2.elf), "-D", "X=1"), "-D and -I")


# -- the loader, the header, the device tree ------------------------------------------


def test_kinds_are_told_apart_by_content_then_name(tmp_path: Path) -> None:
    header = bytearray(64)
    header[0x38:0x3C] = b"ARM\x64"
    assert detect_kind(Path("x"), b"\x7fELF\x02\x01") is ImageKind.ELF
    assert detect_kind(Path("x"), bytes(header)) is ImageKind.IMAGE
    assert detect_kind(Path("x"), gzip.compress(b"abc")) is ImageKind.IMAGE
    assert detect_kind(Path("boot.S"), b"\0\0") is ImageKind.ASM
    assert detect_kind(Path("head"), b"_start:\n    nop\n") is ImageKind.ASM
    assert detect_kind(Path("fw.bin"), b"\0\1\2") is ImageKind.RAW
    assert detect_kind(Path("Image"), b"\0" * 8) is ImageKind.IMAGE
    with pytest.raises(ImageError, match="--format"):
        detect_kind(Path("blob"), b"\0\xff" * 8)


def test_ram_and_sizes_parse() -> None:
    assert parse_ram("0x40000000:128M") == (0x4000_0000, 128 << 20)
    assert parse_ram("0x8_8000_0000:2G") == (0x8_8000_0000, 2 << 30)
    for bad in ("0x40000000", "x:1M", "0x40000000:0"):
        with pytest.raises(ValueError):
            parse_ram(bad)


def _header(code0: int = 0x14000010, *, text_offset: int = 0x80000, image_size: int = 0x100,
            flags: int = 2, magic: bytes = b"ARM\x64", code1: int = 0) -> bytes:
    return struct.pack("<IIQQQQQQ4sI", code0, code1, text_offset, image_size, flags, 0, 0, 0,
                       magic, 0)


def test_the_image_header_is_validated() -> None:
    header = parse_arm64_header(_header(), "Image")
    assert (header.text_offset, header.image_size, header.page_size) == (0x80000, 0x100, 4096)
    # An EFI stub's "MZ" first word is fine when the second is the branch.
    parse_arm64_header(_header(0x91005A4D, code1=0x14000010), "Image")
    # Before Linux 3.17: image_size 0, text_offset 0x80000 whatever the field says.
    assert parse_arm64_header(_header(text_offset=0, image_size=0), "Image").text_offset \
        == 0x80000
    for bad, match in ((_header()[:63], "truncated"), (_header(magic=b"ARM\x00"), "magic"),
                       (_header(0xD503201F), "no branch"), (_header(flags=3), "big-endian"),
                       (_header(image_size=0x20), "smaller than the file")):
        with pytest.raises(ImageError, match=match):
            parse_arm64_header(bad, "Image")


def test_the_generated_device_tree_describes_the_board() -> None:
    blob = encode(boot_tree(ram_base=0x4000_0000, ram_size=128 << 20, bootargs="a b=c",
                            uart_base=0x0900_0000))
    root = decode(blob)
    facts = board_facts(root)
    assert facts.memory == ((0x4000_0000, 128 << 20),)
    assert facts.uart == 0x0900_0000
    assert facts.bootargs == "a b=c"
    assert root.find("/chosen").string("stdout-path") == "/pl011@9000000"
    assert root.find("/cpus/cpu@0").string("device_type") == "cpu"
    assert encode(root) == blob  # decoding loses nothing


def test_device_tree_reg_goes_through_ranges() -> None:
    root = FdtNode("", {"#address-cells": struct.pack(">I", 1),
                        "#size-cells": struct.pack(">I", 1)})
    soc = root.add("soc", {"#address-cells": struct.pack(">I", 1),
                           "#size-cells": struct.pack(">I", 1),
                           "ranges": struct.pack(">III", 0, 0x1000_0000, 0x100_0000)})
    soc.add("serial@9000", {"compatible": b"arm,pl011\0arm,primecell\0",
                            "reg": struct.pack(">II", 0x9000, 0x1000)})
    assert board_facts(decode(encode(root))).uart == 0x1000_9000


def test_malformed_device_trees_are_refused() -> None:
    good = encode(boot_tree(ram_base=0x4000_0000, ram_size=1 << 27, bootargs="",
                            uart_base=None))
    for bad, match in ((good[:20], "truncated"), (b"\0" * 64, "magic"),
                       (good[:-8], "truncated"),
                       (good[:4] + struct.pack(">I", 3 << 20) + good[8:], "2 MiB")):
        with pytest.raises(FdtError, match=match):
            decode(bad)


def test_the_machine_passes_the_device_tree_and_ram_layout() -> None:
    tables = Tables()
    image = assemble_image("_start:\n    ldr w5, [x0]\n    ldr w6, [x0, #4]\ndone:\n"
                           "    b done\n", tables)
    machine = Machine(image)
    assert (machine.ram_base, machine.ram_size) == (0x4000_0000, 128 << 20)
    stop = machine.run([image.symbols["done"]])
    assert stop.kind is StopKind.ARRIVED
    assert machine.reg("w5") == 0xEDFE0DD0  # 0xd00dfeed, big-endian in memory
    assert machine.reg("w6") == int.from_bytes(struct.pack("<I", len(machine.plan.dtb)), "big")
    blob = bytes(machine.uc.mem_read(machine.dtb_address, len(machine.plan.dtb)))
    facts = board_facts(decode(blob))
    assert facts.memory == ((machine.ram_base, machine.ram_size),)


# -- semihosting and calls with no firmware -------------------------------------------

def _program(body: str, board: Board | None = None) -> Machine:
    image = assemble_image(f"_start:\n{body}\ndone:\n    b done\n.ltorg\n.align 4\n"
                           "data:\n    .asciz \"semihosting works\\n\"\n.align 4\n"
                           "block:\n    .quad 0x20026, 7\n", Tables())
    return Machine(image, board)


def test_semihosting_write0_writec_and_exit_extended() -> None:
    machine = _program("""
    mov x0, #4
    ldr x1, =data
    hlt #0xf000
    mov x5, x0
    mov x0, #3
    ldr x1, =data
    hlt #0xf000
    mov x0, #0x20
    ldr x1, =block
    hlt #0xf000
    mov x6, #1
""")
    stop = machine.run([machine.image.symbols["done"]], max_insns=1000)
    assert stop.kind is StopKind.EXIT and stop.status == 7, stop.message
    assert "SYS_EXIT_EXTENDED" in stop.message
    assert machine.console.text() == "semihosting works\ns"
    assert machine.reg("x5") == 0 and machine.reg("x6") == 0  # nothing ran after the exit
    assert stop.pc == machine.image.symbols["_start"] + 4 * 9  # at the HLT
    assert stop.index == 9


def test_semihosting_exit_with_another_reason_is_status_1_and_unknown_calls_fail() -> None:
    machine = _program("""
    mov x0, #0x30
    hlt #0xf000
    mov x5, x0
    ldr x1, =block
    mov x2, #0x23
    movk x2, #2, lsl #16
    str x2, [x1]
    mov x0, #0x18
    hlt #0xf000
""")
    stop = machine.run(max_insns=1000)
    assert stop.kind is StopKind.EXIT and stop.status == 1
    assert machine.reg("x5") == (1 << 64) - 1


def test_an_undefined_instruction_still_stops_the_run() -> None:
    machine = _program("    .long 0x00000001  // udf #1")
    stop = machine.run(max_insns=100)
    assert stop.kind is StopKind.EXCEPTION
    assert "undefined instruction" in stop.message


def test_smc_and_hvc_at_el1_are_answered_as_psci() -> None:
    """Entered at EL1 there is no EL2 guest: SMC and HVC both reach the board's
    PSCI (DEN 0022 5.1.1: PSCI_VERSION returns major << 16 | minor, here 1.1 as
    QEMU 7.2 reports it); a function outside PSCI (SMCCC's SiP range,
    0x82000000) gets NOT_SUPPORTED, -1 (SMCCC, DEN 0028 5.2)."""
    machine = _program("""
    mov x0, #0x84000000
    smc #0
    mov x5, x0
    mov x0, #0x84000000
    hvc #0
    mov x6, x0
    mov x0, #0x82000000
    smc #0
    mov x7, x0
""", Board(el=1))
    stop = machine.run([machine.image.symbols["done"]], max_insns=100)
    assert stop.kind is StopKind.ARRIVED, stop.message
    assert machine.reg("x5") == machine.reg("x6") == 0x0001_0001
    assert machine.reg("x7") == PSCI_NOT_SUPPORTED
    assert [c.outcome for c in machine.devices.firmware.calls] == [
        "psci PSCI_VERSION", "psci PSCI_VERSION", "not-supported"]


def test_hvc_from_el1_goes_to_the_guests_el2_vector() -> None:
    """Entered at EL2, the guest owns EL2: its hyp vector takes EL1's HVC (as Linux's
    hyp stub does), and ERET returns after the HVC."""
    image = assemble_image("""
_start:
    ldr x0, =vectors
    msr vbar_el2, x0
    mov x0, #(1 << 31)
    msr hcr_el2, x0
    mov x0, #0x3c5
    msr spsr_el2, x0
    ldr x0, =el1
    msr elr_el2, x0
    eret
el1:
    mov x0, #0x84000000
    hvc #0x42
    mov x7, #1
done:
    b done
.ltorg
.align 11
vectors:
    .space 0x400
    mrs x10, esr_el2
    mrs x11, elr_el2
    mrs x12, CurrentEL
    eret
""", Tables())
    machine = Machine(image)
    stop = machine.run([image.symbols["done"]], max_insns=100)
    assert stop.kind is StopKind.ARRIVED, stop.message
    assert machine.reg("x10") == (0x16 << 26) | (1 << 25) | 0x42  # EC HVC64, IL, imm16
    assert machine.reg("x11") == image.symbols["el1"] + 8  # the instruction after the HVC
    assert machine.reg("x12") == 2 << 2
    assert machine.reg("x7") == 1 and machine.el == 1
    assert machine.reg("x0") == 0x84000000  # not answered by any firmware
    assert image.symbols["vectors"] >= LOAD


HOUSEKEEPING = """
    mrs x1, midr_el1
    mrs x1, mpidr_el1
    mrs x1, id_aa64pfr0_el1
    mrs x1, id_aa64mmfr0_el1
    mrs x1, id_aa64mmfr1_el1
    mrs x1, id_aa64isar0_el1
    mrs x1, id_aa64dfr0_el1
    mrs x1, ctr_el0
    mrs x1, clidr_el1
    msr csselr_el1, xzr
    isb
    mrs x1, ccsidr_el1
    mrs x1, dczid_el0
    mov x1, #0
    dc cisw, x1
    dc isw, x1
    dc csw, x1
    ldr x1, =data
    dc civac, x1
    dc cvac, x1
    dc ivac, x1
    dc cvau, x1
    dc zva, x1
    ic ivau, x1
    ic iallu
    ic ialluis
    dsb sy
    isb
    mrs x1, cntfrq_el0
    mrs x1, cntpct_el0
    mrs x1, cntvct_el0
    mov x1, #0
    msr cntv_ctl_el0, x1
    msr cntp_ctl_el0, x1
    msr cntv_cval_el0, x1
    mrs x1, cntkctl_el1
    msr cntkctl_el1, x1
    msr daifset, #0xf
    mrs x1, mdscr_el1
    msr oslar_el1, xzr
    sevl
    wfe
    yield
"""


def test_what_boot_code_does_around_its_c_entry_does_not_stop_the_run() -> None:
    """ID registers, cache maintenance by VA and set/way, timers and counters, at EL2,
    at EL1 after an ERET from EL2, and entered at EL1."""
    el2_only = """
    mrs x1, cnthctl_el2
    msr cntvoff_el2, xzr
    mrs x1, mdcr_el2
    mrs x1, vpidr_el2
    mrs x1, cptr_el2
    mov x0, #(1 << 31)
    msr hcr_el2, x0
    mov x0, #3
    msr cnthctl_el2, x0
    mov x0, #0x3c5
    msr spsr_el2, x0
    ldr x0, =el1
    msr elr_el2, x0
    eret
el1:
"""
    tail = "done:\n    b done\n.ltorg\n.align 6\ndata:\n    .space 128\n"
    image = assemble_image("_start:\n" + HOUSEKEEPING + el2_only + HOUSEKEEPING + tail,
                           Tables())
    machine = Machine(image)
    stop = machine.run([image.symbols["done"]], max_insns=1000)
    assert stop.kind is StopKind.ARRIVED and machine.el == 1, stop.message
    image = assemble_image("_start:\n" + HOUSEKEEPING + tail, Tables())
    machine = Machine(image, Board(el=1))
    stop = machine.run([image.symbols["done"]], max_insns=1000)
    assert stop.kind is StopKind.ARRIVED and machine.el == 1, stop.message
