"""Soft objectives. A policy scores candidate nodes for one instance, factor by factor.

Every policy adds the two user-intent factors, affinity and preferred node, with the seed's weights.
Scores are computed over an index array of candidate nodes so a large cluster costs one vector pass.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np

from runner.placement.model import Instance
from runner.placement.state import ClusterState

Factors = dict[str, np.ndarray]
PolicyFn = Callable[[ClusterState, Instance, np.ndarray], Factors]


def _load(state: ClusterState, idx: np.ndarray) -> np.ndarray:
    return state.count[idx] / np.maximum(state.max_inst[idx], 1)


def _free_after_share(state: ClusterState, inst: Instance, idx: np.ndarray) -> np.ndarray:
    cap = np.maximum(state.ram_cap[idx], 1)
    return (state.ram_cap[idx] - state.used_ram[idx] - state.ram_claims(inst)[idx]) / cap


def _intent(state: ClusterState, inst: Instance, idx: np.ndarray) -> Factors:
    """Affinity (min(25, 10 x related peers on the node), either side declared it) and preferred (+10)."""
    affinity = np.zeros(len(idx))
    peers = state.peers_on(inst.id, state.affinity)
    if peers:
        counts = np.zeros(len(state.nodes))
        for k, ids in peers.items():
            counts[k] = len(ids)
        affinity = np.minimum(25.0, 10.0 * counts[idx])
    preferred = np.zeros(len(idx))
    if inst.prefer is not None and inst.prefer in state.index:
        preferred = np.where(idx == state.index[inst.prefer], 10.0, 0.0)
    return {"affinity": affinity, "preferred": preferred}


def score(state: ClusterState, inst: Instance, idx: np.ndarray) -> Factors:
    """The five-factor score (docs/placement.md): RAM efficiency, load, GPU match, affinity, preferred."""
    available = np.maximum(state.ram_cap[idx] - state.used_ram[idx], 1)
    util = state.ram_claims(inst)[idx] / available
    ram_eff = np.where((util >= 0.3) & (util <= 0.7), 30.0, np.where(util < 0.3, 20.0, 10.0))
    balance = 20.0 * (1.0 - _load(state, idx))
    return {
        "ram_efficiency": ram_eff,
        "load_balance": balance,
        "gpu_match": _gpu_match(state, inst, idx, 15, 5),
    }


def _gpu_match(
    state: ClusterState, inst: Instance, idx: np.ndarray, both: float, neither: float
) -> np.ndarray:
    gpu = state.has_gpu[idx]
    if inst.gpu:
        return np.where(gpu, both, 0.0)
    return np.where(gpu, 0.0, neither)


def binpack(state: ClusterState, inst: Instance, idx: np.ndarray) -> Factors:
    """Fill the fullest node first (fewest nodes used, most room left elsewhere for big instances)."""
    return {"fullness": 100.0 * (1.0 - _free_after_share(state, inst, idx))}


def spread(state: ClusterState, inst: Instance, idx: np.ndarray) -> Factors:
    """Keep the most memory free on every node (Nomad's spread): the emptiest node after placement wins."""
    return {"free_memory": 100.0 * _free_after_share(state, inst, idx)}


def least_loaded(state: ClusterState, inst: Instance, idx: np.ndarray) -> Factors:
    """The node running the smallest share of its instance slots (seed-004's least-loaded)."""
    return {"slots_free": 100.0 * (1.0 - _load(state, idx))}


def round_robin(state: ClusterState, inst: Instance, idx: np.ndarray) -> Factors:
    """Take nodes in inventory order, one instance each, then start over (seed-004's round robin)."""
    n = max(len(state.nodes), 1)
    cursor = len(state.where) % n
    distance = (idx - cursor) % n
    return {"turn": 100.0 * (1.0 - distance / n)}


def gpu_match(state: ClusterState, inst: Instance, idx: np.ndarray) -> Factors:
    """GPU work to GPU nodes, CPU work away from them (seed-004's GPU-aware), then the emptiest."""
    return {
        "gpu_match": _gpu_match(state, inst, idx, 100.0, 50.0),
        "free_memory": 10.0 * _free_after_share(state, inst, idx),
    }


POLICIES: dict[str, PolicyFn] = {
    "score": score,
    "binpack": binpack,
    "spread": spread,
    "least_loaded": least_loaded,
    "round_robin": round_robin,
    "gpu_match": gpu_match,
}


def factors(policy: str, state: ClusterState, inst: Instance, idx: np.ndarray) -> Factors:
    out = POLICIES[policy](state, inst, idx)
    out.update(_intent(state, inst, idx))
    return out


def best(state: ClusterState, inst: Instance, idx: np.ndarray, total: np.ndarray) -> int:
    """The winning node index. Ties: higher node_priority, then more memory left, then node name."""
    rounded = np.round(total, 6)
    free_after = state.ram_cap[idx] - state.used_ram[idx] - state.ram_claims(inst)[idx]
    order = np.lexsort((state.name_rank[idx], -free_after, -state.priority[idx], -rounded))
    return int(idx[order[0]])
