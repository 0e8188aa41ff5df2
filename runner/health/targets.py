"""How to reach each node: the inventory's connection variables, read with ansible-core like
runner.inventory reads the node_* variables (runner.inventory.load keeps only those)."""

from __future__ import annotations

import shlex
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from runner import inventory
from runner.errors import InputError
from runner.health import hostkeys

CONNECTION_VARS = (
    "ansible_host",
    "ansible_port",
    "ansible_user",
    "ansible_connection",
    "ansible_ssh_private_key_file",
    "ansible_private_key_file",
    "ansible_ssh_common_args",
    "ansible_ssh_extra_args",
    "ansible_ssh_args",
    "ansible_host_key_checking",
    "ansible_ssh_host_key_checking",
)
# Arguments Ansible passes to ssh; the first two reach the health probe's ssh as well.
_SSH_ARG_VARS = ("ansible_ssh_common_args", "ansible_ssh_extra_args", "ansible_ssh_args")


@dataclass(frozen=True)
class Target:
    """One node's connection: `local` runs the probe on this machine (ansible_connection: local)."""

    node: str
    host: str
    user: str | None = None
    port: int | None = None
    key_file: str | None = None
    extra_args: tuple[str, ...] = ()
    local: bool = False

    @property
    def destination(self) -> str:
        return f"{self.user}@{self.host}" if self.user else self.host


def _truthy(value: Any) -> bool:
    """Ansible's boolean reading of a variable (true/yes/on/1 and their opposites)."""
    return str(value).strip().lower() not in ("false", "no", "off", "0", "n", "f", "")


def target_from_vars(node: str, hv: dict[str, Any]) -> Target:
    """Pure: a Target from a host's templated variables. Raises InputError naming the host and field."""
    connection = str(hv.get("ansible_connection") or "ssh")
    if connection not in ("ssh", "smart", "paramiko", "local"):
        raise InputError(f"inventory: host {node}: ansible_connection {connection!r} is not ssh or local")
    port = hv.get("ansible_port")
    if port is not None:
        try:
            port = int(str(port))
        except ValueError:
            raise InputError(f"inventory: host {node}: ansible_port must be a number, got {port!r}") from None
    extra: list[str] = []
    for name in _SSH_ARG_VARS:
        try:
            args = shlex.split(str(hv.get(name) or ""))
            hostkeys.check_args(args)
        except hostkeys.HostKeyCheckingOff as exc:
            raise InputError(f"inventory: host {node}: {name}: {exc} (host keys are checked)") from None
        except ValueError as exc:  # shlex's unbalanced quotes, an option without its value
            raise InputError(f"inventory: host {node}: {name}: {exc}") from None
        if name != "ansible_ssh_args":
            extra += args
    for name in ("ansible_host_key_checking", "ansible_ssh_host_key_checking"):
        if name in hv and not _truthy(hv[name]):
            raise InputError(f"inventory: host {node}: {name}: false is refused (host keys are checked)")
    key = hv.get("ansible_ssh_private_key_file") or hv.get("ansible_private_key_file")
    return Target(
        node=node,
        host=str(hv.get("ansible_host") or node),
        user=str(hv["ansible_user"]) if hv.get("ansible_user") else None,
        port=port,
        key_file=str(key) if key else None,
        extra_args=tuple(extra),
        local=connection == "local",
    )


def load_targets(path: Path, nodes: list[str]) -> dict[str, Target]:
    """node -> Target for the given nodes of the inventory at `path` (already validated by inventory.load)."""
    from ansible.errors import AnsibleError
    from ansible.inventory.manager import InventoryManager
    from ansible.parsing.dataloader import DataLoader
    from ansible.template import Templar
    from ansible.vars.manager import VariableManager

    loader = DataLoader()
    try:
        inv = InventoryManager(loader=loader, sources=[str(path.resolve())])
    except AnsibleError as exc:
        raise InputError(f"inventory {path}: Ansible could not parse it ({exc.message})") from None
    variables = VariableManager(loader=loader, inventory=inv)
    targets = {}
    for name in nodes:
        host = inv.get_host(name)
        if host is None:
            raise InputError(f"inventory {path}: no host {name!r}")
        raw = variables.get_vars(host=host, include_hostvars=False)
        templar = Templar(loader=loader, variables=raw)
        try:
            hv = {k: inventory._plain(templar.template(raw[k])) for k in CONNECTION_VARS if k in raw}
        except AnsibleError as exc:
            raise InputError(f"inventory {path}: host {name}: {exc.message}") from None
        targets[name] = target_from_vars(name, hv)
    return targets
