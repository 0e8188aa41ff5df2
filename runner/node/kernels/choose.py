"""Where a kernel goes: edgejar's placement engine over the kernel pool. Pure: pool, the kernels already
running and the request in, a node (or every node's reason) out.

A node's capacity for kernels is what placement leaves it: its memory minus its reserve minus what the
experiments placed there claim (on a unified-memory Jetson a GPU claim is a memory claim too); its
slots are node_max_kernels. Running kernels are placed first, where they run; the new one then gets the
engine's verdict on every node (maintenance, GPU, GPU memory, tags, memory, a free slot), and the
best-scoring feasible node wins (the engine's `score` policy: free memory, load, and GPU match, which
keeps a GPU node for kernels that want one); among equals the higher node_priority, then inventory order.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, replace

from runner.errors import NoPlacementError
from runner.node.kernels.pool import Pool, PoolNode
from runner.node.kernels.request import KernelRequest
from runner.placement import greedy
from runner.placement.model import Instance, Node, Problem, Verdict
from runner.placement.state import ClusterState

POLICY = "score"


@dataclass(frozen=True)
class Running:
    """A kernel the gateway runs: its id, node and claims."""

    id: str
    node: str
    memory_mib: int
    gpu_mib: int = 0


def _for_kernels(p: PoolNode) -> Node:
    """The node as the engine sees it for kernels: the experiments' claims taken off its memory."""
    node = p.node
    ram_claim = p.claimed_ram_mib + (p.claimed_gpu_mib if node.unified else 0)
    return replace(
        node,
        reserved_mib=node.reserved_mib + ram_claim,
        gpu_mib=max(0, node.gpu_mib - p.claimed_gpu_mib),
    )


def _instance(
    kid: str,
    memory_mib: int,
    gpu_mib: int,
    gpu: bool,
    pin: str | None = None,
    tags: frozenset[str] = frozenset(),
) -> Instance:
    return Instance(
        id=kid, ram_mib=memory_mib, gpu=gpu, gpu_mib=gpu_mib, experiment="kernels", pin=pin, tags=tags
    )


def _wording(reason: str) -> str:
    """The engine speaks of instances; for a kernel its slots are node_max_kernels."""
    return (
        reason.replace("node_max_instances", "node_max_kernels")
        .replace("takes no instances", "takes no kernels")
        .replace(" instances", " kernels")
        .replace("reserved)", "reserved and claimed by its experiments)")
        .replace("is unavailable (health check failing)", "is unavailable (the gateway's SSH to it failed)")
    )


def verdicts(pool: Pool, running: Iterable[Running], kid: str, req: KernelRequest) -> tuple[Verdict, ...]:
    nodes = tuple(_for_kernels(p) for p in pool.nodes)
    placed = [
        _instance(r.id, r.memory_mib, r.gpu_mib, r.gpu_mib > 0)
        for r in running
        if r.node in {n.name for n in nodes}
    ]
    new = _instance(kid, req.memory_mib, req.gpu_mib, req.gpu, pin=req.node, tags=req.tags)
    state = ClusterState(Problem(nodes=nodes, instances=(*placed, new), policy=POLICY))
    where = {r.id: r.node for r in running}
    for inst in placed:
        state.assign(inst, state.index[where[inst.id]])
    out = greedy.verdicts(state, new, POLICY)
    return tuple(replace(v, rejected=_wording(v.rejected)) if v.rejected else v for v in out)


def choose(pool: Pool, running: Iterable[Running], kid: str, req: KernelRequest) -> str:
    """The node for kernel `kid`; NoPlacementError with every node's reason when none can take it."""
    found = verdicts(pool, running, kid, req)
    fits = [v for v in found if v.score is not None]
    if not fits:
        lines = "; ".join(f"{v.node}: {v.rejected}" for v in found)
        raise NoPlacementError(f"no node can take this kernel ({req.describe()}): {lines}")
    rank = {p.node.name: k for k, p in enumerate(pool.nodes)}
    prio = {p.node.name: p.node.priority for p in pool.nodes}
    best = max(fits, key=lambda v: (v.score, prio[v.node], -rank[v.node]))
    return best.node
