"""Text for people: the health table's cells (shared by the CLI and the monitor). Pure."""

from __future__ import annotations

from runner.health.cluster import ClusterHealth
from runner.health.model import NodeHealth

GIB = 1024**3
HEADER = ["node", "host", "status", "ram used/total", "gpu", "instances", "notes"]


def gib(n: int | float) -> str:
    return f"{n / GIB:.1f}"


def mib(n: int | None) -> str:
    return "-" if n is None else f"{n / 1024**2:.0f}M"


def ram(n: NodeHealth) -> str:
    s = n.sample
    if s is None:
        return f"?/{n.ram_gb:g} GiB"
    text = f"{gib(s.mem_used_bytes)}/{gib(s.mem_total_bytes)} GiB ({s.mem_used_fraction:.0%})"
    return text


def gpu(n: NodeHealth) -> str:
    s = n.sample
    parts = ["yes" if n.gpu else "-"]
    if s is not None and s.gpu_load_pct is not None:
        parts.append(f"{s.gpu_load_pct:.0f}%")
    if s is not None and s.max_temp_c is not None:
        parts.append(f"{s.max_temp_c:.0f}C")
    return " ".join(parts)


def instances(n: NodeHealth) -> str:
    """Running/max instances, and the node's notebook kernels (how many, their memory) when it has any."""
    text = f"{n.running}/{n.max_instances}"
    k = n.kernels_json()
    if k["count"]:
        text += f" + {k['count']} kernel{'s' if k['count'] != 1 else ''} {mib(k['memory_bytes'])}"
    return text


def notes(n: NodeHealth) -> str:
    return "; ".join(n.reasons) or "-"


def table_rows(health: ClusterHealth) -> list[list[str]]:
    return [[n.node, n.address, n.status.value, ram(n), gpu(n), instances(n), notes(n)] for n in health.nodes]
