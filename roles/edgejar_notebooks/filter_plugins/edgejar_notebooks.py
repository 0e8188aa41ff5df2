"""Filters of the edgejar_notebooks role: the gateway's kernel pool and its kernelspecs, from the
inventory's node_* variables and the placement (host_vars/<node>/placement.yml)."""

from __future__ import annotations

import math
import re
from collections.abc import Mapping, Sequence
from typing import Any


def _mib(gb: Any) -> int:
    return math.ceil(float(gb or 0) * 1024)


def _claims(hv: Mapping[str, Any]) -> tuple[int, int, list[str]]:
    """RAM and GPU MiB the node's placed instances and training units claim, and their ids."""
    ram = gpu = 0
    ids: list[str] = []
    for entry in list(hv.get("edgejar_instances") or []) + list(hv.get("edgejar_training") or []):
        ram += int(entry.get("memory_mib") or 0)
        gpu += int(entry.get("gpu_memory_mib") or 0)
        ids.append(str(entry.get("id", "?")))
    return ram, gpu, ids


def pool(hostvars: Mapping[str, Any], hosts: Sequence[str], default_max_kernels: int) -> list[dict[str, Any]]:
    """One entry per node, as runner/node/kernels/pool.py reads it."""
    out = []
    for host in hosts:
        hv = hostvars[host]
        ram, gpu, ids = _claims(hv)
        out.append(
            {
                "name": host,
                "address": str(hv.get("node_address") or hv.get("ansible_host") or host),
                "ram_mib": _mib(hv.get("node_ram_gb", 0)),
                "reserved_mib": _mib(hv.get("node_reserved_ram_gb", 0)),
                "gpu": bool(hv.get("node_gpu", False)),
                "gpu_mib": _mib(hv.get("node_gpu_memory_gb", 0)),
                "unified": bool(hv.get("node_unified_memory", False)),
                "cpu_cores": int(hv.get("node_cpu_cores", 1) or 1),
                "tags": [str(t) for t in hv.get("node_tags") or []],
                "priority": int(hv.get("node_priority", 0) or 0),
                "maintenance": bool(hv.get("node_maintenance", False)),
                "max_kernels": int(hv.get("node_max_kernels", default_max_kernels)),
                "claimed_ram_mib": ram,
                "claimed_gpu_mib": gpu,
                "placed": ids,
            }
        )
    return out


def _slug(text: str) -> str:
    return re.sub(r"[^a-z0-9.-]+", "-", text.lower()).strip("-") or "x"


def kernelspecs(nodes: Sequence[Mapping[str, Any]], per_tag: bool, per_node: bool) -> list[dict[str, Any]]:
    """The gateway's kernelspecs: name, display name and the provisioner's settings of each."""
    specs: list[dict[str, Any]] = [{"name": "edgejar", "display": "Python (edgejar: any node)", "config": {}}]
    if any(n["gpu"] for n in nodes):
        specs.append({"name": "edgejar-gpu", "display": "Python (edgejar: GPU)", "config": {"gpu": True}})
    if per_tag:
        for tag in sorted({t for n in nodes for t in n["tags"]}):
            specs.append(
                {
                    "name": f"edgejar-tag-{_slug(tag)}",
                    "display": f"Python (edgejar: tag {tag})",
                    "config": {"tags": [tag]},
                }
            )
    if per_node:
        for n in nodes:
            specs.append(
                {"name": f"edgejar-node-{_slug(n['name'])}", "display": f"Python (edgejar: {n['name']})",
                 "config": {"node": n["name"]}}
            )  # fmt: skip
    return specs


class FilterModule:
    def filters(self) -> dict[str, Any]:
        return {"edgejar_notebooks_pool": pool, "edgejar_notebooks_kernelspecs": kernelspecs}
