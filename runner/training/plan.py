"""From a training spec to placement units, the job's backend, and the units' host_vars entries. Pure.

A unit is one node's share of the job: one systemd unit running `torchrun` with ranks_per_node local
ranks, placed by the same engine as LLM instances (memory = ranks_per_node x memory_gb, GPU, tags), one
unit per node (the units of a job repel each other). A MIN:MAX job takes as many nodes as fit, most first.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from runner.errors import InputError, NoPlacementError
from runner.inventory import Cluster
from runner.placement.model import Instance, Node, Placement, gb_to_mib
from runner.training.spec import TrainingSpec


def unit_id(spec: TrainingSpec, k: int) -> str:
    return f"{spec.name}-{k}"


def check_nodes(spec: TrainingSpec, node_names: Sequence[str]) -> None:
    """The nodes the job's `nodes` and `exclude` name must be in the inventory."""
    unknown = sorted((set(spec.nodes) | set(spec.exclude)) - set(node_names))
    if unknown:
        field = "nodes" if set(unknown) & set(spec.nodes) else "exclude"
        raise InputError(f"{spec.source}: {field}: unknown node(s) {', '.join(unknown)}")


# The unit's own processes besides its ranks: the wrapper and the torchrun agent, a Python that imports
# torch (about 210 MiB resident, measured with torch 2.13 CPU on x86_64; the ranks share its libraries).
AGENT_MIB = 256


def claims(spec: TrainingSpec) -> tuple[int, int]:
    """(RAM, GPU memory) in MiB of one unit: ranks_per_node ranks and the agent (the unit's MemoryMax)."""
    gpu = gb_to_mib(spec.gpu_memory_gb) if spec.gpu_memory_gb else 0
    return gb_to_mib(spec.memory_gb) * spec.ranks_per_node + AGENT_MIB, gpu * spec.ranks_per_node


def units(spec: TrainingSpec, count: int, node_names: Sequence[str]) -> list[Instance]:
    """`count` placement units of the job. `nodes`/`exclude` become the nodes a unit must avoid."""
    check_nodes(spec, node_names)
    avoid = frozenset(n for n in node_names if (spec.nodes and n not in spec.nodes) or n in spec.exclude)
    ids = [unit_id(spec, k) for k in range(count)]
    ram_mib, gpu_mib = claims(spec)
    return [
        Instance(
            id=iid,
            ram_mib=ram_mib,
            gpu=spec.gpu,
            gpu_mib=gpu_mib,
            experiment=spec.name,
            anti_affinity=tuple(o for o in ids if o != iid),
            tags=frozenset(spec.tags),
            avoid=avoid,
            torch=True,
        )
        for iid in ids
    ]


def place_all(
    specs: Sequence[TrainingSpec],
    others: Sequence[Instance],
    node_names: Sequence[str],
    place: Callable[[Sequence[Instance]], Placement],
) -> tuple[Placement, dict[str, int]]:
    """Place the LLM instances and every job's units together. Each job (in file order, the later ones at
    their fewest nodes meanwhile) is tried with the most nodes first, then fewer: the first count that
    places wins. When even the fewest do not fit, that attempt's error (which constraint, which node)
    is raised."""
    counts = {s.name: s.unit_counts()[-1] for s in specs}  # every job at its fewest nodes
    for spec in specs:
        for n in spec.unit_counts():
            counts[spec.name] = n
            try:
                place([*others, *(u for s in specs for u in units(s, counts[s.name], node_names))])
                break
            except NoPlacementError:
                if n == spec.unit_counts()[-1]:
                    raise
    final = [u for s in specs for u in units(s, counts[s.name], node_names)]
    return place([*others, *final]), counts


@dataclass(frozen=True)
class Backend:
    name: str  # gloo or nccl
    reason: str


def choose_backend(spec: TrainingSpec, nodes: Sequence[Node], nccl: Mapping[str, bool]) -> Backend:
    """One backend for the whole job, never per rank: NCCL only when the ranks use CUDA and every placed
    node has a GPU and a torch with NCCL (node_torch_nccl); gloo otherwise (it runs everywhere)."""
    if not spec.gpu:
        return Backend("gloo", "the ranks run on CPU (gpu: false)")
    without = sorted(n.name for n in nodes if not nccl.get(n.name, False))
    if without:
        return Backend("gloo", f"no NCCL-enabled torch on {', '.join(without)} (node_torch_nccl)")
    return Backend("nccl", "every rank has a CUDA GPU and a torch with NCCL")


def entries(
    spec: TrainingSpec, count: int, assignment: Mapping[str, str], cluster: Cluster
) -> dict[str, dict[str, Any]]:
    """node -> its unit's entry. The rendezvous (c10d) runs on unit 0's node, at its cluster address."""
    by_name = cluster.by_name()
    placed = [(unit_id(spec, k), assignment[unit_id(spec, k)]) for k in range(count)]
    nodes = [by_name[node].node for _, node in placed]
    backend = choose_backend(spec, nodes, {cn.node.name: cn.torch_nccl for cn in cluster.nodes})
    host = by_name[placed[0][1]]
    ram_mib, gpu_mib = claims(spec)
    out: dict[str, dict[str, Any]] = {}
    for k, (uid, node) in enumerate(placed):
        out[node] = {
            "id": uid,
            "experiment": spec.name,
            "kind": "torch_distributed",
            "node": node,
            "address": by_name[node].address,
            "unit_index": k,
            "nnodes": count,
            "nproc_per_node": spec.ranks_per_node,
            "world_size": count * spec.ranks_per_node,
            "rdzv_endpoint": f"{host.address}:{cluster.training_port}",
            "rdzv_host": host.node.name,
            "backend": backend.name,
            "backend_reason": backend.reason,
            "entry": spec.entry,
            "module": spec.module,
            "args": list(spec.args),
            "memory_mib": ram_mib,
            "gpu": spec.gpu,
            "gpu_memory_mib": gpu_mib,
            "data": spec.data,
            "weighting": spec.weighting,
            "max_restarts": spec.max_restarts,
            "join_timeout_s": spec.join_timeout_s,
            "collective_timeout_s": spec.collective_timeout_s,
        }
    return out


def placed_claims(cluster: Cluster, dead: Sequence[str]) -> list[Instance]:
    """The training units already placed on live nodes, as instances pinned where they are: a re-placement
    of instances alone (failover) must count their memory."""
    return [
        Instance(
            id=str(e["id"]),
            ram_mib=int(e.get("memory_mib") or 0),
            gpu=bool(e.get("gpu")),
            gpu_mib=int(e.get("gpu_memory_mib") or 0),
            experiment=str(e.get("experiment") or ""),
            pin=cn.node.name,
        )
        for cn in cluster.nodes
        if cn.node.name not in dead
        for e in cn.training
        if "id" in e
    ]
