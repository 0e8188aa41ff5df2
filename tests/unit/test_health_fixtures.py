"""Shared builders for the health and monitor unit tests (no tests here): probe output as the probe prints
it, PollResults, a small inventory, and a fake Poller that answers from a script instead of SSH."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path
from typing import Any

from runner.health.model import PollResult
from runner.health.parse import parse
from runner.health.targets import Target

GIB = 1024**3

INVENTORY = """\
all:
  children:
    edgejar_nodes:
      children:
        jetson_orin:
          hosts:
            jetson: {ansible_host: 10.0.0.11, ansible_user: edgejar}
        rpi5:
          hosts:
            rpi1: {ansible_host: 10.0.0.12, ansible_user: edgejar}
"""

GROUP_VARS = {
    "jetson_orin.yml": "node_ram_gb: 64\nnode_reserved_ram_gb: 8\nnode_gpu: true\nnode_gpu_memory_gb: 56\n"
    "node_unified_memory: true\nnode_max_instances: 4\n",
    "rpi5.yml": "node_ram_gb: 8\nnode_reserved_ram_gb: 1.5\nnode_max_instances: 1\n",
}


def write_inventory(tmp: Path, placements: dict[str, list[dict[str, Any]]] | None = None) -> Path:
    (tmp / "group_vars").mkdir()
    for name, text in GROUP_VARS.items():
        (tmp / "group_vars" / name).write_text(text)
    for node, entries in (placements or {}).items():
        (tmp / "host_vars" / node).mkdir(parents=True)
        (tmp / "host_vars" / node / "placement.yml").write_text(json.dumps({"edgejar_instances": entries}))
    path = tmp / "inventory.yml"
    path.write_text(INVENTORY)
    return path


def unit(iid: str, active: str = "active", sub: str = "running", **props: str) -> dict[str, str]:
    return {
        "Id": f"edgejar-instance@{iid}.service",
        "ActiveState": active,
        "SubState": sub,
        "Result": "success",
        "NRestarts": "0",
        "MemoryCurrent": str(100 * 1024**2),
        "MemoryMax": str(512 * 1024**2),
        "MainPID": "1234",
        "StateChangeTimestampMonotonic": "1000000",
        **props,
    }


def probe_doc(
    *,
    mem_total_kb: int = 8 * 1024**2,
    mem_available_kb: int = 6 * 1024**2,
    cgroup: dict[str, Any] | None = None,
    disk_total: int = 100 * GIB,
    disk_avail: int = 50 * GIB,
    failed: list[str] | None = None,
    units: list[dict[str, str]] | None = None,
    jetson: dict[str, Any] | None = None,
    records: dict[str, Any] | None = None,
    hostname: str = "node",
) -> dict[str, Any]:
    """A probe report shaped like runner.health.probe.collect()."""
    return {
        "v": 1,
        "time": 1_700_000_000.0,
        "hostname": hostname,
        "uptime_s": 101.0,
        "load": [0.5, 0.4, 0.3],
        "cpus": 4,
        "mem": {
            "MemTotal": mem_total_kb,
            "MemFree": mem_available_kb,
            "MemAvailable": mem_available_kb,
            "SwapTotal": 0,
            "SwapFree": 0,
        },
        "cgroup": cgroup
        if cgroup is not None
        else {"version": 2, "memory": True, "limit": None, "usage": None},
        "disk": {"path": "/var/lib/edgejar", "total": disk_total, "avail": disk_avail},
        "failed_units": failed or [],
        "units": units or [],
        "jetson": jetson or {},
        "records_db": bool(records),
        "records": records or {},
        "probe_s": 0.02,
    }


def ok(node: str, at: float, **doc: Any) -> PollResult:
    return PollResult(node, at, 0.05, sample=parse(json.dumps(probe_doc(hostname=node, **doc))))


def down(node: str, at: float, error: str = "ssh: connect to host: Connection refused") -> PollResult:
    return PollResult(node, at, 0.05, error=error, unreachable=True)


class FakePoller:
    """Stands in for runner.health.poll.Poller: `script[node]` is a list of PollResult factories (time ->
    result), consumed one per poll (the last one repeats); commands are recorded and succeed."""

    def __init__(self, nodes: list[str], clock: Any) -> None:
        self.targets = {n: Target(node=n, host=n) for n in nodes}
        self.timeout_s = 1.0
        self.clock = clock
        self.script: dict[str, list[Any]] = {n: [lambda t, n=n: ok(n, t)] for n in nodes}
        self.commands: list[tuple[str, list[str]]] = []
        self.closed = False

    def poll(self, nodes: list[str] | None = None) -> dict[str, PollResult]:
        out = {}
        for n in self.targets:
            if nodes is not None and n not in nodes:
                continue
            steps = self.script[n]
            make = steps.pop(0) if len(steps) > 1 else steps[0]
            out[n] = make(self.clock())
        return out

    def run(self, node: str, remote: list[str], **_: Any) -> subprocess.CompletedProcess[str]:
        self.commands.append((node, remote))
        return subprocess.CompletedProcess(remote, 0, "", "")

    def popen(self, node: str, remote: list[str]) -> subprocess.Popen[str]:
        raise OSError("no journal in unit tests")

    def shutdown(self) -> None:
        pass

    def close(self) -> None:
        self.closed = True


class Clock:
    """A monotonic clock the test moves by hand."""

    def __init__(self, now: float = 1000.0) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now
