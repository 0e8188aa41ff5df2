"""Hard constraints, twice: as a vectorised mask (fast path) and as a reason per node (explanations).

`feasible_mask` and `rejection` must agree; a property test checks that they do.
"""

from __future__ import annotations

import numpy as np

from runner.placement.model import Instance, Node, fmt_gb
from runner.placement.state import ClusterState


def static_mask(state: ClusterState, inst: Instance) -> np.ndarray:
    """Nodes that could take `inst` on an empty cluster."""
    mask = state.usable & (state.max_inst > 0)
    if inst.pin is not None:
        pinned = np.zeros(len(state.nodes), dtype=bool)
        k = state.index.get(inst.pin)
        if k is not None:
            pinned[k] = True
        mask &= pinned
    if inst.gpu:
        mask &= state.has_gpu & (inst.gpu_claim() <= state.gpu_cap)
    if inst.tags:
        mask &= state.tag_mask(inst.tags)
    for name in inst.avoid:
        k = state.index.get(name)
        if k is not None:
            mask[k] = False
    mask &= state.ram_claims(inst) <= state.ram_cap
    return mask


def feasible_mask(state: ClusterState, inst: Instance, base: np.ndarray | None = None) -> np.ndarray:
    """Nodes that can take `inst` now, given what is already placed."""
    mask = static_mask(state, inst) if base is None else base.copy()
    mask &= state.count < state.max_inst
    mask &= state.used_ram + state.ram_claims(inst) <= state.ram_cap
    if inst.gpu:
        mask &= state.used_gpu + inst.gpu_claim() <= state.gpu_cap
    for k in state.peers_on(inst.id, state.anti_affinity):
        mask[k] = False
    return mask


def _static_reason(state: ClusterState, inst: Instance, node: Node) -> str | None:
    name = node.name
    if node.maintenance:
        return f"{name} is in maintenance (node_maintenance: true)"
    if node.unavailable:
        return f"{name} is unavailable (health check failing)"
    if name in state.problem.excluded:
        return f"{name} is excluded (--exclude {name})"
    if node.max_instances <= 0:
        return f"{name} takes no instances (node_max_instances: {node.max_instances})"
    if inst.pin is not None and inst.pin != name:
        return f"{inst.id} is pinned to {inst.pin}"
    if name in inst.avoid:
        return f"{inst.experiment} leaves {name} out (nodes/exclude in its experiment file)"
    if inst.gpu and not node.gpu:
        return f"needs a GPU; {name} has none"
    if inst.gpu and inst.gpu_claim() > node.gpu_capacity:
        return f"needs {fmt_gb(inst.gpu_claim())} GPU memory; {name} has {fmt_gb(node.gpu_capacity)}"
    if inst.tags and not inst.tags <= node.tags:
        missing = ", ".join(sorted(inst.tags - node.tags))
        return f"needs tag(s) {missing}; {name} has {', '.join(sorted(node.tags)) or 'none'}"
    claim = inst.ram_claim(node)
    if claim > node.ram_capacity:
        return (
            f"needs {_claim_text(inst, node)}; {name} has {fmt_gb(node.ram_capacity)} "
            f"({fmt_gb(node.ram_mib)} minus {fmt_gb(node.reserved_mib)} reserved)"
        )
    return None


def _claim_text(inst: Instance, node: Node) -> str:
    if node.unified and inst.gpu_claim():
        return (
            f"{fmt_gb(inst.ram_claim(node))} of unified memory "
            f"({fmt_gb(inst.ram_mib)} RAM + {fmt_gb(inst.gpu_claim())} GPU)"
        )
    return f"{fmt_gb(inst.ram_mib)} memory"


def _after(members: list[str]) -> str:
    if not members:
        return ""
    shown = ", ".join(members[:4]) + (f" and {len(members) - 4} more" if len(members) > 4 else "")
    return f" after {shown}"


def rejection(state: ClusterState, inst: Instance, k: int) -> str | None:
    """Why node `k` cannot take `inst` now, or None when it can."""
    node = state.nodes[k]
    reason = _static_reason(state, inst, node)
    if reason is not None:
        return reason
    members = state.members[k]
    if state.count[k] >= state.max_inst[k]:
        return f"{node.name} is full: {state.count[k]}/{state.max_inst[k]} instances{_after(members)}"
    left = int(state.ram_cap[k] - state.used_ram[k])
    if inst.ram_claim(node) > left:
        kind = "unified memory" if node.unified else "memory"
        return f"needs {_claim_text(inst, node)}; {node.name} has {fmt_gb(left)} {kind} left{_after(members)}"
    if inst.gpu:
        gpu_left = int(state.gpu_cap[k] - state.used_gpu[k])
        if inst.gpu_claim() > gpu_left:
            return (
                f"needs {fmt_gb(inst.gpu_claim())} GPU memory; {node.name} has {fmt_gb(gpu_left)} "
                f"GPU memory left{_after(members)}"
            )
    clash = state.peers_on(inst.id, state.anti_affinity).get(k)
    if clash:
        return f"anti-affinity with {', '.join(clash)} on {node.name}"
    return None
