"""The cluster as Ansible sees it: hosts and their node_* hardware variables, read through ansible-core's
own inventory and variable managers so that precedence (group_vars, host_vars, children) is Ansible's."""

from __future__ import annotations

import math
import os
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from runner import names
from runner.errors import InputError
from runner.placement.model import Node, gb_to_mib

NODES_GROUP = "edgejar_nodes"  # when present, only its hosts are nodes; otherwise every host is
PLACEMENT_VAR = "edgejar_instances"  # what `runner place` writes into host_vars/<node>/placement.yml
TRAINING_VAR = "edgejar_training"  # beside it: the node's training units (runner/training/plan.py)
DEFAULT_PORTS = (9000, 9100)
DEFAULT_TRAINING_PORT = 29500  # torchrun's own default rendezvous port


@dataclass(frozen=True)
class ClusterNode:
    node: Node
    address: str
    kind: str
    placed: tuple[Mapping[str, Any], ...] = ()  # the node's current edgejar_instances
    torch_nccl: bool = False  # node_torch_nccl: its torch has NCCL (a training job may use it)
    training: tuple[Mapping[str, Any], ...] = ()  # the node's current edgejar_training units


@dataclass(frozen=True)
class Cluster:
    inventory: Path
    nodes: tuple[ClusterNode, ...]
    peer_ports: range
    models: Mapping[str, Mapping[str, Any]] = field(default_factory=dict)
    training_port: int = DEFAULT_TRAINING_PORT  # edgejar_training_port: a training job's rendezvous

    @property
    def host_vars_dir(self) -> Path:
        base = self.inventory if self.inventory.is_dir() else self.inventory.parent
        return base / "host_vars"

    def by_name(self) -> dict[str, ClusterNode]:
        return {cn.node.name: cn for cn in self.nodes}

    def current(self) -> dict[str, str]:
        """Instance id -> node, as the existing host_vars say."""
        return {str(e["id"]): cn.node.name for cn in self.nodes for e in cn.placed if "id" in e}

    def current_ports(self) -> dict[str, int]:
        return {str(e["id"]): int(e["port"]) for cn in self.nodes for e in cn.placed if "port" in e}


def default_inventory() -> Path:
    """$EDGEJAR_INVENTORY, else ./inventory."""
    return Path(os.environ.get("EDGEJAR_INVENTORY", "inventory"))


def _plain(value: Any) -> Any:
    """Ansible 2.19 hands out tagged str/int/list/dict subclasses; give back plain Python values."""
    if isinstance(value, Mapping):
        return {str(k): _plain(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_plain(v) for v in value]
    if isinstance(value, bool) or value is None:
        return value
    for kind in (int, float, str):
        if isinstance(value, kind):
            return kind(value)
    return value


def _number(host: str, name: str, value: Any, *, integer: bool = False) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float):
        try:
            value = float(value) if not integer else int(str(value))
        except (TypeError, ValueError):
            want = "a whole number" if integer else "a number"
            raise InputError(f"inventory: host {host}: {name} must be {want}, got {value!r}") from None
    if not isinstance(value, int) and not math.isfinite(value):
        raise InputError(f"inventory: host {host}: {name} must be a finite number, got {value!r}")
    if value < 0:
        raise InputError(f"inventory: host {host}: {name} must not be negative, got {value!r}")
    if integer and value != int(value):
        raise InputError(f"inventory: host {host}: {name} must be a whole number, got {value!r}")
    return value


def _bool(host: str, name: str, value: Any) -> bool:
    if isinstance(value, bool):
        return value
    if isinstance(value, str) and value.lower() in ("true", "yes", "on", "1", "false", "no", "off", "0"):
        return value.lower() in ("true", "yes", "on", "1")
    raise InputError(f"inventory: host {host}: {name} must be true or false, got {value!r}")


def _priority(host: str, value: Any) -> int:
    """node_priority: any whole number (negative allowed: a node to use last)."""
    try:
        if isinstance(value, bool) or int(str(value)) != float(str(value)):
            raise ValueError
        return int(str(value))
    except ValueError:
        msg = f"inventory: host {host}: node_priority must be a whole number, got {value!r}"
        raise InputError(msg) from None


def node_from_vars(host: str, hv: Mapping[str, Any]) -> Node:
    """Build a placement Node from a host's (templated, plain) variables. Pure; validates every field."""
    bad_name = names.problem(host)
    if bad_name:  # the name becomes host_vars/<host>/, a path component: no `..`, no `/`
        raise InputError(f"inventory: host {host!r}: the host name {bad_name}")
    tags = hv.get("node_tags", [])
    if isinstance(tags, str) or not isinstance(tags, list):
        raise InputError(f"inventory: host {host}: node_tags must be a list, got {tags!r}")
    ram = _number(host, "node_ram_gb", hv.get("node_ram_gb", 0))
    reserved = _number(host, "node_reserved_ram_gb", hv.get("node_reserved_ram_gb", 0))
    if ram and reserved > ram:
        raise InputError(
            f"inventory: host {host}: node_reserved_ram_gb ({reserved}) exceeds node_ram_gb ({ram})"
        )
    gpu = _bool(host, "node_gpu", hv.get("node_gpu", False))
    gpu_gb = _number(host, "node_gpu_memory_gb", hv.get("node_gpu_memory_gb", 0))
    if gpu and gpu_gb <= 0:
        raise InputError(f"inventory: host {host}: node_gpu is true but node_gpu_memory_gb is {gpu_gb}")
    return Node(
        name=host,
        ram_mib=gb_to_mib(ram),
        reserved_mib=gb_to_mib(reserved),
        gpu=gpu,
        gpu_mib=gb_to_mib(gpu_gb) if gpu else 0,
        unified=_bool(host, "node_unified_memory", hv.get("node_unified_memory", False)),
        max_instances=int(_number(host, "node_max_instances", hv.get("node_max_instances", 1), integer=True)),
        cpu_cores=int(_number(host, "node_cpu_cores", hv.get("node_cpu_cores", 1), integer=True)),
        tags=frozenset(str(t) for t in tags),
        priority=_priority(host, hv.get("node_priority", 0)),
        maintenance=_bool(host, "node_maintenance", hv.get("node_maintenance", False)),
        torch=_bool(host, "node_torch", hv.get("node_torch", False)),
    )


def _port_range(hv: Mapping[str, Any]) -> range:
    spec = hv.get("edgejar_peer_port_range", {"start": DEFAULT_PORTS[0], "end": DEFAULT_PORTS[1]})
    try:
        start, end = int(spec["start"]), int(spec["end"])
    except (KeyError, TypeError, ValueError):
        raise InputError(
            f"inventory: edgejar_peer_port_range must be {{start: N, end: M}}, got {spec!r}"
        ) from None
    if not 1024 <= start <= end <= 65535:
        raise InputError(f"inventory: edgejar_peer_port_range {start}-{end} must lie within 1024-65535")
    return range(start, end + 1)


def _forget_vars_files() -> None:
    """ansible-core's host_group_vars plugin remembers, per process, which host_vars/group_vars files
    exist (and which directories do not). A long-lived process (the monitor, failover, tests) that
    re-reads the inventory after `place` wrote new host_vars must not see the stale list. It also
    caches the real path of each base directory (the inventory's and the working directory `.`), so
    a process that changed directory would read the previous directory's host_vars."""
    from ansible.plugins.vars import host_group_vars

    for name in ("FOUND", "NAK", "CANONICAL_PATHS"):
        cache = getattr(host_group_vars, name, None)
        if cache is not None:
            cache.clear()


def load(path: Path) -> Cluster:
    """Read the inventory with ansible-core. Raises InputError naming the file, host and field."""
    if not path.exists():
        raise InputError(f"inventory {path}: no such file or directory")
    os.environ.setdefault("ANSIBLE_INVENTORY_UNPARSED_FAILED", "True")
    os.environ.setdefault("ANSIBLE_DEPRECATION_WARNINGS", "False")
    from ansible import constants
    from ansible.errors import AnsibleError
    from ansible.inventory.manager import InventoryManager
    from ansible.parsing.dataloader import DataLoader
    from ansible.template import Templar
    from ansible.vars.manager import VariableManager

    # The environment variable above only counts when ansible-core was not imported yet (its settings
    # are read once, at import): an unparsable inventory must fail here, not read as "no hosts".
    constants.INVENTORY_UNPARSED_IS_FAILED = True

    _forget_vars_files()
    loader = DataLoader()
    try:
        # Absolute: ansible-core caches the real path of a source directory per process, so a relative
        # path would keep pointing at the first working directory it was resolved in.
        inv = InventoryManager(loader=loader, sources=[str(path.resolve())])
    except AnsibleError as exc:
        raise InputError(
            f"inventory {path}: Ansible could not parse it ({exc.message}); "
            f"`ansible-inventory -i {path} --list` shows why"
        ) from None
    variables = VariableManager(loader=loader, inventory=inv)
    pattern = NODES_GROUP if NODES_GROUP in inv.groups else "all"
    hosts = inv.get_hosts(pattern)
    if not hosts:
        raise InputError(f"inventory {path}: no hosts (group {pattern!r} is empty)")
    nodes = []
    ports: range | None = None
    training_port = DEFAULT_TRAINING_PORT
    models: dict[str, Any] = {}
    for host in hosts:
        try:
            raw = variables.get_vars(host=host, include_hostvars=False)
        except AnsibleError as exc:  # e.g. a damaged host_vars/<host>/placement.yml
            raise InputError(
                f"inventory {path}: host {host.name}: its variables cannot be read ({exc.message}); "
                f"fix or remove the file it names (`runner place` writes placement.yml anew)"
            ) from None
        templar = Templar(loader=loader, variables=raw)
        wanted = [k for k in raw if k.startswith(("node_", "edgejar_")) or k == "ansible_host"]
        try:
            hv = {k: _plain(templar.template(raw[k])) for k in wanted}
        except AnsibleError as exc:
            raise InputError(f"inventory {path}: host {host.name}: {exc.message}") from None
        placed = hv.get(PLACEMENT_VAR) or []
        if not isinstance(placed, list):
            raise InputError(f"inventory {path}: host {host.name}: {PLACEMENT_VAR} must be a list")
        nodes.append(
            ClusterNode(
                node=node_from_vars(str(host.name), hv),
                address=str(hv.get("node_address") or hv.get("ansible_host") or str(host.name)),
                kind=str(hv.get("node_kind", "generic")),
                placed=tuple(e for e in placed if isinstance(e, Mapping)),
                torch_nccl=_bool(str(host.name), "node_torch_nccl", hv.get("node_torch_nccl", False)),
                training=tuple(e for e in hv.get(TRAINING_VAR) or [] if isinstance(e, Mapping)),
            )
        )
        if ports is None:
            ports = _port_range(hv)
            models = hv.get("edgejar_models") or {}
            training_port = int(
                _number(str(host.name), "edgejar_training_port",
                        hv.get("edgejar_training_port", DEFAULT_TRAINING_PORT), integer=True)
            )  # fmt: skip
            if not 1 <= training_port <= 65535:
                raise InputError(
                    f"inventory {path}: edgejar_training_port must be 1-65535, got {training_port}"
                )
    return Cluster(
        inventory=path,
        nodes=tuple(nodes),
        peer_ports=ports or range(*DEFAULT_PORTS),
        models=models,
        training_port=training_port,
    )
