"""The cluster's health over time: the inventory's nodes, a Poller, and each node's hysteresis state.
`HealthService.poll()` is one poll of every node, assessed; the CLI calls it once, the monitor repeatedly."""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from runner import inventory
from runner.health import instances, status
from runner.health.model import NodeHealth, PollResult
from runner.health.poll import Poller
from runner.health.targets import load_targets
from runner.placement.model import MIB_PER_GB


@dataclass(frozen=True)
class ClusterHealth:
    nodes: tuple[NodeHealth, ...]
    polled_at: float  # wall clock (epoch seconds) when the poll finished
    elapsed_s: float

    def by_name(self) -> dict[str, NodeHealth]:
        return {n.node: n for n in self.nodes}


class HealthService:
    """Polls the nodes of an inventory and keeps each node's Link (hysteresis) between polls."""

    def __init__(
        self,
        cluster: inventory.Cluster,
        poller: Poller,
        thresholds: status.Thresholds,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.cluster = cluster
        self.poller = poller
        self.thresholds = thresholds
        self.clock = clock
        self.links: dict[str, status.Link] = {cn.node.name: status.Link() for cn in cluster.nodes}

    @classmethod
    def from_inventory(
        cls,
        path: Path,
        thresholds: status.Thresholds,
        *,
        nodes: list[str] | None = None,
        timeout_s: float = 10.0,
    ) -> HealthService:
        cluster = inventory.load(path)
        if nodes:
            from runner.errors import InputError

            known = {cn.node.name for cn in cluster.nodes}
            unknown = [n for n in nodes if n not in known]
            if unknown:
                raise InputError(
                    f"--node {', '.join(unknown)}: not a node of {path} (nodes: {', '.join(sorted(known))})"
                )
            cluster = inventory.Cluster(
                cluster.inventory,
                tuple(cn for cn in cluster.nodes if cn.node.name in nodes),
                cluster.peer_ports,
                cluster.models,
            )
        targets = load_targets(path, [cn.node.name for cn in cluster.nodes])
        return cls(cluster, Poller(targets, timeout_s=timeout_s), thresholds)

    def reload_inventory(self) -> None:
        """Re-read node_* variables and placements (maintenance flags, new host_vars); keeps the links."""
        fresh = inventory.load(self.cluster.inventory).by_name()
        self.cluster = inventory.Cluster(
            self.cluster.inventory,
            tuple(fresh.get(cn.node.name, cn) for cn in self.cluster.nodes),
            self.cluster.peer_ports,
            self.cluster.models,
        )

    def apply(self, results: dict[str, PollResult]) -> None:
        for node, result in results.items():
            self.links[node] = status.step(self.links[node], result)

    def assess(self, elapsed_s: float = 0.0) -> ClusterHealth:
        now = self.clock()
        out = []
        for cn in self.cluster.nodes:
            n = cn.node
            link = self.links[n.name]
            st, reasons = status.decide(
                link,
                now,
                self.thresholds,
                maintenance=n.maintenance,
                limits_needed=n.max_instances > 0,
            )
            out.append(
                NodeHealth(
                    node=n.name,
                    address=cn.address,
                    status=st,
                    reasons=reasons,
                    sample=link.last_sample,
                    ram_gb=n.ram_mib / MIB_PER_GB,
                    max_instances=n.max_instances,
                    gpu=n.gpu,
                    maintenance=n.maintenance,
                    last_ok_age_s=None if link.last_ok is None else max(0.0, now - link.last_ok),
                    instances=instances.rows(
                        n.name,
                        [*cn.placed, *cn.training],
                        link.last_sample,
                        stale=link.failing_since is not None,
                    ),
                    reachable=link.last_ok is not None and link.failing_since is None,
                )
            )
        return ClusterHealth(tuple(out), time.time(), elapsed_s)

    def poll(self, nodes: list[str] | None = None) -> ClusterHealth:
        start = self.clock()
        self.apply(self.poller.poll(nodes))
        return self.assess(self.clock() - start)

    def close(self) -> None:
        self.poller.close()
