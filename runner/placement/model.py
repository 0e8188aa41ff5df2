"""Value types of the placement problem. Memory is in whole MiB so that capacity checks are exact."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field

MIB_PER_GB = 1024


def gb_to_mib(gb: float) -> int:
    """GB (GiB, as the hardware profiles and experiment files mean it) to whole MiB, rounded up."""
    mib = gb * MIB_PER_GB
    whole = int(mib)
    return whole if whole == mib else whole + 1


def fmt_gb(mib: float) -> str:
    """A MiB amount for people: '12 GB', '6.5 GB', '0.2 GB'."""
    if 0 < mib < MIB_PER_GB / 10:
        return f"{round(mib)} MiB"
    text = f"{mib / MIB_PER_GB:.1f}".rstrip("0").rstrip(".")
    return f"{text} GB"


@dataclass(frozen=True)
class Node:
    """A cluster node as placement sees it (from the inventory's node_* variables)."""

    name: str
    ram_mib: int
    reserved_mib: int = 0
    gpu: bool = False
    gpu_mib: int = 0
    unified: bool = False
    max_instances: int = 1
    cpu_cores: int = 1
    tags: frozenset[str] = frozenset()
    priority: int = 0
    maintenance: bool = False
    unavailable: bool = False
    torch: bool = False  # node_torch: PyTorch is provisioned there (a training unit needs it)

    @property
    def ram_capacity(self) -> int:
        """Memory instances may use: RAM minus the reserve (on unified nodes, GPU use comes out of it)."""
        return max(0, self.ram_mib - self.reserved_mib)

    @property
    def gpu_capacity(self) -> int:
        return self.gpu_mib if self.gpu else 0


@dataclass(frozen=True)
class Instance:
    """One experiment instance's placement requirements and hints."""

    id: str
    ram_mib: int
    gpu: bool = False
    gpu_mib: int = 0
    experiment: str = ""
    pin: str | None = None
    prefer: str | None = None
    affinity: tuple[str, ...] = ()
    anti_affinity: tuple[str, ...] = ()
    tags: frozenset[str] = frozenset()
    avoid: frozenset[str] = frozenset()  # nodes it may not use (a training job's nodes/exclude)
    torch: bool = False  # needs PyTorch on its node (a training unit)

    def gpu_claim(self) -> int:
        return self.gpu_mib if self.gpu else 0

    def ram_claim(self, node: Node) -> int:
        """RAM booked on `node`. On a unified-memory node a GPU claim is a RAM claim too (one pool)."""
        return self.ram_mib + (self.gpu_claim() if node.unified else 0)


@dataclass(frozen=True)
class Problem:
    nodes: tuple[Node, ...]
    instances: tuple[Instance, ...]
    current: Mapping[str, str] = field(default_factory=dict)
    policy: str = "score"
    rebalance: bool = False
    excluded: frozenset[str] = frozenset()
    explain: bool = False
    exact_timeout_s: float = 10.0


@dataclass(frozen=True)
class Verdict:
    """What placement thought of one node for one instance: a score by factor, or why it was rejected."""

    node: str
    factors: Mapping[str, float] | None = None
    rejected: str | None = None

    @property
    def score(self) -> float | None:
        return None if self.factors is None else sum(self.factors.values())


@dataclass(frozen=True)
class Move:
    instance: str
    source: str
    target: str


@dataclass(frozen=True)
class Placement:
    assignment: Mapping[str, str]
    method: str  # "greedy", "best-fit" (greedy retried as binpack) or "exact"
    moves: tuple[Move, ...] = ()
    explanations: Mapping[str, tuple[Verdict, ...]] = field(default_factory=dict)
    kept: frozenset[str] = frozenset()  # instances left where they already ran (stable re-placement)
