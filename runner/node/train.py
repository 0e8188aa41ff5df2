"""One node's part of a `torch_distributed` job: the `torchrun` command line and its environment, from the
unit's placement entry (docs/training.md). `python -m runner.node train --config FILE` runs it in place of
itself; `--print` shows it instead.

Two rules the seed's public code broke are kept here:
- gloo binds to the interface named by GLOO_SOCKET_IFNAME, derived on the node from the route to the
  rendezvous address (on the rendezvous node itself: the interface that holds that address), never
  loopback for a job that spans nodes. Debian and Raspberry Pi OS map the host name to 127.0.1.1, so a
  rank that looked its own address up by name would bind to loopback and never be reached.
- every rank uses the job's one backend, chosen by the planner (EDGEJAR_TRAINING_BACKEND), and each
  agent advertises the node's cluster address to the rendezvous (`--local-addr`), never its host name.

Node side: the standard library and runner.errors only (deploy ships runner/node alone).
"""

from __future__ import annotations

import ipaddress
import json
import os
import subprocess
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

from runner.errors import InputError

Run = Callable[..., "subprocess.CompletedProcess[str]"]

# The fields of a unit's entry that this module reads (runner/training/plan.py writes them).
REQUIRED = (
    "id", "experiment", "address", "nnodes", "nproc_per_node", "rdzv_endpoint", "backend", "max_restarts",
)  # fmt: skip


def _ip(args: list[str], run: Run) -> list[dict[str, Any]]:
    out = run(["ip", "-j", *args], capture_output=True, text=True, check=False)
    if out.returncode != 0:
        raise InputError(f"`ip {' '.join(args)}` failed: {(out.stderr or out.stdout).strip()}")
    data = json.loads(out.stdout or "[]")
    return data if isinstance(data, list) else []


def gloo_interface(rdzv_address: str, nnodes: int, run: Run = subprocess.run) -> str:
    """The interface gloo must use to reach the rendezvous address from this node."""
    routes = _ip(["route", "get", rdzv_address], run)
    route = routes[0] if routes else {}
    dev = str(route.get("dev", ""))
    if route.get("type") == "local" or dev == "lo":  # this node holds the address itself
        links = _ip(["addr", "show", "to", rdzv_address], run)
        dev = str(links[0].get("ifname", "")) if links else ""
    if not dev:
        raise InputError(f"no interface reaches the rendezvous address {rdzv_address} from this node")
    if dev == "lo" and not (ipaddress.ip_address(rdzv_address).is_loopback and nnodes == 1):
        raise InputError(
            f"the rendezvous address {rdzv_address} is on loopback here; a job over {nnodes} nodes needs "
            "the cluster address (inventory ansible_host/node address), not 127.x"
        )
    return dev


def command(entry: Mapping[str, Any], python: str, app_dir: Path) -> list[str]:
    """The torchrun command line for this node's unit."""
    missing = [k for k in REQUIRED if entry.get(k) in (None, "")]
    if missing:
        raise InputError(f"training unit {entry.get('id', '?')}: missing {', '.join(missing)}")
    argv = [
        python,
        "-m",
        "torch.distributed.run",
        f"--nnodes={int(entry['nnodes'])}",
        f"--nproc-per-node={int(entry['nproc_per_node'])}",
        "--rdzv-backend=c10d",
        f"--rdzv-endpoint={entry['rdzv_endpoint']}",
        f"--rdzv-id={entry['experiment']}",
        f"--max-restarts={int(entry['max_restarts'])}",
        f"--local-addr={entry['address']}",
    ]
    if entry.get("module"):
        argv += ["-m", str(entry["module"])]
    elif entry.get("entry"):
        argv.append(str(app_dir / str(entry["entry"])))
    else:
        raise InputError(f"training unit {entry['id']}: neither entry nor module")
    return argv + [str(a) for a in entry.get("args") or []]


def environment(entry: Mapping[str, Any], interface: str, base: Mapping[str, str]) -> dict[str, str]:
    """The environment of the torchrun agent and its ranks."""
    return {
        **base,
        "GLOO_SOCKET_IFNAME": interface,
        "EDGEJAR_TRAINING_BACKEND": str(entry["backend"]),
        "EDGEJAR_TRAINING_JOB": str(entry["experiment"]),
        "EDGEJAR_TRAINING_UNIT": str(entry["id"]),
        "EDGEJAR_TRAINING_DATA": str(entry.get("data") or "synthetic"),
        "EDGEJAR_TRAINING_WEIGHTING": str(entry.get("weighting") or "none"),
    }


def prepare(
    entry: Mapping[str, Any], python: str, app_dir: Path, run: Run = subprocess.run
) -> tuple[list[str], dict[str, str]]:
    """(argv, env) for this node's unit; InputError (exit 2) names what is wrong."""
    argv = command(entry, python, app_dir)
    host = str(entry["rdzv_endpoint"]).rsplit(":", 1)[0].strip("[]")
    return argv, environment(entry, gloo_interface(host, int(entry["nnodes"]), run), os.environ)


def load(path: Path) -> dict[str, Any]:
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        raise InputError(f"{path}: cannot read the training unit's config ({exc})") from exc
    if not isinstance(data, dict):
        raise InputError(f"{path}: a training unit's config is one JSON object")
    return data
