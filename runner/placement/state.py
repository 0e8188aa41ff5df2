"""Mutable bookkeeping of one placement run: what each node holds, as arrays for fast scoring."""

from __future__ import annotations

from collections.abc import Iterable, Mapping

import numpy as np

from runner.placement.model import Instance, Node, Problem


def symmetric_relation(instances: Iterable[Instance], attr: str) -> dict[str, frozenset[str]]:
    """affinity/anti_affinity as a symmetric relation: declared by either side counts for both."""
    by_id = {inst.id: inst for inst in instances}
    rel: dict[str, set[str]] = {iid: set() for iid in by_id}
    for inst in by_id.values():
        for other in getattr(inst, attr):
            if other in by_id and other != inst.id:
                rel[inst.id].add(other)
                rel[other].add(inst.id)
    return {iid: frozenset(peers) for iid, peers in rel.items()}


class ClusterState:
    """Capacities (fixed) and usage (changing) per node, indexed like `problem.nodes`."""

    def __init__(self, problem: Problem) -> None:
        self.problem = problem
        nodes = problem.nodes
        self.nodes: tuple[Node, ...] = nodes
        self.index: dict[str, int] = {n.name: k for k, n in enumerate(nodes)}
        self.instances: dict[str, Instance] = {i.id: i for i in problem.instances}
        self.ram_cap = np.array([n.ram_capacity for n in nodes], dtype=np.int64)
        self.gpu_cap = np.array([n.gpu_capacity for n in nodes], dtype=np.int64)
        self.max_inst = np.array([n.max_instances for n in nodes], dtype=np.int64)
        self.unified = np.array([n.unified for n in nodes], dtype=bool)
        self.has_gpu = np.array([n.gpu for n in nodes], dtype=bool)
        self.has_torch = np.array([n.torch for n in nodes], dtype=bool)
        self.priority = np.array([n.priority for n in nodes], dtype=np.int64)
        self.in_service = np.array([not n.maintenance for n in nodes], dtype=bool)
        self.healthy = np.array([not n.unavailable for n in nodes], dtype=bool)
        self.included = np.array([n.name not in problem.excluded for n in nodes], dtype=bool)
        self.usable = self.in_service & self.healthy & self.included
        self.everywhere = np.ones(len(nodes), dtype=bool)  # a check that does not apply (read-only)
        self.everywhere.flags.writeable = False
        # Deterministic last tie-break: node name order, independent of inventory order.
        order = sorted(range(len(nodes)), key=lambda k: nodes[k].name)
        self.name_rank = np.empty(len(nodes), dtype=np.int64)
        self.name_rank[order] = np.arange(len(nodes))
        self.used_ram = np.zeros(len(nodes), dtype=np.int64)
        self.used_gpu = np.zeros(len(nodes), dtype=np.int64)
        self.count = np.zeros(len(nodes), dtype=np.int64)
        self.members: list[list[str]] = [[] for _ in nodes]
        self.where: dict[str, int] = {}
        self.affinity = symmetric_relation(problem.instances, "affinity")
        self.anti_affinity = symmetric_relation(problem.instances, "anti_affinity")
        self._tag_masks: dict[frozenset[str], np.ndarray] = {}
        self.repairs = 0  # instances the greedy pass moved to make room (see greedy._make_room)

    def ram_claims(self, inst: Instance) -> np.ndarray:
        """RAM booked per node: a GPU claim adds to it on unified-memory nodes."""
        return inst.ram_mib + self.unified.astype(np.int64) * inst.gpu_claim()

    def tag_mask(self, tags: frozenset[str]) -> np.ndarray:
        mask = self._tag_masks.get(tags)
        if mask is None:
            mask = np.array([tags <= n.tags for n in self.nodes], dtype=bool)
            self._tag_masks[tags] = mask
        return mask

    def assign(self, inst: Instance, k: int) -> None:
        self.used_ram[k] += inst.ram_claim(self.nodes[k])
        self.used_gpu[k] += inst.gpu_claim()
        self.count[k] += 1
        self.members[k].append(inst.id)
        self.where[inst.id] = k

    def unassign(self, inst: Instance) -> None:
        k = self.where.pop(inst.id)
        self.used_ram[k] -= inst.ram_claim(self.nodes[k])
        self.used_gpu[k] -= inst.gpu_claim()
        self.count[k] -= 1
        self.members[k].remove(inst.id)

    def peers_on(self, iid: str, relation: Mapping[str, frozenset[str]]) -> dict[int, list[str]]:
        """Node index -> placed instances related to `iid` there."""
        out: dict[int, list[str]] = {}
        for other in sorted(relation.get(iid, ())):
            k = self.where.get(other)
            if k is not None:
                out.setdefault(k, []).append(other)
        return out

    def assignment(self) -> dict[str, str]:
        return {iid: self.nodes[k].name for iid, k in self.where.items()}
