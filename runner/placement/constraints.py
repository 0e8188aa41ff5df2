"""Hard constraints. Each one is written once: a vectorised check over all nodes, with the reason it
gives for a node it rules out right beside it. A node is feasible when every check passes; the reason
for a rejection is the first failing check's. Static checks hold on an empty cluster; dynamic ones
depend on what is already placed.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

from runner.placement.model import Instance, Node, fmt_gb
from runner.placement.state import ClusterState

Mask = np.ndarray


@dataclass(frozen=True)
class Check:
    name: str
    passes: Callable[[ClusterState, Instance], Mask]  # one bool per node
    reason: Callable[[ClusterState, Instance, int], str]  # why node k fails it


def _only(state: ClusterState, names: frozenset[str] | set[str], keep: bool) -> Mask:
    """Nodes named in `names` (keep=True) or not named (keep=False)."""
    mask = np.full(len(state.nodes), not keep, dtype=bool)
    for name in names:
        k = state.index.get(name)
        if k is not None:
            mask[k] = keep
    return mask


def _claim_text(inst: Instance, node: Node) -> str:
    if node.unified and inst.gpu_claim():
        return (
            f"{fmt_gb(inst.ram_claim(node))} of unified memory "
            f"({fmt_gb(inst.ram_mib)} RAM + {fmt_gb(inst.gpu_claim())} GPU)"
        )
    return f"{fmt_gb(inst.ram_mib)} memory"


def _after(state: ClusterState, k: int) -> str:
    members = state.members[k]
    if not members:
        return ""
    shown = ", ".join(members[:4]) + (f" and {len(members) - 4} more" if len(members) > 4 else "")
    return f" after {shown}"


def _no_tags(state: ClusterState, inst: Instance, k: int) -> str:
    node = state.nodes[k]
    missing = ", ".join(sorted(inst.tags - node.tags))
    return f"needs tag(s) {missing}; {node.name} has {', '.join(sorted(node.tags)) or 'none'}"


def _no_room(state: ClusterState, inst: Instance, k: int) -> str:
    node = state.nodes[k]
    return (
        f"needs {_claim_text(inst, node)}; {node.name} has {fmt_gb(node.ram_capacity)} "
        f"({fmt_gb(node.ram_mib)} minus {fmt_gb(node.reserved_mib)} reserved)"
    )


def _no_room_left(state: ClusterState, inst: Instance, k: int) -> str:
    node = state.nodes[k]
    left = int(state.ram_cap[k] - state.used_ram[k])
    kind = "unified memory" if node.unified else "memory"
    return f"needs {_claim_text(inst, node)}; {node.name} has {fmt_gb(left)} {kind} left{_after(state, k)}"


def _no_gpu_left(state: ClusterState, inst: Instance, k: int) -> str:
    left = int(state.gpu_cap[k] - state.used_gpu[k])
    return (
        f"needs {fmt_gb(inst.gpu_claim())} GPU memory; {state.nodes[k].name} has {fmt_gb(left)} "
        f"GPU memory left{_after(state, k)}"
    )


def _anti_affinity(state: ClusterState, inst: Instance) -> Mask:
    clash = state.peers_on(inst.id, state.anti_affinity)
    if not clash:
        return state.everywhere
    mask = np.ones(len(state.nodes), dtype=bool)
    mask[list(clash)] = False
    return mask


# In the order their reasons are reported.
STATIC: tuple[Check, ...] = (
    Check(
        "maintenance",
        lambda s, i: s.in_service,
        lambda s, i, k: f"{s.nodes[k].name} is in maintenance (node_maintenance: true)",
    ),
    Check(
        "unavailable",
        lambda s, i: s.healthy,
        lambda s, i, k: f"{s.nodes[k].name} is unavailable (health check failing)",
    ),
    Check(
        "excluded",
        lambda s, i: s.included,
        lambda s, i, k: f"{s.nodes[k].name} is excluded (--exclude {s.nodes[k].name})",
    ),
    Check(
        "takes instances",
        lambda s, i: s.max_inst > 0,
        lambda s, i, k: (
            f"{s.nodes[k].name} takes no instances (node_max_instances: {s.nodes[k].max_instances})"
        ),
    ),
    Check(
        "pin",
        lambda s, i: _only(s, {i.pin}, keep=True) if i.pin is not None else s.everywhere,
        lambda s, i, k: f"{i.id} is pinned to {i.pin}",
    ),
    Check(
        "left out by its experiment",
        lambda s, i: _only(s, i.avoid, keep=False) if i.avoid else s.everywhere,
        lambda s, i, k: f"{i.experiment} leaves {s.nodes[k].name} out (nodes/exclude in its experiment file)",
    ),
    # A training unit runs torchrun from the node venv: PyTorch must be provisioned there (node_torch).
    Check(
        "torch",
        lambda s, i: s.has_torch if i.torch else s.everywhere,
        lambda s, i, k: f"needs PyTorch; {s.nodes[k].name} has none (node_torch is not true)",
    ),
    Check(
        "GPU",
        lambda s, i: s.has_gpu if i.gpu else s.everywhere,
        lambda s, i, k: f"needs a GPU; {s.nodes[k].name} has none",
    ),
    Check(
        "GPU memory",
        lambda s, i: i.gpu_claim() <= s.gpu_cap if i.gpu else s.everywhere,
        lambda s, i, k: (
            f"needs {fmt_gb(i.gpu_claim())} GPU memory; "
            f"{s.nodes[k].name} has {fmt_gb(s.nodes[k].gpu_capacity)}"
        ),
    ),
    Check("tags", lambda s, i: s.tag_mask(i.tags) if i.tags else s.everywhere, _no_tags),
    Check("memory", lambda s, i: s.ram_claims(i) <= s.ram_cap, _no_room),
)
DYNAMIC: tuple[Check, ...] = (
    Check(
        "free slot",
        lambda s, i: s.count < s.max_inst,
        lambda s, i, k: f"{s.nodes[k].name} is full: {s.count[k]}/{s.max_inst[k]} instances{_after(s, k)}",
    ),
    Check("memory left", lambda s, i: s.used_ram + s.ram_claims(i) <= s.ram_cap, _no_room_left),
    Check(
        "GPU memory left",
        lambda s, i: s.used_gpu + i.gpu_claim() <= s.gpu_cap if i.gpu else s.everywhere,
        _no_gpu_left,
    ),
    Check(
        "anti-affinity",
        _anti_affinity,
        lambda s, i, k: (
            f"anti-affinity with {', '.join(s.peers_on(i.id, s.anti_affinity)[k])} on {s.nodes[k].name}"
        ),
    ),
)


def static_mask(state: ClusterState, inst: Instance) -> Mask:
    """Nodes that could take `inst` on an empty cluster."""
    mask = state.everywhere.copy()
    for check in STATIC:
        mask &= check.passes(state, inst)
    return mask


def feasible_mask(state: ClusterState, inst: Instance, base: Mask | None = None) -> Mask:
    """Nodes that can take `inst` now, given what is already placed (`base`: its static mask, if known)."""
    mask = static_mask(state, inst) if base is None else base.copy()
    for check in DYNAMIC:
        mask &= check.passes(state, inst)
    return mask


def rejection(state: ClusterState, inst: Instance, k: int) -> str | None:
    """Why node `k` cannot take `inst` now (the first failing check's reason), or None when it can."""
    for check in (*STATIC, *DYNAMIC):
        if not check.passes(state, inst)[k]:
            return check.reason(state, inst, k)
    return None
