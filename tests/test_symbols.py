"""``--symbols`` with a System.map: the same names as from the ELF it was made of.

The test program is the suite's EL2 image (tests/images), built with Debian's
aarch64-linux-gnu-gcc; its System.map is made the way Linux makes one, with
``aarch64-linux-gnu-nm -n``.  The truth is GNU's: nm says which names each
address has, readelf where the image is loaded.  bootemu must name every one
of those addresses the same from the System.map as from the ELF, with a name
nm gives it, at its link address and at its physical alias.
"""

from __future__ import annotations

import re
import subprocess
import sys
from collections import defaultdict
from pathlib import Path

import pytest

from emu.image.boot_image import BootImage, ImageError
from emu.image.load import read_image
from emu.image.symbols import read_system_map

sys.path.insert(0, str(Path(__file__).resolve().parent / "images"))
from build import CROSS, Built, build, toolchain_missing  # noqa: E402

RAM = (0x4000_0000, 128 << 20)
BOOTEMU = [sys.executable, "-m", "emu.cli.main"]
needs_gcc = pytest.mark.skipif(toolchain_missing() is not None,
                               reason=toolchain_missing() or "")
# Debian's linux-image packages ship this instead of the real map (83 bytes).
DEBIAN_PLACEHOLDER = (b"ffffffffffffffff B The real System.map is in the "
                      b"linux-image-<version>-dbg package\n")


def bootemu(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([*BOOTEMU, *args], capture_output=True, text=True, timeout=120)


@pytest.fixture(scope="module")
def el2(tmp_path_factory: pytest.TempPathFactory) -> Built:
    if toolchain_missing():
        pytest.skip(toolchain_missing() or "")
    return build("el2", tmp_path_factory.mktemp("el2-map"))


@pytest.fixture(scope="module")
def system_map(el2: Built) -> Path:
    """The EL2 image's System.map, as Linux makes its own: ``nm -n``."""
    out = el2.elf.with_name("System.map")
    listing = subprocess.run([CROSS + "nm", "-n", str(el2.elf)], capture_output=True,
                             text=True, check=True)
    out.write_text(listing.stdout)
    return out


def nm_names(path: Path) -> dict[int, set[str]]:
    """Address -> the names nm gives it (every symbol with an address)."""
    names: dict[int, set[str]] = defaultdict(set)
    for line in path.read_text().splitlines():
        address, _kind, name = line.split()
        names[int(address, 16)].add(name)
    return names


def load_segment(elf: Path) -> tuple[int, int, int]:
    """(virtual, physical, file size) of the ELF's one PT_LOAD, from readelf."""
    headers = subprocess.run([CROSS + "readelf", "-lW", str(elf)], capture_output=True,
                             text=True, check=True).stdout
    [load] = re.findall(r"^\s*LOAD\s+(0x\w+)\s+(0x\w+)\s+(0x\w+)\s+(0x\w+)", headers,
                        re.MULTILINE)
    _offset, virtual, physical, filesz = (int(field, 16) for field in load)
    return virtual, physical, filesz


def image_named_by(el2: Built, symbols: Path) -> BootImage:
    return read_image(el2.image, ram=RAM, symbols=symbols)


@needs_gcc
def test_system_map_names_addresses_as_the_elf_does(el2: Built, system_map: Path) -> None:
    from_elf = image_named_by(el2, el2.elf)
    from_map = image_named_by(el2, system_map)
    virtual, physical, filesz = load_segment(el2.elf)
    names = nm_names(system_map)
    inside = sorted(a for a in names if virtual <= a < virtual + filesz)
    assert len(inside) >= 20, names  # the program's code and data symbols
    for address in inside:
        alias = address - virtual + physical
        assert from_map.physical(address) == alias
        named = from_map.symbolize(address)
        assert named in names[address], (hex(address), named, names[address])
        assert from_elf.symbolize(address) == named, hex(address)
        assert from_map.symbolize(alias) == named, (hex(alias), named)
        assert from_elf.symbolize(alias) == named, hex(alias)
        # and a few bytes in: name+offset
        assert from_map.symbolize(address + 4) == from_elf.symbolize(address + 4)


@needs_gcc
def test_system_map_gives_the_link_start_and_the_code_symbols(el2: Built,
                                                              system_map: Path) -> None:
    virtual, _physical, _filesz = load_segment(el2.elf)
    symbols = read_system_map(system_map.read_bytes(), str(system_map))
    assert symbols.link_start == virtual
    lines = [line.split() for line in system_map.read_text().splitlines()]
    for address, kind, name in lines:
        if kind in "Tt":
            assert symbols.symbols[name] == int(address, 16), name
    # nm's absolute constants below the image (its size, its load base) name nothing
    constants = [name for address, kind, name in lines
                 if kind == "A" and int(address, 16) < virtual]
    assert constants
    assert not set(constants) & set(symbols.symbols), constants


@needs_gcc
def test_run_with_a_system_map_names_the_pc(el2: Built, system_map: Path) -> None:
    names = nm_names(system_map)
    [address] = [a for a, n in names.items() if "el2_main" in n]
    result = bootemu("run", str(el2.image), "--symbols", str(system_map),
                     "--until", "el2_main")
    assert result.returncode == 0, result.stderr
    assert f"{address:#x} (el2_main)" in result.stderr


def test_debian_placeholder_map_is_refused_saying_so(tmp_path: Path) -> None:
    stub = tmp_path / "System.map-6.1.0-57-arm64"
    stub.write_bytes(DEBIAN_PLACEHOLDER)
    assert len(DEBIAN_PLACEHOLDER) == 83
    with pytest.raises(ImageError) as caught:
        read_system_map(stub.read_bytes(), str(stub))
    message = str(caught.value)
    assert message.startswith(f"{stub}:1: ")
    assert "placeholder" in message and "linux-image-<version>-dbg" in message
    assert "\n" not in message


@pytest.mark.parametrize(("text", "line", "says"), [
    (b"ffff800008000000 T _text\nffff800008010000 T\n", 2, "ADDRESS TYPE NAME"),
    (b"ffff800008000000 T _text\n\nxyz T foo\n", 3, "hexadecimal address"),
    (b"ffff800008000000 T _text\nffff800008000010 Q foo\n", 2, "symbol types"),
    (b"ffff800008000000 T _text\nffff800008000010 T foo\xff\n", 2, "not text"),
    (b"ffff800008000000 T _text\nffff800008000010 T foo bar\n", 2, "ADDRESS TYPE NAME"),
])
def test_malformed_lines_name_file_and_line(tmp_path: Path, text: bytes, line: int,
                                            says: str) -> None:
    path = tmp_path / "System.map"
    path.write_bytes(text)
    with pytest.raises(ImageError, match=rf"^{re.escape(str(path))}:{line}: .*{says}"):
        read_system_map(path.read_bytes(), str(path))


def test_undefined_and_debug_lines_are_skipped(tmp_path: Path) -> None:
    text = (b"                 U printk\n"
            b"                 w weak_hook\n"
            b"0000000000000010 A _kernel_size_le_lo32\n"
            b"ffff800008000000 t $x\n"
            b"ffff800008000000 T _text\n"
            b"ffff800008000040 N .debug_thing\n"
            b"ffff800008010000 T _stext\n"
            b"ffff800008010000 A __inside_constant\n"
            b"ffff800008010040 t helper\n"
            b"ffff800008010080 t helper\n")
    symbols = read_system_map(text, "System.map")
    assert symbols.symbols == {"_text": 0xFFFF800008000000, "_stext": 0xFFFF800008010000,
                               "__inside_constant": 0xFFFF800008010000,
                               "helper": 0xFFFF800008010040}
    assert symbols.link_start == 0xFFFF800008000000
    assert symbols.head == b""


@needs_gcc
def test_cli_says_what_is_wrong_with_a_symbols_file(el2: Built, tmp_path: Path) -> None:
    stub = tmp_path / "System.map-6.1.0-57-arm64"
    stub.write_bytes(DEBIAN_PLACEHOLDER)
    result = bootemu("run", str(el2.image), "--symbols", str(stub))
    assert result.returncode == 2
    assert result.stderr.count("\n") == 1 and f"{stub}:1: " in result.stderr
    binary = tmp_path / "symbols.bin"
    binary.write_bytes(b"\x00\x01\x02\x03" * 64)
    result = bootemu("run", str(el2.image), "--symbols", str(binary))
    assert result.returncode == 2
    assert "neither an ELF file nor a System.map" in result.stderr
