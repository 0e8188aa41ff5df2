"""The node's kernel helper: start, watch, signal, stop and list notebook kernels as transient systemd
units (`edgejar-kernel-<id>.service`), each with MemoryMax and the instances' hardening, run as the
kernel user and bound to the node's cluster address.

The gateway reaches it over SSH as the node's kernel-launch account, whose authorized key forces
`sudo -n <venv>/bin/python -I -m runner.node.kernels.ctl` (sudoers allows exactly that, keeping
SSH_ORIGINAL_COMMAND): the gateway's requested command is only ever parsed here, word by word, never
given to a shell. `list` also runs unprivileged (the health poll). Commands:

  start ID MEMORY_MIB   (stdin: {"key": ..., "signature_scheme": ..., "kernel_name": ...})
  status ID | stop ID | signal ID INT|TERM|KILL|HUP|USR1 | list

Each prints one JSON object; a refused command exits 2 with the reason on stderr.
"""

from __future__ import annotations

import json
import os
import re
import shlex
import socket
import subprocess
import sys
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from runner.errors import EdgejarError, InputError
from runner.node.jsonfile import read_object

CONFIG = Path("/etc/edgejar/kernels/ctl.json")
UNIT_PREFIX = "edgejar-kernel-"
_ID = re.compile(r"^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$")
SIGNALS = ("INT", "TERM", "KILL", "HUP", "USR1")
PORTS = ("shell_port", "iopub_port", "stdin_port", "control_port", "hb_port")
_SCHEMES = ("hmac-sha256",)
SHOW = "Id,ActiveState,SubState,Result,MemoryCurrent,MemoryMax,ExecMainStartTimestamp"
# The instances' hardening (roles/edgejar_launch/templates/instance@.service.j2), for a transient unit.
HARDENING = (
    "NoNewPrivileges=yes",
    "CapabilityBoundingSet=",
    "AmbientCapabilities=",
    "ProtectSystem=strict",
    "ProtectHome=yes",
    "PrivateTmp=yes",
    "ProtectKernelTunables=yes",
    "ProtectKernelModules=yes",
    "ProtectKernelLogs=yes",
    "ProtectControlGroups=yes",
    "ProtectClock=yes",
    "ProtectHostname=yes",
    "RestrictSUIDSGID=yes",
    "RestrictRealtime=yes",
    "RestrictNamespaces=yes",
    "LockPersonality=yes",
    "SystemCallArchitectures=native",
    # AF_NETLINK: ZeroMQ reads the interfaces (getifaddrs) to resolve the address it binds; without it
    # libzmq aborts (ip_resolver.cpp).
    "RestrictAddressFamilies=AF_INET AF_INET6 AF_UNIX AF_NETLINK",
    "UMask=0077",
    "MemorySwapMax=0",
)


@dataclass(frozen=True)
class Config:
    address: str  # the node's cluster address: the kernel's sockets bind here only
    user: str
    python: str
    run_dir: Path  # connection files (root-owned, readable by the kernel user)
    home: Path  # the kernel user's working directory (the only path it may write)
    max_memory_mib: int
    private_devices: bool = True
    groups: tuple[str, ...] = ()
    env_file: str = ""


def load_config(path: Path = CONFIG) -> Config:
    doc = read_object(path, "the kernel helper's config")
    try:
        return Config(
            address=str(doc["address"]),
            user=str(doc["user"]),
            python=str(doc["python"]),
            run_dir=Path(str(doc["run_dir"])),
            home=Path(str(doc["home"])),
            max_memory_mib=int(doc["max_memory_mib"]),
            private_devices=bool(doc.get("private_devices", True)),
            groups=tuple(str(g) for g in doc.get("groups", [])),
            env_file=str(doc.get("env_file", "")),
        )
    except (KeyError, TypeError, ValueError) as exc:
        raise InputError(f"{path}: the kernel helper's config lacks or mistypes {exc}") from None


def parse_words(words: Sequence[str]) -> tuple[str, list[str]]:
    """The command and its arguments, each checked; InputError for anything else."""
    if not words:
        raise InputError("no command (start, status, stop, signal, list)")
    cmd, args = words[0], list(words[1:])
    arity = {"start": 2, "status": 1, "stop": 1, "signal": 2, "list": 0}
    if cmd not in arity:
        raise InputError(f"unknown command {cmd!r} (start, status, stop, signal, list)")
    if len(args) != arity[cmd]:
        raise InputError(f"{cmd} takes {arity[cmd]} argument(s), got {len(args)}")
    if args and not _ID.match(args[0]):
        raise InputError(f"{cmd}: {args[0]!r} is not a kernel id")
    if cmd == "start" and not (args[1].isdigit() and 16 <= int(args[1]) <= 10**7):
        raise InputError(f"start: memory {args[1]!r} is not a whole number of MiB (16 or more)")
    if cmd == "signal" and args[1] not in SIGNALS:
        raise InputError(f"signal: {args[1]!r} is not one of {', '.join(SIGNALS)}")
    return cmd, args


def unit(kid: str) -> str:
    return f"{UNIT_PREFIX}{kid}.service"


def free_ports(address: str, count: int = len(PORTS)) -> list[int]:
    """Ports free on `address` now: bound at once (so all differ), then released for the kernel."""
    socks = []
    try:
        for _ in range(count):
            s = socket.socket(socket.AF_INET6 if ":" in address else socket.AF_INET, socket.SOCK_STREAM)
            s.bind((address, 0))
            socks.append(s)
        return [s.getsockname()[1] for s in socks]
    finally:
        for s in socks:
            s.close()


def connection(cfg: Config, secret: dict[str, Any], ports: Sequence[int]) -> dict[str, Any]:
    key, scheme = secret.get("key"), secret.get("signature_scheme", "hmac-sha256")
    if not isinstance(key, str) or len(key) < 16:
        raise InputError("start: stdin must give the kernel's session key (16 characters or more)")
    if scheme not in _SCHEMES:
        raise InputError(f"start: signature_scheme {scheme!r} is not one of {', '.join(_SCHEMES)}")
    info: dict[str, Any] = dict(zip(PORTS, ports, strict=True))
    info.update(ip=cfg.address, transport="tcp", key=key, signature_scheme=scheme)
    info["kernel_name"] = str(secret.get("kernel_name", ""))[:100]
    return info


def run_argv(cfg: Config, kid: str, memory_mib: int, conn_file: Path) -> list[str]:
    """The systemd-run command line of one kernel."""
    props = [
        f"MemoryMax={memory_mib}M",
        f"PrivateDevices={'yes' if cfg.private_devices else 'no'}",
        f"ReadWritePaths={cfg.home}",
        f"WorkingDirectory={cfg.home}",
        *HARDENING,
    ]
    if cfg.groups:
        props.append(f"SupplementaryGroups={' '.join(cfg.groups)}")
    if cfg.env_file:
        props.append(f"EnvironmentFile=-{cfg.env_file}")
    env = {
        "HOME": str(cfg.home),
        "IPYTHONDIR": str(cfg.home / ".ipython"),
        "JUPYTER_RUNTIME_DIR": "/tmp",
        "MPLCONFIGDIR": "/tmp",
        "PYTHONUNBUFFERED": "1",
    }
    argv = [
        "systemd-run",
        f"--unit={unit(kid)}",
        "--service-type=exec",
        f"--uid={cfg.user}",
        f"--gid={cfg.user}",
        f"--description=edgejar notebook kernel {kid}",
    ]
    argv += [f"--property={p}" for p in props]
    argv += [f"--setenv={k}={v}" for k, v in env.items()]
    argv += [cfg.python, "-m", "ipykernel_launcher", "-f", str(conn_file)]
    return argv


def show(units: Sequence[str]) -> list[dict[str, str]]:
    """systemctl show's properties of each unit."""
    if not units:
        return []
    out = subprocess.run(
        ["systemctl", "show", "--timestamp=unix", f"--property={SHOW}", *units],
        capture_output=True,
        text=True,
        check=False,
    ).stdout
    found: list[dict[str, str]] = []
    for block in out.strip().split("\n\n"):
        props = dict(line.split("=", 1) for line in block.splitlines() if "=" in line)
        if props:
            found.append(props)
    return found


def _number(text: str) -> int | None:
    return int(text) if text.isdigit() else None


def describe(props: dict[str, str]) -> dict[str, Any]:
    since = props.get("ExecMainStartTimestamp", "").lstrip("@")
    return {
        "id": props.get("Id", "").removeprefix(UNIT_PREFIX).removesuffix(".service"),
        "state": props.get("ActiveState", "unknown"),
        "sub": props.get("SubState", ""),
        "result": props.get("Result", ""),
        "memory_bytes": _number(props.get("MemoryCurrent", "")),
        "memory_max_bytes": _number(props.get("MemoryMax", "")),
        "started": int(since) if since.isdigit() else None,
    }


def listed() -> list[str]:
    out = subprocess.run(
        ["systemctl", "list-units", "--all", "--plain", "--no-legend", f"{UNIT_PREFIX}*.service"],
        capture_output=True,
        text=True,
        check=False,
    ).stdout
    return [line.split()[0] for line in out.splitlines() if line.strip().startswith(UNIT_PREFIX)]


def _systemctl(*args: str) -> None:
    subprocess.run(["systemctl", *args], capture_output=True, check=False)


def start(cfg: Config, kid: str, memory_mib: int, secret: dict[str, Any]) -> dict[str, Any]:
    if memory_mib > cfg.max_memory_mib:
        raise InputError(
            f"start: {memory_mib} MiB is more than a kernel may have here ({cfg.max_memory_mib})"
        )
    found = show([unit(kid)])
    if found and describe(found[0])["state"] in ("active", "activating"):
        raise InputError(f"start: kernel {kid} runs already")
    info = connection(cfg, secret, free_ports(cfg.address))
    cfg.run_dir.mkdir(mode=0o750, parents=True, exist_ok=True)
    conn_file = cfg.run_dir / f"{kid}.json"
    tmp = conn_file.with_suffix(".tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o640)
    with os.fdopen(fd, "w", encoding="utf-8") as fh:
        json.dump(info, fh)
    if os.geteuid() == 0:
        import grp

        gid = grp.getgrnam(cfg.user).gr_gid
        os.chown(cfg.run_dir, 0, gid)
        os.chown(tmp, 0, gid)
    tmp.replace(conn_file)
    _systemctl("reset-failed", unit(kid))
    done = subprocess.run(
        run_argv(cfg, kid, memory_mib, conn_file), capture_output=True, text=True, check=False
    )
    if done.returncode != 0:
        conn_file.unlink(missing_ok=True)
        raise EdgejarError(f"start: systemd-run failed: {done.stderr.strip()[-500:]}")
    return {k: v for k, v in info.items() if k != "key"}


def stop(cfg: Config, kid: str) -> dict[str, Any]:
    before = show([unit(kid)])
    _systemctl("stop", unit(kid))
    _systemctl("reset-failed", unit(kid))
    (cfg.run_dir / f"{kid}.json").unlink(missing_ok=True)
    return describe(before[0]) if before else {"id": kid, "state": "inactive"}


def main(argv: Sequence[str] | None = None) -> int:
    words = list(argv if argv is not None else sys.argv[1:])
    if not words:  # the forced command over SSH: the gateway's words, never given to a shell
        words = shlex.split(os.environ.get("SSH_ORIGINAL_COMMAND", ""))
    try:
        cmd, args = parse_words(words)
        if cmd == "list":
            print(json.dumps({"kernels": [describe(p) for p in show(listed())]}))
            return 0
        if cmd == "status":
            found = show([unit(args[0])])
            print(json.dumps(describe(found[0]) if found else {"id": args[0], "state": "inactive"}))
            return 0
        cfg = load_config()
        if cmd == "start":
            raw = sys.stdin.read(65536)
            try:
                secret = json.loads(raw)
            except ValueError:
                raise InputError("start: stdin must be one JSON object") from None
            if not isinstance(secret, dict):
                raise InputError("start: stdin must be one JSON object")
            print(json.dumps(start(cfg, args[0], int(args[1]), secret)))
        elif cmd == "stop":
            print(json.dumps(stop(cfg, args[0])))
        else:
            _systemctl("kill", f"--signal=SIG{args[1]}", "--kill-whom=main", unit(args[0]))
            print(json.dumps({"id": args[0], "signal": args[1]}))
        return 0
    except InputError as exc:
        print(f"edgejar kernel helper: {exc}", file=sys.stderr)
        return 2
    except EdgejarError as exc:
        print(f"edgejar kernel helper: {exc}", file=sys.stderr)
        return 1


if __name__ == "__main__":
    raise SystemExit(main())
