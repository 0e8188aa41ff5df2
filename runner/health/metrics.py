"""Prometheus textfile-collector output: render the cluster's health as exposition text (pure) and write
it atomically (node_exporter may read the file at any moment). No timestamps; `_total` only on counters."""

from __future__ import annotations

from collections.abc import Iterable
from pathlib import Path

from runner.files import atomic
from runner.health.cluster import ClusterHealth
from runner.health.model import Status


def _escape(value: str) -> str:
    return value.replace("\\", "\\\\").replace("\n", "\\n").replace('"', '\\"')


def _labels(labels: dict[str, str]) -> str:
    if not labels:
        return ""
    return "{" + ",".join(f'{k}="{_escape(v)}"' for k, v in labels.items()) + "}"


def _number(value: float) -> str:
    if isinstance(value, bool):
        return "1" if value else "0"
    if float(value).is_integer():
        return str(int(value))
    return repr(float(value))


def _family(
    name: str, kind: str, help_text: str, samples: Iterable[tuple[dict[str, str], float]]
) -> list[str]:
    if kind == "counter" and not name.endswith("_total"):
        raise ValueError(f"counter {name} must end in _total")
    if kind != "counter" and name.endswith("_total"):
        raise ValueError(f"{kind} {name} must not end in _total")
    lines = [f"# HELP {name} {help_text}", f"# TYPE {name} {kind}"]
    lines += [f"{name}{_labels(labels)} {_number(value)}" for labels, value in samples]
    return lines


def render(health: ClusterHealth, *, placement_failures: int | None = None) -> str:
    """The exposition text. `placement_failures` is the controller's count of instances it could not
    place (launch/failover will count them); the family is left out while nobody counts."""
    nodes = health.nodes
    lines: list[str] = []
    lines += _family(
        "edgejar_node_up",
        "gauge",
        "1 when the node answered the last health poll, else 0 (also while within the grace period).",
        [({"node": n.node}, n.reachable) for n in nodes],
    )
    lines += _family(
        "edgejar_node_status",
        "gauge",
        "1 for the node's current health status (HEALTHY, DEGRADED, UNAVAILABLE, MAINTENANCE), else 0.",
        [({"node": n.node, "status": s.value}, n.status == s) for n in nodes for s in Status],
    )
    lines += _family(
        "edgejar_node_memory_used_bytes",
        "gauge",
        "Memory in use on the node (total minus available, or its cgroup usage under a ceiling).",
        [({"node": n.node}, n.sample.mem_used_bytes) for n in nodes if n.sample],
    )
    lines += _family(
        "edgejar_node_memory_total_bytes",
        "gauge",
        "Memory of the node (MemTotal, or its cgroup ceiling when lower).",
        [({"node": n.node}, n.sample.mem_total_bytes) for n in nodes if n.sample],
    )
    lines += _family(
        "edgejar_instances_running",
        "gauge",
        "Instance units (edgejar-instance@) active and running on the node.",
        [({"node": n.node}, n.running) for n in nodes],
    )
    rows = [(n, i) for n in nodes for i in n.instances]
    lines += _family(
        "edgejar_instance_deaths_total",
        "counter",
        "Deaths of an instance: the records database's count when known, else systemd's NRestarts.",
        [
            (
                {"node": n.node, "instance": i.instance},
                i.stats.deaths if i.stats.deaths is not None else i.restarts,
            )
            for n, i in rows
            if i.stats.deaths is not None or i.restarts is not None
        ],
    )
    lines += _family(
        "edgejar_instance_tokens_per_second",
        "gauge",
        "Generation speed of an instance's last cycle, from the node's records database.",
        [
            ({"node": n.node, "instance": i.instance}, i.stats.tokens_per_s)
            for n, i in rows
            if i.stats.tokens_per_s is not None
        ],
    )
    lines += _family(
        "edgejar_instance_memory_bytes",
        "gauge",
        "Memory of an instance's unit (systemd MemoryCurrent).",
        [
            ({"node": n.node, "instance": i.instance}, i.memory_bytes)
            for n, i in rows
            if i.memory_bytes is not None
        ],
    )
    if placement_failures is not None:
        lines += _family(
            "edgejar_placement_failures_total",
            "counter",
            "Instances the controller could not place on any node.",
            [({}, placement_failures)],
        )
    lines += _family(
        "edgejar_health_poll_duration_seconds",
        "gauge",
        "Wall time of the last health poll of all nodes.",
        [({}, round(health.elapsed_s, 4))],
    )
    return "\n".join(lines) + "\n"


def write(path: Path, text: str) -> None:
    """Atomically replace the .prom file (a temporary file beside it, then a rename)."""
    if path.suffix != ".prom":
        from runner.errors import InputError

        raise InputError(f"{path}: the textfile collector reads only files ending in .prom")
    atomic.write_all({path: text})
