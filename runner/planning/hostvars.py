"""What `runner place` writes: `host_vars/<node>/placement.yml`, one list of instance entries per node.

Deploy and launch read these entries; their field names are a contract (docs/placement.md).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import yaml

from runner.errors import InputError
from runner.experiment import Experiment, InstanceSpec
from runner.inventory import PLACEMENT_VAR, TRAINING_VAR, Cluster
from runner.placement.model import Instance

HEADER = (
    "---\n"
    "# Written by `python -m runner place`; re-run it instead of editing this file.\n"
    "# Deploy and launch read edgejar_instances (see docs/placement.md for the fields).\n"
)


def assign_ports(
    assignment: Mapping[str, str], ports: range, previous: Mapping[str, int], previous_node: Mapping[str, str]
) -> dict[str, int]:
    """One port per instance, unique on its node. An instance that stays keeps its port."""
    out: dict[str, int] = {}
    taken: dict[str, set[int]] = {}
    for iid, node in sorted(assignment.items()):
        port = previous.get(iid)
        if previous_node.get(iid) == node and port in ports and port not in taken.get(node, set()):
            out[iid] = port
            taken.setdefault(node, set()).add(port)
    for iid, node in sorted(assignment.items()):
        if iid in out:
            continue
        used = taken.setdefault(node, set())
        free = next((p for p in ports if p not in used), None)
        if free is None:  # placement caps instances per node at the range size, so this is a bug
            raise InputError(f"peer port range {ports.start}-{ports.stop - 1} is exhausted on {node}")
        out[iid] = free
        used.add(free)
    return out


def _relative(path: Path, root: Path) -> str:
    try:
        return str(path.resolve().relative_to(root))
    except ValueError:
        return str(path.resolve())


def entries(
    cluster: Cluster,
    experiments: Sequence[Experiment],
    instances: Mapping[str, Instance],
    assignment: Mapping[str, str],
    ports: Mapping[str, int],
    root: Path,
) -> dict[str, list[dict[str, Any]]]:
    """node name -> its instance entries (every node present, possibly with an empty list)."""
    address = {cn.node.name: cn.address for cn in cluster.nodes}
    specs: dict[str, InstanceSpec] = {s.id: s for e in experiments for s in e.instances}
    per_node: dict[str, list[dict[str, Any]]] = {cn.node.name: [] for cn in cluster.nodes}
    for exp in experiments:
        members = [s.id for s in exp.instances]
        for spec in exp.instances:
            peer_ids = [p for p in (spec.peers if spec.peers is not None else members) if p in assignment]
            peers = [
                {"id": p, "node": assignment[p], "address": address[assignment[p]], "port": ports[p]}
                for p in peer_ids
                if p != spec.id
            ]
            inst = instances[spec.id]
            node = assignment[spec.id]
            per_node[node].append(
                {
                    "id": spec.id,
                    "experiment": exp.name,
                    "experiment_file": _relative(exp.source, root),
                    "mode": exp.mode,
                    "model": spec.model,
                    "memory_mib": inst.ram_mib,
                    "gpu": spec.gpu,
                    "gpu_memory_mib": inst.gpu_claim(),
                    "node": node,
                    "address": address[node],
                    "port": ports[spec.id],
                    "peers": peers,
                    # every instance of the experiment: who may send to this one (runner/node/auth.py)
                    "members": [m for m in members if m in assignment],
                    "runtime": dict(spec.runtime),
                    "settings": dict(specs[spec.id].settings),
                    "interventions": [dict(i) for i in exp.interventions],
                }
            )
    for items in per_node.values():
        items.sort(key=lambda e: e["id"])
    return per_node


def render(items: list[dict[str, Any]], training: list[dict[str, Any]] | None = None) -> str:
    doc: dict[str, Any] = {PLACEMENT_VAR: items}
    if training:  # a node with no training unit gets no such key: its file stays as it was
        doc[TRAINING_VAR] = training
    body = yaml.safe_dump(doc, sort_keys=False, default_flow_style=False, width=100)
    return HEADER + body


def files(
    cluster: Cluster,
    per_node: Mapping[str, list[dict[str, Any]]],
    training: Mapping[str, list[dict[str, Any]]] | None = None,
) -> dict[Path, str]:
    """host_vars/<node>/placement.yml for every node: its instances, and its training units if any."""
    training = training or {}
    return {
        cluster.host_vars_dir / node / "placement.yml": render(items, training.get(node))
        for node, items in per_node.items()
    }
