"""What the monitor's actions do on nodes and in host_vars (each runs only after a confirmation)."""

from __future__ import annotations

from pathlib import Path

from runner import names
from runner.errors import InputError
from runner.files import atomic

INSTANCE_ACTIONS = ("restart", "stop")
MAINTENANCE_FILE = "maintenance.yml"


def unit_name(instance: str) -> str:
    bad = names.problem(instance)
    if bad:
        raise InputError(f"instance id: {bad}")
    return f"edgejar-instance@{instance}.service"


def instance_command(action: str, instance: str) -> list[str]:
    """`sudo -n systemctl restart|stop edgejar-instance@ID.service` (run over the node's SSH connection)."""
    if action not in INSTANCE_ACTIONS:
        raise InputError(f"unknown instance action {action!r} (known: {', '.join(INSTANCE_ACTIONS)})")
    return ["sudo", "-n", "systemctl", action, unit_name(instance)]


def journal_command(instance: str, lines: int = 200) -> list[str]:
    """Follow the instance's journal on its node (sudo: the login user may not read system logs)."""
    return [
        "sudo",
        "-n",
        "journalctl",
        "--no-pager",
        "-o",
        "short-iso",
        "-n",
        str(lines),
        "-f",
        "-u",
        unit_name(instance),
    ]


def maintenance_text(on: bool) -> str:
    return (
        "---\n# Written by `python -m runner monitor` (mark node in maintenance). Placement keeps new\n"
        f"# instances off a node in maintenance.\nnode_maintenance: {'true' if on else 'false'}\n"
    )


def set_maintenance(host_vars_dir: Path, node: str, on: bool) -> Path:
    """Write host_vars/<node>/maintenance.yml atomically; returns its path."""
    path = host_vars_dir / node / MAINTENANCE_FILE
    atomic.write_all({path: maintenance_text(on)})
    return path
