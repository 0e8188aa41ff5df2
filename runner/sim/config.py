"""Configuration of the simulated cluster: which hosts, their kinds, addresses and limits.

Defaults match the example `inventory` (jetson, rpi1, rpi2, host). A config is built from defaults, an
optional YAML file and command-line flags, then saved in the state directory so that `sim down`,
`sim status` and `sim inventory` use exactly what `sim up` created.
"""

from __future__ import annotations

import ipaddress
import os
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from runner.errors import InputError
from runner.sim.personas import Persona, persona

STATE_DIR_ENV = "EDGEJAR_SIM_DIR"
CACHE_DIR_ENV = "EDGEJAR_CACHE_DIR"
DEFAULT_STATE_DIR = Path("/var/tmp/edgejar-sim")
DEFAULT_CACHE_DIR = Path("/var/cache/edgejar")

DEFAULT_HOSTS = "jetson:jetson,rpi1:rpi5,rpi2:rpi5,host:x86"
DEFAULT_SUBNET = "10.231.42.0/24"
DEFAULT_BRIDGE = "ejbr0"
DEFAULT_PREFIX = "ej"
DEFAULT_REPO_PORT = 8080
DEFAULT_USER = "edgejar"
FIRST_HOST_OFFSET = 11  # hosts get .11, .12, ... of the subnet; .1 is the controller (bridge)
IFNAMSIZ = 15  # longest Linux interface name

_NAME_RE = re.compile(r"^[a-z][a-z0-9-]*$")
_CONFIG_KEYS = {"hosts", "subnet", "bridge", "prefix", "repo_port", "user", "memory_mib", "backend"}
_HOST_KEYS = {"name", "kind", "memory_mib", "torch", "backend", "arch"}
# nspawn: a container on the machine's kernel (fast, the default); vm: a QEMU guest with its own kernel.
BACKENDS = ("nspawn", "vm")
# A host's userland (Debian's names): the controller's (amd64 here) or the boards' own, arm64, whose
# programs run through qemu-user (runner/sim/binfmt.py). Pi and Jetson hosts only; containers only.
ARCHES = ("amd64", "arm64")
FOREIGN_ARCH_KINDS = ("rpi5", "jetson")


def state_dir_from_env() -> Path:
    return Path(os.environ.get(STATE_DIR_ENV) or DEFAULT_STATE_DIR)


def cache_dir_from_env() -> Path:
    return Path(os.environ.get(CACHE_DIR_ENV) or DEFAULT_CACHE_DIR)


@dataclass(frozen=True)
class HostSpec:
    name: str
    kind: str  # canonical persona kind
    memory_mib: int
    address: str
    torch: bool = False  # the host gets PyTorch (inventory node_torch: true): it may take training jobs
    backend: str = "nspawn"  # one of BACKENDS
    arch: str = ""  # one of ARCHES; "": the controller's own

    @property
    def persona(self) -> Persona:
        return persona(self.kind)


@dataclass(frozen=True)
class SimConfig:
    hosts: tuple[HostSpec, ...]
    subnet: str = DEFAULT_SUBNET
    bridge: str = DEFAULT_BRIDGE
    prefix: str = DEFAULT_PREFIX
    repo_port: int = DEFAULT_REPO_PORT
    user: str = DEFAULT_USER
    extra: dict[str, Any] = field(default_factory=dict, compare=False)

    @property
    def network(self) -> ipaddress.IPv4Network:
        return ipaddress.IPv4Network(self.subnet)

    @property
    def gateway(self) -> str:
        """The controller's address on the bridge (where the APT repo is served)."""
        return str(self.network.network_address + 1)

    @property
    def prefixlen(self) -> int:
        return self.network.prefixlen

    @property
    def repo_url(self) -> str:
        return f"http://{self.gateway}:{self.repo_port}"

    def netns(self, host: HostSpec) -> str:
        return f"{self.prefix}-{host.name}"

    def veth(self, host: HostSpec) -> str:
        return f"{self.prefix}v-{host.name}"

    def tap(self, host: HostSpec) -> str:
        """A VM host's tap device on the bridge."""
        return f"{self.prefix}t-{host.name}"

    def machine(self, host: HostSpec) -> str:
        """Machine name, overlay mount source and per-host cgroup leaf."""
        return f"{self.prefix}-{host.name}"

    def host(self, name: str) -> HostSpec:
        for h in self.hosts:
            if h.name == name:
                return h
        raise InputError(f"no simulated host named {name!r}")

    def to_dict(self) -> dict[str, Any]:
        return {
            "subnet": self.subnet,
            "bridge": self.bridge,
            "prefix": self.prefix,
            "repo_port": self.repo_port,
            "user": self.user,
            "hosts": [
                {"name": h.name, "kind": h.kind, "memory_mib": h.memory_mib, "address": h.address}
                | ({"torch": True} if h.torch else {})
                | ({"backend": h.backend} if h.backend != "nspawn" else {})
                | ({"arch": h.arch} if h.arch else {})
                for h in self.hosts
            ],
        }

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> SimConfig:
        """Load a config saved by `to_dict` (addresses included, as they were assigned)."""
        hosts = tuple(
            HostSpec(
                name=h["name"],
                kind=h["kind"],
                memory_mib=int(h["memory_mib"]),
                address=h["address"],
                torch=bool(h.get("torch", False)),
                backend=str(h.get("backend", "nspawn")),
                arch=str(h.get("arch", "")),
            )
            for h in data["hosts"]
        )
        return cls(
            hosts=hosts,
            subnet=data["subnet"],
            bridge=data["bridge"],
            prefix=data["prefix"],
            repo_port=int(data["repo_port"]),
            user=data["user"],
        )


@dataclass(frozen=True)
class _HostRequest:
    name: str
    kind: str
    memory_mib: int | None
    torch: bool = False
    backend: str | None = None
    arch: str = ""


def parse_hosts_spec(spec: str) -> list[_HostRequest]:
    """Parse `name:kind[:memory_mib],...`, e.g. `jetson:jetson,rpi1:rpi5:768,host:x86`."""
    requests: list[_HostRequest] = []
    for item in spec.split(","):
        item = item.strip()
        if not item:
            continue
        parts = item.split(":")
        if len(parts) not in (2, 3):
            raise InputError(f"--hosts: {item!r} is not NAME:KIND or NAME:KIND:MEMORY_MIB")
        memory = _memory(parts[2], f"--hosts {item!r}") if len(parts) == 3 else None
        requests.append(_HostRequest(parts[0].strip(), parts[1].strip(), memory))
    if not requests:
        raise InputError("--hosts: no hosts given")
    return requests


def _memory(value: Any, where: str) -> int:
    try:
        mib = int(value)
    except (TypeError, ValueError):
        raise InputError(f"{where}: memory must be a whole number of MiB, got {value!r}") from None
    if mib < 256:
        raise InputError(f"{where}: memory {mib} MiB is too small (a booted host needs at least 256 MiB)")
    return mib


def _backend(value: Any, where: str) -> str:
    if value not in BACKENDS:
        raise InputError(f"{where}: backend must be one of {', '.join(BACKENDS)}, got {value!r}")
    return str(value)


def load_config_file(path: Path) -> dict[str, Any]:
    """Read a YAML sim config; unknown keys are errors (a typo must not silently do nothing)."""
    try:
        data = yaml.safe_load(path.read_text())
    except OSError as exc:
        raise InputError(f"{path}: cannot read: {exc.strerror}") from exc
    except yaml.YAMLError as exc:
        raise InputError(f"{path}: not valid YAML: {exc}") from exc
    if data is None:
        return {}
    if not isinstance(data, dict):
        raise InputError(f"{path}: expected a mapping at the top level")
    unknown = set(data) - _CONFIG_KEYS
    if unknown:
        raise InputError(f"{path}: unknown keys {sorted(unknown)} (known: {sorted(_CONFIG_KEYS)})")
    return data


def _hosts_from_yaml(items: Any, where: str) -> list[_HostRequest]:
    if not isinstance(items, list) or not items:
        raise InputError(f"{where}: `hosts` must be a non-empty list of {{name, kind, memory_mib, torch}}")
    requests = []
    for i, item in enumerate(items):
        if not isinstance(item, dict) or "name" not in item or "kind" not in item:
            raise InputError(f"{where}: hosts[{i}] needs `name` and `kind`")
        unknown = set(item) - _HOST_KEYS
        if unknown:
            raise InputError(f"{where}: hosts[{i}] has unknown keys {sorted(unknown)}")
        memory = _memory(item["memory_mib"], f"{where}: hosts[{i}]") if "memory_mib" in item else None
        torch = item.get("torch", False)
        if not isinstance(torch, bool):
            raise InputError(f"{where}: hosts[{i}]: torch must be true or false, got {torch!r}")
        backend = _backend(item["backend"], f"{where}: hosts[{i}]") if "backend" in item else None
        arch = item.get("arch", "")
        if arch and arch not in ARCHES:
            raise InputError(f"{where}: hosts[{i}]: arch must be one of {', '.join(ARCHES)}, got {arch!r}")
        requests.append(_HostRequest(str(item["name"]), str(item["kind"]), memory, torch, backend, str(arch)))
    return requests


def build_config(
    *,
    config_file: Path | None = None,
    hosts: str | None = None,
    subnet: str | None = None,
    memory_mib: int | None = None,
    backend: str | None = None,
) -> SimConfig:
    """Defaults, then the YAML file, then command-line flags; validates everything."""
    data: dict[str, Any] = load_config_file(config_file) if config_file else {}
    where = str(config_file) if config_file else "config"
    if hosts is not None:
        requests = parse_hosts_spec(hosts)
    elif "hosts" in data:
        requests = _hosts_from_yaml(data["hosts"], where)
    else:
        requests = parse_hosts_spec(DEFAULT_HOSTS)
    default_memory = memory_mib if memory_mib is not None else data.get("memory_mib")
    if default_memory is not None:
        default_memory = _memory(default_memory, "--memory" if memory_mib is not None else where)

    default_backend = _backend(backend, "--backend") if backend is not None else None
    if default_backend is None and "backend" in data:
        default_backend = _backend(data["backend"], where)
    net = parse_subnet(subnet or str(data.get("subnet", DEFAULT_SUBNET)))
    prefix = str(data.get("prefix", DEFAULT_PREFIX))
    bridge = str(data.get("bridge", DEFAULT_BRIDGE))
    user = str(data.get("user", DEFAULT_USER))
    try:
        repo_port = int(data.get("repo_port", DEFAULT_REPO_PORT))
    except (TypeError, ValueError):
        raise InputError(f"{where}: repo_port must be a port number") from None
    if not 1 <= repo_port <= 65535:
        raise InputError(f"{where}: repo_port {repo_port} is not a TCP port")
    if not _NAME_RE.match(prefix) or len(prefix) > 6:
        raise InputError(f"{where}: prefix {prefix!r} must be 1-6 characters, a-z, 0-9 and '-'")
    if not re.match(r"^[a-zA-Z0-9_.-]+$", bridge) or len(bridge) > IFNAMSIZ:
        raise InputError(f"{where}: bridge name {bridge!r} is not a valid interface name")
    if not re.match(r"^[a-z_][a-z0-9_-]{0,31}$", user) or user == "root":
        raise InputError(f"{where}: user {user!r} must be a plain unprivileged user name")

    usable = net.num_addresses - 1 - FIRST_HOST_OFFSET  # leave out the broadcast address
    if len(requests) > usable:
        raise InputError(f"subnet {net} has room for {max(usable, 0)} hosts, {len(requests)} requested")
    seen: set[str] = set()
    specs: list[HostSpec] = []
    for i, req in enumerate(requests):
        name = req.name
        if not _NAME_RE.match(name):
            raise InputError(f"host name {name!r}: use a-z, 0-9 and '-', starting with a letter")
        longest = IFNAMSIZ - len(prefix) - 2
        if len(name) > longest:
            raise InputError(
                f"host name {name!r} is too long: at most {longest} characters with prefix {prefix!r}"
            )
        if name in seen:
            raise InputError(f"host name {name!r} is given twice")
        seen.add(name)
        p = persona(req.kind)
        memory = req.memory_mib or default_memory or p.default_memory_mib
        address = str(net.network_address + FIRST_HOST_OFFSET + i)
        chosen = (default_backend if backend is not None else req.backend or default_backend) or "nspawn"
        if req.arch == "arm64" and p.kind not in FOREIGN_ARCH_KINDS:
            raise InputError(f"host {name!r}: arch arm64 is for Pi and Jetson hosts, not kind {p.kind}")
        if req.arch == "arm64" and chosen != "nspawn":
            raise InputError(f"host {name!r}: arch arm64 hosts are containers (backend nspawn), not {chosen}")
        specs.append(
            HostSpec(
                name=name,
                kind=p.kind,
                memory_mib=memory,
                address=address,
                torch=req.torch,
                backend=chosen,
                arch=req.arch,
            )
        )
    return SimConfig(
        hosts=tuple(specs), subnet=str(net), bridge=bridge, prefix=prefix, repo_port=repo_port, user=user
    )


def parse_subnet(text: str) -> ipaddress.IPv4Network:
    try:
        net = ipaddress.IPv4Network(text, strict=True)
    except ValueError as exc:
        raise InputError(f"subnet {text!r} is not an IPv4 network such as 10.231.42.0/24: {exc}") from exc
    if net.prefixlen > 28:
        raise InputError(f"subnet {net} is too small: use a /24 (at most /28)")
    if not net.is_private:
        raise InputError(f"subnet {net} is not a private range: pick one from 10.0.0.0/8 or 172.16.0.0/12")
    return net
