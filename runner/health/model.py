"""What a poll yields, as plain frozen data: a node's parsed probe, its instances, and the assessed status."""

from __future__ import annotations

from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any


class Status(StrEnum):
    HEALTHY = "HEALTHY"
    DEGRADED = "DEGRADED"
    UNAVAILABLE = "UNAVAILABLE"
    MAINTENANCE = "MAINTENANCE"


@dataclass(frozen=True)
class UnitSample:
    """One edgejar-instance@<id>.service (or a notebook kernel's edgejar-kernel-<id>.service) as
    `systemctl show` reported it."""

    instance: str  # the instance's (or kernel's) id
    active: str  # ActiveState: active, inactive, failed, activating, deactivating
    sub: str  # SubState: running, dead, failed, auto-restart, ...
    result: str  # Result: success, exit-code, signal, oom-kill, ...
    restarts: int  # NRestarts
    memory_bytes: int | None  # MemoryCurrent
    memory_max_bytes: int | None  # MemoryMax (None: no ceiling)
    main_pid: int
    state_age_s: float | None  # seconds since the last state change


@dataclass(frozen=True)
class RecordStats:
    """Per-instance statistics from the node's records database (probe.read_records)."""

    lives: int | None = None
    deaths: int | None = None
    cycle: int | None = None
    tokens_per_s: float | None = None
    last_message_at: float | None = None  # epoch seconds
    end: str | None = None  # how the latest life ended (completed, stopped, oom-kill...); None: not ended
    # A training unit's latest step (its first local rank): step, loss, samples/s, global rank.
    step: int | None = None
    loss: float | None = None
    samples_per_s: float | None = None
    rank: int | None = None


@dataclass(frozen=True)
class NodeSample:
    """One node's probe output, parsed."""

    hostname: str
    time: float
    uptime_s: float
    load: tuple[float, float, float]
    cpus: int
    mem_total_bytes: int
    mem_available_bytes: int
    swap_total_bytes: int
    swap_free_bytes: int
    memory_cgroup: bool
    disk_path: str
    disk_total_bytes: int
    disk_avail_bytes: int
    failed_units: tuple[str, ...]
    units: tuple[UnitSample, ...]
    kernels: tuple[UnitSample, ...] = ()  # notebook kernels (docs/notebooks.md)
    gpu_load_pct: float | None = None
    temps_c: dict[str, float] = field(default_factory=dict)
    records_db: bool = False
    records: dict[str, RecordStats] = field(default_factory=dict)
    probe_s: float = 0.0

    @property
    def mem_used_bytes(self) -> int:
        return max(0, self.mem_total_bytes - self.mem_available_bytes)

    @property
    def mem_used_fraction(self) -> float:
        return self.mem_used_bytes / self.mem_total_bytes if self.mem_total_bytes else 0.0

    @property
    def disk_used_fraction(self) -> float:
        if not self.disk_total_bytes:
            return 0.0
        return 1.0 - self.disk_avail_bytes / self.disk_total_bytes

    @property
    def max_temp_c(self) -> float | None:
        return max(self.temps_c.values()) if self.temps_c else None


@dataclass(frozen=True)
class PollResult:
    """One node, one poll: the sample, or why there is none."""

    node: str
    at: float  # monotonic time the poll finished
    elapsed_s: float
    sample: NodeSample | None = None
    error: str | None = None
    unreachable: bool = False  # SSH itself failed (connection, auth, timeout), not the probe

    @property
    def ok(self) -> bool:
        return self.sample is not None


@dataclass(frozen=True)
class InstanceRow:
    """One instance as the health table shows it: its placement joined with its unit and records."""

    instance: str
    node: str
    state: str  # the unit's ActiveState/SubState, "not loaded", or "unknown" (node unreachable)
    placed: bool
    memory_bytes: int | None = None
    memory_max_bytes: int | None = None
    restarts: int | None = None
    stats: RecordStats = field(default_factory=RecordStats)

    @property
    def running(self) -> bool:
        return self.state == "active/running"


@dataclass(frozen=True)
class NodeHealth:
    """A node's assessed state after a poll (hysteresis applied)."""

    node: str
    address: str
    status: Status
    reasons: tuple[str, ...]
    sample: NodeSample | None
    ram_gb: float
    max_instances: int
    gpu: bool
    maintenance: bool
    last_ok_age_s: float | None  # seconds since the last good sample (None: never)
    instances: tuple[InstanceRow, ...] = ()
    reachable: bool = False  # the last poll got an answer over SSH
    # kernel id -> seconds since its last activity, from the notebook gateway (when it was asked)
    kernel_idle_s: dict[str, float] = field(default_factory=dict)

    @property
    def kernels(self) -> tuple[UnitSample, ...]:
        return () if self.sample is None else self.sample.kernels

    def kernels_json(self) -> dict[str, Any]:
        """Kernels on the node: how many run, their memory, each one's state, ceiling, age and idle time."""
        running = [k for k in self.kernels if k.active == "active"]
        return {
            "count": len(running),
            "memory_bytes": sum(k.memory_bytes or 0 for k in running),
            "items": [
                {
                    "id": k.instance,
                    "state": f"{k.active}/{k.sub}",
                    "result": k.result,
                    "memory_bytes": k.memory_bytes,
                    "memory_max_bytes": k.memory_max_bytes,
                    "up_s": None if k.state_age_s is None else round(k.state_age_s, 1),
                    "idle_s": self.kernel_idle_s.get(k.instance),
                }
                for k in self.kernels
            ],
        }

    @property
    def running(self) -> int:
        return sum(1 for i in self.instances if i.running)

    def to_json(self) -> dict[str, Any]:
        s = self.sample
        return {
            "node": self.node,
            "host": self.address,
            "status": self.status.value,
            "reasons": list(self.reasons),
            "maintenance": self.maintenance,
            "reachable": self.reachable,
            "last_ok_age_s": None if self.last_ok_age_s is None else round(self.last_ok_age_s, 3),
            "ram_gb": self.ram_gb,
            "memory": None
            if s is None
            else {
                "used_bytes": s.mem_used_bytes,
                "total_bytes": s.mem_total_bytes,
                "used_fraction": round(s.mem_used_fraction, 4),
                "swap_total_bytes": s.swap_total_bytes,
                "swap_free_bytes": s.swap_free_bytes,
                "memory_cgroup": s.memory_cgroup,
            },
            "disk": None
            if s is None
            else {"path": s.disk_path, "total_bytes": s.disk_total_bytes, "avail_bytes": s.disk_avail_bytes},
            "load": None if s is None else list(s.load),
            "gpu": {
                "present": self.gpu,
                "load_pct": None if s is None else s.gpu_load_pct,
                "temps_c": None if s is None else dict(s.temps_c),
            },
            "failed_units": [] if s is None else list(s.failed_units),
            "instances": {"running": self.running, "max": self.max_instances},
            "kernels": self.kernels_json(),
            "instance_rows": [
                {
                    "id": i.instance,
                    "state": i.state,
                    "placed": i.placed,
                    "memory_bytes": i.memory_bytes,
                    "memory_max_bytes": i.memory_max_bytes,
                    "restarts": i.restarts,
                    "lives": i.stats.lives,
                    "deaths": i.stats.deaths,
                    "cycle": i.stats.cycle,
                    "tokens_per_s": i.stats.tokens_per_s,
                    "last_message_at": i.stats.last_message_at,
                    # training units (edgejar-train@): the latest step of their first rank
                    "step": i.stats.step,
                    "loss": i.stats.loss,
                    "samples_per_s": i.stats.samples_per_s,
                    "rank": i.stats.rank,
                }
                for i in self.instances
            ],
        }
