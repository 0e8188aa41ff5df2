"""The command lines that start and stop one simulated host, per cgroup layout (pure: unit-tested).

Both layouts run the same `systemd-nspawn --boot` with `--register=no --keep-unit` (no machined needed):
nspawn stays in the cgroup it was started in and puts the host's systemd below it.

- own-v1: nspawn is started directly; it first moves itself into the host's own v1 cgroups (the
  caller's `preexec_fn`, runner/sim/cgroups.py).
- systemd-v2: nspawn is the main process of a transient service of the machine's systemd, started with
  `systemd-run`: `MemoryMax=` is the host's ceiling, `Delegate=yes` hands the subtree to the host's
  own systemd (so `MemoryMax=` of the units inside is enforced), the console goes to the host's
  console.log, and `systemctl stop` powers the host off (SIGTERM to nspawn) and kills what is left.
"""

from __future__ import annotations

from pathlib import Path

STOP_TIMEOUT_S = 15  # the unit's TimeoutStopSec: then systemd SIGKILLs what is left of the host


def nspawn_command(
    merged: Path, machine: str, hostname: str, netns_path: Path, firmware: Path | None
) -> list[str]:
    cmd = [
        "systemd-nspawn",
        "--quiet",
        "--boot",
        f"--directory={merged}",
        f"--machine={machine}",
        f"--hostname={hostname}",
        f"--network-namespace-path={netns_path}",
        # Confined to the host's own network namespace (as --private-network grants it): nftables
        # (roles/edgejar_firewall) and `ip` on the host act on that namespace only.
        "--capability=CAP_NET_ADMIN",
        # Do not register with machined (the CI machines have no D-Bus); stay in the cgroup we start in.
        "--register=no",
        "--keep-unit",
        "--resolv-conf=off",
        "--timezone=off",
        "--link-journal=no",
        "--console=pipe",
    ]
    if firmware is not None:
        cmd.append(f"--bind-ro={firmware}:/sys/firmware")
    return cmd


def unit_name(machine: str) -> str:
    """The transient service of a host on systemd-v2 machines."""
    return f"{machine}.service"


def systemd_run_command(unit: str, memory_bytes: int, console_log: Path, inner: list[str]) -> list[str]:
    """`systemd-run` that starts `inner` (nspawn) as a transient service with the host's ceiling."""
    properties = [
        f"MemoryMax={memory_bytes}",
        "Delegate=yes",
        "KillMode=mixed",  # SIGTERM to nspawn (a clean poweroff), SIGKILL to the rest after the timeout
        f"TimeoutStopSec={STOP_TIMEOUT_S}",
        f"StandardOutput=append:{console_log}",
        "StandardError=inherit",
        "StandardInput=null",
    ]
    cmd = ["systemd-run", f"--unit={unit}", "--service-type=exec", "--collect", "--quiet"]
    for prop in properties:
        cmd += ["-p", prop]
    return [*cmd, "--", *inner]


def stop_command(unit: str) -> list[str]:
    return ["systemctl", "stop", unit]


def unit_main_pid_command(unit: str) -> list[str]:
    return ["systemctl", "show", "--property=MainPID,ControlGroup", unit]
