"""The hostile-input fuzzer (issue 15), bounded for CI: a fixed seed, 80 cases
across the five categories of bench/fuzz_inputs.py (sources, images, options,
random code, corrupted page tables), two at a time.

Each case is the real command line in a child, bounded in time and address
space (RLIMIT_AS 2 GiB as in test_hostile_input.py: under 1 GiB Unicorn cannot
reserve its translation buffer and no run starts).  None may print a
traceback, hang, end with a status other than 0, 1, 2 (124 with --timeout),
reach 1 GiB of RSS, or, for status 2, say more than one line or name none of
its files and options.  ``make fuzz`` runs the full fuzzer (bench/FUZZ.md).

Each bug the fuzzer found (bench/FUZZ.md) has a regression test here, its
command line as the fuzzer ran it.
"""

from __future__ import annotations

import sys
import time
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "bench"))
import fuzz_inputs as fuzz  # noqa: E402

SEED = 15
CASES = 80
JOBS = 2


@pytest.fixture(scope="module")
def context(tmp_path_factory: pytest.TempPathFactory) -> fuzz.Context:
    return fuzz.make_context(tmp_path_factory.mktemp("fuzz-context"))


def test_the_sample_covers_every_category(context: fuzz.Context) -> None:
    cases = fuzz.generate_cases(CASES, SEED, context, bomb=False)
    assert {case.category for case in cases} == set(fuzz.CATEGORIES)
    assert fuzz.generate_cases(CASES, SEED, context, bomb=False)[7].args == cases[7].args


def test_hostile_inputs_keep_the_promise(context: fuzz.Context, tmp_path: Path) -> None:
    cases = fuzz.generate_cases(CASES, SEED, context, bomb=False)
    started = time.monotonic()
    results = fuzz.run_all(cases, JOBS, tmp_path, wall_timeout=60)
    print(f"\n{len(results)} cases in {time.monotonic() - started:.1f} s")
    print(fuzz.table(results))
    bad = [result for result in results if fuzz.violations(result)]
    assert not bad, "\n" + fuzz.failures_text(bad, per_signature=10)


def test_a_small_image_is_read_under_a_1_gib_address_space_limit(tmp_path: Path) -> None:
    """Bug 1: every image was read into a 1 GiB + 1 byte buffer (the size limit)."""
    # The load address is refused after the read and before Unicorn starts
    # (which needs more than 1 GiB): a one-line error.
    case = fuzz.Case("images", "small-raw", ["run", "{d}/blob", "--format", "raw",
                                             "--load-address", "0x40000002"],
                     {"blob": b"\x1f\x20\x03\xd5"}, names=["{d}/blob"])
    result = fuzz.run_case(case, 0, tmp_path, wall_timeout=60, memory_limit=1 << 30)
    assert not fuzz.violations(result), result.stderr[-1500:]
    assert result.returncode == 2


def test_nested_rept_is_refused_in_bounded_memory(tmp_path: Path) -> None:
    """Bug 2: nested .rept 1000 x3 was expanded to the 2,000,000-statement cap (1.1 GiB,
    ~45 s) before it was refused."""
    source = ".text\n.rept 1000\n.rept 1000\n.rept 1000\nnop\n.endr\n.endr\n.endr\n"
    case = fuzz.Case("sources", "nested-rept", ["asm", "{d}/rept.S", "-o", "{d}/rept.bin"],
                     {"rept.S": source.encode()}, names=["{d}/rept.S"])
    result = fuzz.run_case(case, 0, tmp_path, wall_timeout=120, memory_limit=1 << 30)
    assert not fuzz.violations(result), result.stderr[-1500:]


def test_a_huge_region_size_is_checked_in_bounded_memory(tmp_path: Path) -> None:
    """Bug 3: the identity-clash rule made a set of the 2^25 level-0 slots of such a region."""
    case = fuzz.Case("page-tables", "define-XEN_VIRT_SIZE",
                     ["check", str(fuzz.HEAD_S), "-D", "XEN_VIRT_SIZE=0xffffffffffe00000",
                      "--max-insns", "300000"], names=[str(fuzz.HEAD_S), "-D"])
    result = fuzz.run_case(case, 0, tmp_path, wall_timeout=60)
    assert not fuzz.violations(result), result.stderr[-1500:]


def test_a_load_address_near_2_to_the_64_is_named_in_the_error(context: fuzz.Context,
                                                              tmp_path: Path) -> None:
    """Bug 4: RAM placed around such a load address ran past 2^64, unchecked, and
    Unicorn's refusal named neither the file nor --load-address."""
    raw = str(context.raw_path)
    case = fuzz.Case("images", "raw-head", ["run", raw, "--format", "raw", "--max-insns",
                                            "20000", "--load-address", "0xfffffffffffff000"],
                     names=[raw, "--load-address"])
    result = fuzz.run_case(case, 0, tmp_path, wall_timeout=60)
    assert not fuzz.violations(result), result.stderr[-1500:]


def test_an_infinite_timeout_is_refused_or_harmless(tmp_path: Path) -> None:
    """Bug 5: --timeout inf reached threading's wait: an OverflowError traceback."""
    case = fuzz.Case("options", "check:--timeout", ["check", str(fuzz.HEAD_S), "--timeout",
                                                    "inf", "--max-insns", "300000"],
                     names=[str(fuzz.HEAD_S), "--timeout"])
    assert not fuzz.violations(fuzz.run_case(case, 0, tmp_path, wall_timeout=60))


def test_an_elf_segment_past_2_to_the_64_is_refused(context: fuzz.Context,
                                                    tmp_path: Path) -> None:
    """Bug 6: such a p_memsz reached the device tree's 64-bit cells: struct.error."""
    elf = bytearray(context.elf)
    phoff = int.from_bytes(elf[32:40], "little")
    elf[phoff + 40:phoff + 48] = (0xFFFFFFFFFFFFFFFF).to_bytes(8, "little")  # p_memsz
    case = fuzz.Case("images", "elf-phdr+40", ["walk", "0x40000000", "{d}/bad.elf",
                                               "--format", "elf", "--at", "#200"],
                     {"bad.elf": bytes(elf)}, names=["{d}/bad.elf"])
    assert not fuzz.violations(fuzz.run_case(case, 0, tmp_path, wall_timeout=60))


def test_an_unreadable_dtb_is_named(tmp_path: Path) -> None:
    """Bug 7: a read error (EIO from /proc/self/mem) came without the file's name."""
    case = fuzz.Case("options", "run:--dtb", ["run", str(fuzz.HEAD_S), "--dtb",
                                              "/proc/self/mem", "--max-insns", "300000"],
                     names=[str(fuzz.HEAD_S), "/proc/self/mem"])
    assert not fuzz.violations(fuzz.run_case(case, 0, tmp_path, wall_timeout=60))
