"""The Ansible inventory of the simulated cluster.

Same groups as the real `inventory` (edgejar_nodes > jetson_orin / rpi5 / x86) and the same hardware
profiles: Ansible reads `group_vars/` only next to the inventory file, so a `group_vars` symlink to the
repository's directory sits next to it, with a `host_vars/` directory for per-host files (the planner
writes `host_vars/<node>/placement.yml` there). Only the connection differs: addresses, the SSH user,
the controller key and the sim's own known_hosts file (host keys are checked). The connection variables
are host variables so that no group_vars file can override them by accident.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import yaml

from runner.errors import EdgejarError
from runner.sim.config import HostSpec, SimConfig
from runner.sim.personas import PERSONAS
from runner.sim.state import StateDir

TOP_GROUP = "edgejar_nodes"
HEADER = (
    "# Inventory of the simulated edgejar cluster, written by `python -m runner sim up`; do not edit.\n"
    "# Same groups and group_vars as the repository's `inventory`; only addresses, user and keys differ,\n"
    "# plus what the simulated hosts need differently (see SIM_HOST_VARS in runner/sim/inventory.py):\n"
    "# no build-essential (nothing compiles on a sim host), a 64 MiB swap file, the cpu wheel flavour\n"
    "# (an arm64 Pi keeps its board's own, a76).\n"
)
# Packages of edgejar_base's default list that the sim hosts do without: the sim's APT repository has no
# compiler (no internet in the hosts) and nothing is compiled on them (the controller builds the one cpu
# wheel of llama-cpp-python for all of them).
SIM_WITHOUT_PACKAGES = frozenset({"build-essential"})
SIM_SWAP_SIZE_MB = 64  # swapon is not permitted in a host and the file lives in its overlay: keep it small


def repo_root() -> Path:
    return Path(__file__).resolve().parents[2]


def base_packages(defaults: Path | None = None) -> list[str]:
    """edgejar_base's default package list without what the sim hosts do without."""
    path = defaults or repo_root() / "roles" / "edgejar_base" / "defaults" / "main.yml"
    listed = yaml.safe_load(path.read_text()).get("edgejar_base_packages") or []
    return [p for p in listed if p not in SIM_WITHOUT_PACKAGES]


def sim_host_vars() -> dict[str, Any]:
    """What every simulated host needs differently from a real node: carried by the sim's inventory, so
    that every playbook runs on it unchanged, with no extra variables."""
    return {
        "edgejar_base_packages": base_packages(),
        "edgejar_swap_size_mb": SIM_SWAP_SIZE_MB,
        # The sim Jetson's nvcc is a stub and the x86_64 hosts share the controller's key: llama-cpp-python
        # is built for the CPU on the controller (roles/edgejar_llama). An arm64 Pi keeps the board's own
        # flavour (a76), which the controller cross-builds (host_vars below).
        "edgejar_llama_flavour": "cpu",
    }


def host_vars(h: HostSpec) -> dict[str, Any]:
    """sim_host_vars() as one host gets them."""
    extra = sim_host_vars()
    if h.arch == "arm64" and h.kind == "rpi5":
        del extra["edgejar_llama_flavour"]
    return extra


def inventory_data(cfg: SimConfig, state: StateDir) -> dict[str, Any]:
    """The inventory as a mapping (pure: no files touched)."""
    ssh_args = f"-o UserKnownHostsFile={state.known_hosts} -o StrictHostKeyChecking=yes"
    groups: dict[str, dict[str, Any]] = {}
    for kind in PERSONAS.values():  # group order as in the real inventory
        members = [h for h in cfg.hosts if h.kind == kind.kind]
        if not members:
            continue
        groups[kind.group] = {
            "hosts": {
                h.name: {
                    "ansible_host": h.address,
                    "ansible_user": cfg.user,
                    "ansible_connection": "ssh",
                    "ansible_ssh_private_key_file": str(state.ssh_key),
                    "ansible_ssh_common_args": ssh_args,
                    "ansible_control_path_dir": str(state.control_dir),
                    "ansible_python_interpreter": "/usr/bin/python3",
                    "edgejar_sim_memory_mib": h.memory_mib,
                    **host_vars(h),
                    **({"node_torch": True} if h.torch else {}),
                }
                for h in members
            }
        }
    return {"all": {"children": {TOP_GROUP: {"children": groups}}}}


def render(cfg: SimConfig, state: StateDir) -> str:
    body = yaml.safe_dump(inventory_data(cfg, state), sort_keys=False, default_flow_style=False, width=120)
    return HEADER + "---\n" + body


def write_inventory(cfg: SimConfig, state: StateDir, group_vars: Path | None = None) -> Path:
    """Write inventory.yml, the group_vars link and host_vars/ into the state directory."""
    source = group_vars or repo_root() / "group_vars"
    if not source.is_dir():
        raise EdgejarError(f"cannot find the repository's group_vars at {source}")
    link = state.root / "group_vars"
    if link.is_symlink() or link.exists():
        if not link.is_symlink():
            raise EdgejarError(f"{link} exists and is not a symlink; remove it")
        link.unlink()
    link.symlink_to(source.resolve())
    (state.root / "host_vars").mkdir(exist_ok=True)
    tmp = state.inventory.with_suffix(".tmp")
    tmp.write_text(render(cfg, state))
    tmp.replace(state.inventory)
    return state.inventory


def write_known_hosts(state: StateDir, lines: list[str]) -> None:
    state.known_hosts.write_text("".join(line + "\n" for line in lines))
    state.known_hosts.chmod(0o644)
