"""Flattened device trees: build the small one a boot gets, read one a user gives.

A flattened device tree (FDT, "DTB") is a header, a memory-reservation block,
a structure block of nested nodes and properties, and a strings block holding
property names.  Everything is big-endian.  bootemu generates a tree in QEMU
virt's shape for each boot (memory, /chosen with bootargs, stdout-path and the
seeds, the CPU, PSCI, the GIC, the timer, a PL011 UART and the clock it names)
and validates a tree passed with ``--dtb`` well enough to
refuse garbage with one clear error and to find the memory and UART in it.
"""

from __future__ import annotations

import struct
from collections.abc import Iterator
from dataclasses import dataclass, field

FDT_MAGIC = 0xD00DFEED
FDT_BEGIN_NODE = 1
FDT_END_NODE = 2
FDT_PROP = 3
FDT_NOP = 4
FDT_END = 9
HEADER_SIZE = 40
VERSION = 17
LAST_COMPATIBLE_VERSION = 16
# The arm64 boot protocol: the device tree blob must not exceed 2 MiB.
MAX_SIZE = 2 << 20

PL011_COMPATIBLE = "arm,pl011"


class FdtError(ValueError):
    """A device tree blob that is malformed or lacks what a boot needs."""


@dataclass
class FdtNode:
    """One node: its name (``unit@address``), properties (raw bytes) and children."""

    name: str
    properties: dict[str, bytes] = field(default_factory=dict)
    children: list[FdtNode] = field(default_factory=list)

    def add(self, name: str, properties: dict[str, bytes] | None = None) -> FdtNode:
        """Append a child node and return it."""
        child = FdtNode(name, dict(properties or {}))
        self.children.append(child)
        return child

    def child(self, name: str) -> FdtNode | None:
        """The child called ``name`` exactly, or whose name without its unit address is."""
        for node in self.children:
            if node.name == name or node.name.split("@", 1)[0] == name:
                return node
        return None

    def find(self, path: str) -> FdtNode | None:
        """The node at an absolute path such as ``/chosen``."""
        node: FdtNode | None = self
        for part in path.strip("/").split("/"):
            if not part:
                continue
            node = node.child(part) if node is not None else None
        return node

    def string(self, name: str) -> str | None:
        value = self.properties.get(name)
        return None if value is None else value.split(b"\0", 1)[0].decode(errors="replace")

    def strings(self, name: str) -> list[str]:
        value = self.properties.get(name, b"")
        return [s.decode(errors="replace") for s in value.rstrip(b"\0").split(b"\0") if s]

    def cells(self, name: str) -> list[int]:
        value = self.properties.get(name, b"")
        return [x for (x,) in struct.iter_unpack(">I", value[: len(value) // 4 * 4])]


# -- property values ----------------------------------------------------------


def u32(*values: int) -> bytes:
    """Property value: one or more 32-bit cells."""
    return b"".join(struct.pack(">I", v) for v in values)


def u64_cells(*values: int) -> bytes:
    """Property value: 64-bit numbers as two cells each (for #address-cells = 2)."""
    return b"".join(struct.pack(">Q", v) for v in values)


def string(text: str) -> bytes:
    return text.encode() + b"\0"


def strings(*texts: str) -> bytes:
    return b"".join(string(t) for t in texts)


# -- encoding -----------------------------------------------------------------


def encode(root: FdtNode, *, boot_cpuid: int = 0,
           reserved: tuple[tuple[int, int], ...] = (), size: int = 0) -> bytes:
    """Serialize a tree into a version-17 flattened device tree blob, padded
    with free space to ``size`` bytes when it is smaller (its header's
    ``totalsize`` says so: a guest reserves the whole blob)."""
    names: dict[str, int] = {}
    strings_block = bytearray()
    structure = bytearray()

    def name_offset(name: str) -> int:
        if name not in names:
            names[name] = len(strings_block)
            strings_block.extend(name.encode() + b"\0")
        return names[name]

    def emit(node: FdtNode) -> None:
        structure.extend(struct.pack(">I", FDT_BEGIN_NODE))
        structure.extend(_padded(node.name.encode() + b"\0"))
        for name, value in node.properties.items():
            structure.extend(struct.pack(">III", FDT_PROP, len(value), name_offset(name)))
            structure.extend(_padded(value))
        for child in node.children:
            emit(child)
        structure.extend(struct.pack(">I", FDT_END_NODE))

    emit(root)
    structure.extend(struct.pack(">I", FDT_END))
    reserve = b"".join(struct.pack(">QQ", a, s) for a, s in reserved) + bytes(16)
    off_rsvmap = HEADER_SIZE
    off_struct = off_rsvmap + len(reserve)
    off_strings = off_struct + len(structure)
    used = off_strings + len(strings_block)
    total = max(used, size)
    header = struct.pack(">10I", FDT_MAGIC, total, off_struct, off_strings, off_rsvmap,
                         VERSION, LAST_COMPATIBLE_VERSION, boot_cpuid, len(strings_block),
                         len(structure))
    return header + reserve + bytes(structure) + bytes(strings_block) + bytes(total - used)


def _padded(data: bytes) -> bytes:
    return data + bytes(-len(data) % 4)


# -- decoding -----------------------------------------------------------------


def decode(data: bytes) -> FdtNode:
    """Parse a blob into its root node; :class:`FdtError` says what is wrong with it."""
    if len(data) < HEADER_SIZE:
        raise FdtError(f"truncated device tree: {len(data)} bytes, the header alone is "
                       f"{HEADER_SIZE}")
    (magic, total, off_struct, off_strings, off_rsvmap, version, last_compatible, _cpu,
     size_strings, size_struct) = struct.unpack_from(">10I", data)
    if magic != FDT_MAGIC:
        raise FdtError(f"not a flattened device tree (magic {magic:#010x}, "
                       f"expected {FDT_MAGIC:#010x})")
    if total > MAX_SIZE:
        raise FdtError(f"device tree of {total} bytes exceeds the boot protocol's 2 MiB")
    if total > len(data):
        raise FdtError(f"truncated device tree: header says {total} bytes, "
                       f"the file has {len(data)}")
    if last_compatible > VERSION or version < LAST_COMPATIBLE_VERSION:
        raise FdtError(f"device tree version {version} (compatible with "
                       f"{last_compatible}) is not supported; version 16 or 17 is")
    for what, offset, size in (("structure block", off_struct, size_struct),
                               ("strings block", off_strings, size_strings),
                               ("memory reservation block", off_rsvmap, 16)):
        if offset < HEADER_SIZE or offset + size > total:
            raise FdtError(f"device tree {what} at {offset:#x} (+{size:#x}) lies outside "
                           f"the blob's {total} bytes")
    blob = data[:total]
    strings_block = blob[off_strings:off_strings + size_strings]
    tokens = _Tokens(blob, off_struct, off_struct + size_struct)
    token = tokens.next_token()
    if token != FDT_BEGIN_NODE:
        raise FdtError(f"device tree structure block starts with token {token}, "
                       "not a node")
    root = _decode_node(tokens, strings_block, depth=0)
    if tokens.next_token() != FDT_END:
        raise FdtError("device tree structure block has more than one root node "
                       "or lacks its end token")
    return root


class _Tokens:
    """A cursor over the structure block, skipping NOP tokens."""

    def __init__(self, blob: bytes, start: int, end: int) -> None:
        self.blob, self.offset, self.end = blob, start, end

    def word(self) -> int:
        if self.offset + 4 > self.end:
            raise FdtError("device tree structure block ends in the middle of a node")
        (value,) = struct.unpack_from(">I", self.blob, self.offset)
        self.offset += 4
        return value

    def next_token(self) -> int:
        while True:
            token = self.word()
            if token != FDT_NOP:
                return token

    def take(self, size: int) -> bytes:
        if self.offset + size > self.end:
            raise FdtError("device tree property runs past the structure block")
        value = self.blob[self.offset:self.offset + size]
        self.offset += (size + 3) & ~3
        return value

    def name(self) -> str:
        nul = self.blob.find(b"\0", self.offset, self.end)
        if nul < 0:
            raise FdtError("device tree node name is not terminated")
        text = self.blob[self.offset:nul].decode(errors="replace")
        self.offset = (nul + 4) & ~3
        return text


def _decode_node(tokens: _Tokens, strings_block: bytes, depth: int) -> FdtNode:
    if depth > 64:
        raise FdtError("device tree nodes nest more than 64 deep")
    node = FdtNode(tokens.name())
    while True:
        token = tokens.next_token()
        if token == FDT_PROP:
            size, name_offset = tokens.word(), tokens.word()
            nul = strings_block.find(b"\0", name_offset)
            if name_offset >= len(strings_block) or nul < 0:
                raise FdtError(f"device tree property in node '{node.name or '/'}' names "
                               f"string offset {name_offset:#x}, outside the strings block")
            name = strings_block[name_offset:nul].decode(errors="replace")
            node.properties[name] = tokens.take(size)
        elif token == FDT_BEGIN_NODE:
            node.children.append(_decode_node(tokens, strings_block, depth + 1))
        elif token == FDT_END_NODE:
            return node
        else:
            raise FdtError(f"unexpected token {token} in device tree node "
                           f"'{node.name or '/'}'")


# -- what a boot needs from a tree -----------------------------------------------


def _walk(node: FdtNode, address_cells: int, size_cells: int,
          ranges: list[tuple[int, int, int]] | None
          ) -> Iterator[tuple[FdtNode, list[tuple[int, int]]]]:
    """Every node below ``node`` with its ``reg`` entries as CPU physical addresses.

    ``ranges`` maps the parent bus's addresses to the CPU's (None: identity).
    """
    child_address = _cell_count(node, "#address-cells", 2)
    child_size = _cell_count(node, "#size-cells", 1)
    for child in node.children:
        regs = []
        cells = child.cells("reg")
        step = address_cells + size_cells
        for i in range(0, len(cells) - step + 1 if step else 0, step or 1):
            base = _number(cells[i:i + address_cells])
            size = _number(cells[i + address_cells:i + step])
            regs.append((_translate(base, ranges), size))
        yield child, regs
        child_ranges = _child_ranges(child, child_address, address_cells, child_size, ranges)
        yield from _walk(child, child_address, child_size, child_ranges)


def _cell_count(node: FdtNode, name: str, default: int) -> int:
    cells = node.cells(name)
    return cells[0] if cells and cells[0] <= 4 else default


def _number(cells: list[int]) -> int:
    value = 0
    for cell in cells:
        value = (value << 32) | cell
    return value


def _translate(address: int, ranges: list[tuple[int, int, int]] | None) -> int:
    if ranges is None:
        return address
    for child_base, parent_base, size in ranges:
        if child_base <= address < child_base + size:
            return parent_base + address - child_base
    return address


def _child_ranges(node: FdtNode, child_cells: int, parent_cells: int, size_cells: int,
                  above: list[tuple[int, int, int]] | None
                  ) -> list[tuple[int, int, int]] | None:
    """A node's ``ranges``, composed with its parent's; missing or empty is identity."""
    cells = node.cells("ranges")
    if not cells:
        return above
    step = child_cells + parent_cells + size_cells
    ranges = []
    for i in range(0, len(cells) - step + 1, step):
        child = _number(cells[i:i + child_cells])
        parent = _number(cells[i + child_cells:i + child_cells + parent_cells])
        size = _number(cells[i + child_cells + parent_cells:i + step])
        ranges.append((child, _translate(parent, above), size))
    return ranges


@dataclass(frozen=True)
class BoardFacts:
    """What a boot takes from a device tree: RAM banks, the UART, the command line."""

    memory: tuple[tuple[int, int], ...]
    uart: int | None
    bootargs: str | None


def board_facts(root: FdtNode) -> BoardFacts:
    """Find the memory banks, the first PL011 and /chosen/bootargs in a tree."""
    memory: list[tuple[int, int]] = []
    uart = None
    address_cells = _cell_count(root, "#address-cells", 2)
    size_cells = _cell_count(root, "#size-cells", 1)
    for node, regs in _walk(root, address_cells, size_cells, None):
        if node.string("device_type") == "memory":
            memory.extend((base, size) for base, size in regs if size)
        if uart is None and PL011_COMPATIBLE in node.strings("compatible") and regs \
                and node.string("status") in (None, "okay", "ok"):
            uart = regs[0][0]
    chosen = root.find("/chosen")
    return BoardFacts(tuple(memory), uart, chosen.string("bootargs") if chosen else None)


@dataclass(frozen=True)
class Platform:
    """What the generated tree describes beyond memory and the UART: the CPU's
    compatible string, the PSCI conduit, the GICv2's regions, the generic
    timer's PPIs, and the seeds for the guest's randomness."""

    cpu_compatible: str = "arm,cortex-a72"
    psci_method: str = "smc"            # "smc" or "hvc"
    gic: tuple[tuple[int, int], ...] = ()  # GICD, GICC, GICH, GICV (base, size)
    gic_v2m: tuple[int, int] | None = None
    timer_ppis: tuple[int, ...] = ()    # secure phys, phys, virt, hyp (PPI numbers)
    kaslr_seed: int | None = None
    rng_seed: bytes | None = None


# FDT interrupt specifiers for a GICv2 (the binding in Linux's
# Documentation/devicetree/bindings/interrupt-controller/arm,gic.yaml):
# <type number flags>, type 0 SPI / 1 PPI, flags 4 = level high, and for PPIs
# bits 15:8 the mask of CPUs the PPI is wired to (one CPU here).
_SPI, _PPI = 0, 1
_LEVEL_HIGH = 4
_PPI_ONE_CPU = 1 << 8
_GIC_PHANDLE = 0x8001
_PL011_SPI = 1  # QEMU virt's VIRT_UART interrupt
_GIC_MAINTENANCE_PPI = 9


def boot_tree(*, ram_base: int, ram_size: int, bootargs: str, uart_base: int | None,
              cpu_compatible: str = "arm,arm-v8", platform: Platform | None = None,
              extra_memory: tuple[tuple[int, int], ...] = ()) -> FdtNode:
    """The tree bootemu passes in x0: one CPU, RAM, /chosen and a PL011 and,
    with ``platform``, PSCI, a GICv2 and the generic timer.

    Node names, phandles and interrupt numbers follow QEMU's ``virt`` board, so
    kernels that boot there find the same things here, and QEMU booted with
    this very tree (``-dtb``) shows the guest the same platform.
    """
    if platform is not None:
        cpu_compatible = platform.cpu_compatible
    # No model: QEMU's virt has none, so Linux names the machine by its compatible.
    root = FdtNode("", {"#address-cells": u32(2), "#size-cells": u32(2),
                        "compatible": string("linux,dummy-virt")})
    chosen = root.add("chosen", {"bootargs": string(bootargs)})
    if platform is not None and platform.kaslr_seed is not None:
        chosen.properties["kaslr-seed"] = u64_cells(platform.kaslr_seed)
    if platform is not None and platform.rng_seed is not None:
        chosen.properties["rng-seed"] = platform.rng_seed
    cpus = root.add("cpus", {"#address-cells": u32(1), "#size-cells": u32(0)})
    cpus.add("cpu@0", {"device_type": string("cpu"), "compatible": string(cpu_compatible),
                       "reg": u32(0)})
    for base, size in ((ram_base, ram_size), *extra_memory):
        root.add(f"memory@{base:x}", {"device_type": string("memory"),
                                      "reg": u64_cells(base, size)})
    if platform is not None:
        _add_platform(root, platform)
    if uart_base is not None:
        clock = 0x8000  # the phandle QEMU's virt board gives its APB clock
        root.add("apb-pclk", {"compatible": string("fixed-clock"), "#clock-cells": u32(0),
                              "clock-frequency": u32(24_000_000),
                              "clock-output-names": string("clk24mhz"),
                              "phandle": u32(clock)})
        uart = f"pl011@{uart_base:x}"
        properties = {"compatible": strings(PL011_COMPATIBLE, "arm,primecell"),
                      "reg": u64_cells(uart_base, 0x1000), "clocks": u32(clock, clock),
                      "clock-names": strings("uartclk", "apb_pclk")}
        if platform is not None and platform.gic:
            properties["interrupts"] = u32(_SPI, _PL011_SPI, _LEVEL_HIGH)
        root.add(uart, properties)
        chosen.properties["stdout-path"] = string(f"/{uart}")
    return root


def _add_platform(root: FdtNode, platform: Platform) -> None:
    """PSCI, the GIC (as the root's interrupt parent) and the timer."""
    root.add("psci", {"compatible": strings("arm,psci-1.0", "arm,psci-0.2", "arm,psci"),
                      "method": string(platform.psci_method),
                      "cpu_suspend": u32(0xC400_0001), "cpu_off": u32(0x8400_0002),
                      "cpu_on": u32(0xC400_0003), "migrate": u32(0xC400_0005)})
    if not platform.gic:
        return
    root.properties["interrupt-parent"] = u32(_GIC_PHANDLE)
    regs = b"".join(u64_cells(base, size) for base, size in platform.gic)
    gic = root.add(f"intc@{platform.gic[0][0]:x}", {
        "compatible": string("arm,cortex-a15-gic"), "#interrupt-cells": u32(3),
        "interrupt-controller": b"", "reg": regs,
        "#address-cells": u32(2), "#size-cells": u32(2), "ranges": b"",
        "phandle": u32(_GIC_PHANDLE),
    })
    if len(platform.gic) > 2:  # with the virtualization extensions: the maintenance IRQ
        gic.properties["interrupts"] = u32(_PPI, _GIC_MAINTENANCE_PPI,
                                           _PPI_ONE_CPU | _LEVEL_HIGH)
    if platform.gic_v2m is not None:
        base, size = platform.gic_v2m
        gic.add(f"v2m@{base:x}", {"compatible": string("arm,gic-v2m-frame"),
                                  "msi-controller": b"", "reg": u64_cells(base, size),
                                  "phandle": u32(_GIC_PHANDLE + 1)})
    if platform.timer_ppis:
        interrupts = b"".join(u32(_PPI, ppi - 16, _PPI_ONE_CPU | _LEVEL_HIGH)
                              for ppi in platform.timer_ppis)
        root.add("timer", {"compatible": strings("arm,armv8-timer", "arm,armv7-timer"),
                           "always-on": b"", "interrupts": interrupts})
