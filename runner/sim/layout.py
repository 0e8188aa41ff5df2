"""Which cgroup layout this machine has, and so how the sim gives each host its memory ceiling.

Two ways work:

- `own-v1` (the hybrid layout of the CI machines, or a legacy all-v1 machine): the v1 memory controller
  is mounted. The sim makes its own cgroup per host below the caller's, in every v1 hierarchy it needs,
  writes `memory.limit_in_bytes`, and needs no systemd on the machine (runner/sim/cgroups.py).
- `systemd-v2` (a standard Debian 12/13, Ubuntu 22.04+, Fedora machine): systemd is PID 1 and the
  unified cgroup v2 hierarchy has the memory controller. Each host runs as a transient service of the
  machine's systemd (`systemd-run -p MemoryMax=... -p Delegate=yes`), nspawn keeps that unit and the
  host's own systemd manages the delegated subtree, so `MemoryMax=` of units inside is enforced too.

Anything else (cgroup v2 without systemd as PID 1, no memory controller at all) cannot enforce a ceiling:
`detect` says so with what is missing, before anything is created.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from runner.errors import EdgejarError
from runner.sim.cgroups import parse_hierarchies

OWN_V1 = "own-v1"
SYSTEMD_V2 = "systemd-v2"


@dataclass(frozen=True)
class Layout:
    """What the machine has, and the way the sim will use (`way` is None when there is none)."""

    name: str  # "hybrid", "legacy v1", "unified v2", "none"
    v1_memory: bool  # the v1 memory controller is mounted
    v2_mount: Path | None  # where cgroup2 is mounted (the unified root, or /sys/fs/cgroup/unified)
    v2_memory: bool  # `memory` is in the cgroup2 root's cgroup.controllers
    systemd_pid1: bool  # the machine was booted with systemd (/run/systemd/system exists)
    way: str | None
    missing: str  # why no way works, and how to get one (empty when `way` is set)

    def require(self) -> str:
        """The way to use; raises the reason when there is none."""
        if self.way is None:
            raise EdgejarError(f"the simulated hosts cannot get a memory ceiling here: {self.missing}")
        return self.way

    def describe(self) -> str:
        pid1 = "systemd" if self.systemd_pid1 else "not systemd"
        if self.way is None:
            return f"{self.name} cgroups, PID 1 {pid1}: not supported ({self.missing})"
        return f"{self.name} cgroups, PID 1 {pid1}: hosts run as {self.way}"


def _v2_root(mountinfo: str) -> Path | None:
    for line in mountinfo.splitlines():
        pre, _, post = line.partition(" - ")
        fields, post_fields = pre.split(), post.split()
        if len(fields) >= 5 and post_fields and post_fields[0] == "cgroup2" and fields[3] == "/":
            return Path(fields[4])
    return None


def classify(proc_cgroup: str, mountinfo: str, v2_controllers: str | None, systemd_pid1: bool) -> Layout:
    """Pure: the layout from /proc/self/cgroup, /proc/self/mountinfo, the cgroup2 root's
    cgroup.controllers (None if unreadable) and whether systemd is PID 1."""
    v1_memory = any("memory" in h.controllers for h in parse_hierarchies(proc_cgroup, mountinfo))
    v2_mount = _v2_root(mountinfo)
    v2_memory = v2_controllers is not None and "memory" in v2_controllers.split()
    unified = (
        v2_mount is not None
        and not v1_memory
        and not any(h.controllers for h in parse_hierarchies(proc_cgroup, mountinfo))
    )
    if v1_memory:
        name = "hybrid" if v2_mount is not None else "legacy v1"
        return Layout(name, True, v2_mount, v2_memory, systemd_pid1, OWN_V1, "")
    if not unified:
        missing = (
            "no memory cgroup controller is mounted (neither cgroup v1 `memory` nor cgroup v2); "
            "mount cgroup2 on /sys/fs/cgroup or boot with systemd"
        )
        return Layout("none", False, v2_mount, v2_memory, systemd_pid1, None, missing)
    if not systemd_pid1:
        missing = (
            "cgroup v2 without systemd as PID 1: the sim runs each host as a systemd unit with MemoryMax and "
            "Delegate=yes; boot the machine with systemd, or with the v1 memory controller "
            "(kernel option systemd.unified_cgroup_hierarchy=0)"
        )
        return Layout("unified v2", False, v2_mount, v2_memory, False, None, missing)
    if not v2_memory:
        missing = (
            f"the cgroup v2 memory controller is not available ({v2_mount}/cgroup.controllers has no "
            "`memory`): enable it (kernel option cgroup_enable=memory; on a Raspberry Pi also "
            "cgroup_memory=1) and reboot"
        )
        return Layout("unified v2", False, v2_mount, False, True, None, missing)
    return Layout("unified v2", False, v2_mount, True, True, SYSTEMD_V2, "")


def detect() -> Layout:
    """This machine's layout."""
    proc_cgroup = Path("/proc/self/cgroup").read_text()
    mountinfo = Path("/proc/self/mountinfo").read_text()
    v2 = _v2_root(mountinfo)
    controllers = None
    if v2 is not None:
        try:
            controllers = (v2 / "cgroup.controllers").read_text()
        except OSError:
            controllers = None
    return classify(proc_cgroup, mountinfo, controllers, Path("/run/systemd/system").is_dir())
