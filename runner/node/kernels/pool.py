"""The kernel pool: the nodes a kernel may run on, as the notebooks role writes them for the gateway
(`pool.json`): each node's hardware (the inventory's node_* values), its kernel slots (node_max_kernels),
its cluster address, and the memory the experiments placed there already claim. Pure parsing; every
error names the file and the field."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from runner.errors import InputError
from runner.node.jsonfile import read_object
from runner.placement.model import Node


@dataclass(frozen=True)
class PoolNode:
    node: Node  # max_instances is the node's kernel slots (node_max_kernels)
    address: str
    claimed_ram_mib: int = 0  # what the node's placed experiment instances and training units claim
    claimed_gpu_mib: int = 0
    placed: tuple[str, ...] = ()  # their ids (for the messages)


@dataclass(frozen=True)
class Pool:
    nodes: tuple[PoolNode, ...]
    memory_mib: int  # a kernel's memory ceiling when its request names none
    max_memory_mib: int  # the most one request may ask for

    def by_name(self) -> dict[str, PoolNode]:
        return {p.node.name: p for p in self.nodes}

    def tags(self) -> set[str]:
        return {t for p in self.nodes for t in p.node.tags}


def _int(where: str, value: Any, least: int = 0) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < least:
        raise InputError(f"{where} must be a whole number of at least {least}, got {value!r}")
    return value


def _node(where: str, doc: Mapping[str, Any]) -> PoolNode:
    if not isinstance(doc, Mapping):
        raise InputError(f"{where} must be an object")
    name, address = doc.get("name"), doc.get("address")
    if not isinstance(name, str) or not name:
        raise InputError(f"{where}.name must be a host name")
    if not isinstance(address, str) or not address:
        raise InputError(f"{where}.address must be the node's cluster address")
    tags = doc.get("tags", [])
    if not isinstance(tags, list) or not all(isinstance(t, str) for t in tags):
        raise InputError(f"{where}.tags must be a list of strings")
    node = Node(
        name=name,
        ram_mib=_int(f"{where}.ram_mib", doc.get("ram_mib", 0)),
        reserved_mib=_int(f"{where}.reserved_mib", doc.get("reserved_mib", 0)),
        gpu=bool(doc.get("gpu", False)),
        gpu_mib=_int(f"{where}.gpu_mib", doc.get("gpu_mib", 0)),
        unified=bool(doc.get("unified", False)),
        max_instances=_int(f"{where}.max_kernels", doc.get("max_kernels", 0)),
        cpu_cores=_int(f"{where}.cpu_cores", doc.get("cpu_cores", 1), 1),
        tags=frozenset(tags),
        priority=_int(f"{where}.priority", doc.get("priority", 0), -(10**6)),
        maintenance=bool(doc.get("maintenance", False)),
    )
    placed = doc.get("placed", [])
    if not isinstance(placed, list):
        raise InputError(f"{where}.placed must be a list of instance ids")
    return PoolNode(
        node=node,
        address=address,
        claimed_ram_mib=_int(f"{where}.claimed_ram_mib", doc.get("claimed_ram_mib", 0)),
        claimed_gpu_mib=_int(f"{where}.claimed_gpu_mib", doc.get("claimed_gpu_mib", 0)),
        placed=tuple(str(p) for p in placed),
    )


def parse(doc: Mapping[str, Any], source: str = "pool") -> Pool:
    nodes = doc.get("nodes")
    if not isinstance(nodes, list) or not nodes:
        raise InputError(f"{source}: nodes must be a non-empty list")
    parsed = tuple(_node(f"{source}: nodes[{k}]", n) for k, n in enumerate(nodes))
    names = [p.node.name for p in parsed]
    if len(set(names)) != len(names):
        raise InputError(f"{source}: nodes: a node is listed twice")
    memory = _int(f"{source}: memory_mib", doc.get("memory_mib", 1024), 1)
    most = _int(f"{source}: max_memory_mib", doc.get("max_memory_mib", 16384), 1)
    return Pool(nodes=parsed, memory_mib=memory, max_memory_mib=most)


def load(path: Path) -> Pool:
    return parse(read_object(path, "the kernel pool"), str(path))
