"""The fast pass: most-constrained instance first, best-scoring feasible node, no backtracking."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from runner.placement import constraints, policies
from runner.placement.model import Instance, Verdict
from runner.placement.state import ClusterState


@dataclass(frozen=True)
class Stuck:
    """The instance the greedy pass could not place, and every node's reason at that moment."""

    instance: Instance
    verdicts: tuple[Verdict, ...]


def _difficulty(state: ClusterState, inst: Instance) -> tuple[int, int, int, int, str]:
    return (
        0 if inst.pin else 1,
        0 if inst.gpu else 1,
        -(inst.ram_mib + inst.gpu_claim()),
        -len(state.anti_affinity.get(inst.id, ())),
        inst.id,
    )


def order(state: ClusterState, instances: list[Instance]) -> list[Instance]:
    """Hardest first, with affinity groups kept together so the later members see the earlier ones."""
    ids = {inst.id for inst in instances}
    parent = {iid: iid for iid in ids}

    def root(x: str) -> str:
        while parent[x] != x:
            parent[x] = parent[parent[x]]
            x = parent[x]
        return x

    for iid in sorted(ids):
        for other in state.affinity.get(iid, ()):
            if other in ids:
                a, b = root(iid), root(other)
                if a != b:
                    parent[max(a, b)] = min(a, b)
    groups: dict[str, list[Instance]] = {}
    for inst in instances:
        groups.setdefault(root(inst.id), []).append(inst)
    ranked = []
    for members in groups.values():
        members.sort(key=lambda i: _difficulty(state, i))
        ranked.append((_difficulty(state, members[0]), members))
    ranked.sort(key=lambda item: item[0])
    return [inst for _, members in ranked for inst in members]


def verdicts(state: ClusterState, inst: Instance, policy: str) -> tuple[Verdict, ...]:
    """Every node's verdict for `inst` in the current state: factors when it fits, else the reason."""
    reasons = [constraints.rejection(state, inst, k) for k in range(len(state.nodes))]
    idx = np.array([k for k, r in enumerate(reasons) if r is None], dtype=np.int64)
    table: dict[int, dict[str, float]] = {}
    if len(idx):
        fs = policies.factors(policy, state, inst, idx)
        for pos, k in enumerate(idx):
            table[int(k)] = {name: float(vals[pos]) for name, vals in fs.items()}
    return tuple(
        Verdict(node=n.name, factors=table.get(k), rejected=reasons[k]) for k, n in enumerate(state.nodes)
    )


def _make_room(state: ClusterState, inst: Instance) -> int | None:
    """Repair step: move one placed instance elsewhere so that `inst` fits where it stood.

    Tries nodes that could take `inst` on an empty cluster, fullest first, and on each the placed
    instances smallest first; the first move that makes room wins. Returns the node now open to `inst`.
    """
    static = np.flatnonzero(constraints.static_mask(state, inst))
    for k in sorted(static, key=lambda k: (-int(state.count[k]), int(state.name_rank[k]))):
        members = sorted(state.members[k], key=lambda m: (state.instances[m].ram_mib, m))
        for mid in members:
            other = state.instances[mid]
            if other.pin is not None:
                continue
            state.unassign(other)
            if constraints.feasible_mask(state, inst)[k]:
                state.assign(inst, k)
                targets = np.flatnonzero(constraints.feasible_mask(state, other))
                state.unassign(inst)
                targets = targets[targets != k]
                if len(targets):
                    state.assign(other, int(targets[np.argmin(state.name_rank[targets])]))
                    state.repairs += 1
                    return int(k)
            state.assign(other, k)
    return None


def run(state: ClusterState, explain: dict[str, tuple[Verdict, ...]] | None, kept: set[str]) -> Stuck | None:
    """Place every instance of the problem into `state`. Returns None, or where it got stuck."""
    problem = state.problem
    pending = list(problem.instances)
    if not problem.rebalance:
        # Stability: an instance stays where it runs unless that now breaks a constraint.
        rest = []
        for inst in sorted(pending, key=lambda i: _difficulty(state, i)):
            k = state.index.get(problem.current.get(inst.id, ""))
            if k is not None and constraints.feasible_mask(state, inst)[k]:
                if explain is not None:
                    explain[inst.id] = verdicts(state, inst, problem.policy)
                state.assign(inst, k)
                kept.add(inst.id)
            else:
                rest.append(inst)
        pending = rest
    for inst in order(state, pending):
        mask = constraints.feasible_mask(state, inst)
        idx = np.flatnonzero(mask)
        if len(idx) == 0:
            stuck = Stuck(inst, verdicts(state, inst, problem.policy))
            k = _make_room(state, inst)
            if k is None:
                return stuck
            if explain is not None:
                explain[inst.id] = verdicts(state, inst, problem.policy)
            state.assign(inst, k)
            continue
        fs = policies.factors(problem.policy, state, inst, idx)
        total = np.sum(np.vstack(list(fs.values())), axis=0)
        k = policies.best(state, inst, idx, total)
        if explain is not None:
            explain[inst.id] = verdicts(state, inst, problem.policy)
        state.assign(inst, k)
    return None
