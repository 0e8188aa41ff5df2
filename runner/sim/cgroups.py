"""Per-host cgroups: the real memory ceiling of each simulated host, and a handle on all its processes.

The CI machines run cgroups in hybrid mode (v1 controllers, a `name=systemd` hierarchy and an empty
cgroup2 at /sys/fs/cgroup/unified) and PID 1 is not systemd. `systemd-nspawn --keep-unit` places a
container below the cgroup of whoever starts it, so each host first gets its own cgroup, below the
caller's own cgroup, in each hierarchy that matters (memory, cpu, cpuacct, pids, name=systemd and the
cgroup2 one) and the nspawn process moves itself there before it execs. The memory limit of that cgroup
is the host's real ceiling; every process of the host lives in these directories, so teardown can find
and kill all of them without guessing from names.
"""

from __future__ import annotations

import contextlib
import os
import signal
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from runner.errors import EdgejarError

# v1 controllers a host gets its own cgroup in (and that are made writable inside the host).
HOST_CONTROLLERS = ("memory", "cpu", "cpuacct", "pids")


@dataclass(frozen=True)
class Hierarchy:
    mount: Path  # where the hierarchy is mounted, e.g. /sys/fs/cgroup/memory
    controllers: frozenset[str]  # {"memory"}, {"name=systemd"}, or empty for cgroup2
    own_path: str  # this process's cgroup in it, e.g. /process_api/123

    @property
    def is_v2(self) -> bool:
        return not self.controllers


def parse_hierarchies(proc_cgroup: str, mountinfo: str) -> list[Hierarchy]:
    """The hierarchies a host gets a cgroup in, from /proc/self/cgroup and /proc/self/mountinfo."""
    v1_mounts: dict[frozenset[str], Path] = {}
    v2_mount: Path | None = None
    for line in mountinfo.splitlines():
        pre, _, post = line.partition(" - ")
        fields, post_fields = pre.split(), post.split()
        if len(fields) < 5 or len(post_fields) < 3:
            continue
        fstype, options = post_fields[0], post_fields[2]
        if fields[3] != "/":  # a bind mount of a sub-cgroup, not the hierarchy root
            continue
        if fstype == "cgroup2" and v2_mount is None:
            v2_mount = Path(fields[4])
        elif fstype == "cgroup":
            names = frozenset(o for o in options.split(",") if o in HOST_CONTROLLERS or o.startswith("name="))
            if names:
                v1_mounts.setdefault(names, Path(fields[4]))
    found: list[Hierarchy] = []
    for line in proc_cgroup.splitlines():
        parts = line.split(":", 2)
        if len(parts) != 3:
            continue
        _, ctrl, path = parts
        if ctrl == "":
            if v2_mount is not None:
                found.append(Hierarchy(v2_mount, frozenset(), path))
            continue
        names = frozenset(c for c in ctrl.split(",") if c in HOST_CONTROLLERS or c == "name=systemd")
        if names and names in v1_mounts:
            found.append(Hierarchy(v1_mounts[names], names, path))
    return found


def hierarchies() -> list[Hierarchy]:
    found = parse_hierarchies(Path("/proc/self/cgroup").read_text(), Path("/proc/self/mountinfo").read_text())
    if not any("memory" in h.controllers for h in found):
        raise EdgejarError(
            "the simulated cluster needs the cgroup v1 memory controller (the hybrid cgroup layout of the "
            "CI machines, with /sys/fs/cgroup/memory); this machine has none, so host memory limits cannot "
            "be set"
        )
    return found


V2_SERVICE_SLICE = "system.slice"  # where systemd-run puts a transient service


@dataclass(frozen=True)
class HostCgroups:
    """The cgroup directories of one host, one per hierarchy (recorded in its host.json).

    On own-v1 machines the sim creates and removes them; on systemd-v2 machines they belong to the
    host's transient service `unit` (one cgroup2 directory), which systemd creates and removes.
    """

    dirs: tuple[Path, ...]
    memory_dir: Path | None
    unit: str | None = None

    @classmethod
    def for_unit(cls, v2_mount: Path, unit: str) -> HostCgroups:
        d = v2_mount / V2_SERVICE_SLICE / unit
        return cls((d,), d, unit)

    @classmethod
    def for_leaf(cls, leaf: str) -> HostCgroups:
        found = hierarchies()
        dirs = tuple(h.mount / h.own_path.lstrip("/") / leaf for h in found)
        memory = next(d for h, d in zip(found, dirs, strict=True) if "memory" in h.controllers)
        return cls(dirs, memory)

    @classmethod
    def from_record(cls, record: dict[str, Any]) -> HostCgroups:
        memory = record.get("memory")
        unit = record.get("unit")
        return cls(
            tuple(Path(p) for p in record.get("dirs", [])),
            Path(memory) if memory else None,
            unit if isinstance(unit, str) else None,
        )

    def to_record(self) -> dict[str, Any]:
        return {
            "dirs": [str(d) for d in self.dirs],
            "memory": str(self.memory_dir) if self.memory_dir else None,
            "unit": self.unit,
        }

    def create(self, memory_limit_bytes: int) -> None:
        """Make the own-v1 cgroups with the ceiling (a systemd-v2 unit gets it from systemd-run)."""
        if self.unit is not None:
            return
        for d in self.dirs:
            d.mkdir(parents=False, exist_ok=True)
        mem = self.memory_dir
        if mem is None:
            raise EdgejarError("no memory cgroup for the host")
        (mem / "memory.limit_in_bytes").write_text(str(memory_limit_bytes))

    def enter_function(self) -> Callable[[], None]:
        """For subprocess's preexec_fn: move the child into these cgroups before it execs."""
        targets = [str(d / "cgroup.procs") for d in self.dirs]

        def enter() -> None:
            pid = str(os.getpid())
            for target in targets:
                with open(target, "w") as fh:
                    fh.write(pid)

        return enter

    def pids(self) -> set[int]:
        """Every process in these cgroups and their descendants."""
        found: set[int] = set()
        for d in self.dirs:
            if not d.is_dir():
                continue
            for procs in d.rglob("cgroup.procs"):
                try:
                    found.update(int(p) for p in procs.read_text().split())
                except OSError:
                    continue
        return found

    def kill_all(self, timeout: float = 10.0) -> set[int]:
        """SIGKILL everything in the host's cgroups until they are empty; returns PIDs still there."""
        deadline = time.monotonic() + timeout
        while True:
            left = self.pids()
            if not left or time.monotonic() > deadline:
                return left
            for pid in left:
                with contextlib.suppress(ProcessLookupError):
                    os.kill(pid, signal.SIGKILL)
            time.sleep(0.1)

    def remove(self) -> list[Path]:
        """rmdir the host's cgroups, children first; returns directories that could not be removed."""
        left: list[Path] = []
        for d in self.dirs:
            if not d.is_dir():
                continue
            for sub in sorted(
                (p for p in d.rglob("*") if p.is_dir()), key=lambda p: len(p.parts), reverse=True
            ):
                with contextlib.suppress(OSError):
                    sub.rmdir()
            try:
                d.rmdir()
            except OSError:
                left.append(d)
        return left

    def existing(self) -> list[Path]:
        return [d for d in self.dirs if d.is_dir()]

    def memory_usage(self) -> tuple[int, int] | None:
        """(usage, limit) in bytes from the host's memory cgroup (v1 or v2 files)."""
        mem = self.memory_dir
        if mem is None:
            return None
        v1_names = ("memory.usage_in_bytes", "memory.limit_in_bytes")
        names = ("memory.current", "memory.max") if self.unit else v1_names
        try:
            usage = int((mem / names[0]).read_text())
            limit = int((mem / names[1]).read_text())
        except (OSError, ValueError):
            return None
        return usage, limit
