"""One node's part of a `torch_distributed` job: the `torchrun` command line and its environment, from the
unit's placement entry (docs/training.md). `python -m runner.node train --config FILE` records the launch,
runs torchrun as its child and records its exit; `--print` shows the command instead.

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
import signal
import socket
import subprocess
import sys
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

from runner.errors import InputError
from runner.node import records, trainrec
from runner.node.jsonfile import read_object

GAVE_UP = 3  # the unit's exit status when the job never formed: listed in RestartPreventExitStatus
DEFAULT_TIMEOUT_S = 300  # join and collective timeouts of an entry written before they were fields
RECORDS_FILE = "records.sqlite3"  # the node's records database in its data directory (as the instances')
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


def _hosts_rendezvous(entry: Mapping[str, Any]) -> bool:
    if entry.get("unit_index") is not None:
        return int(entry["unit_index"]) == 0
    return bool(entry.get("node")) and entry.get("rdzv_host") == entry.get("node")


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
        # Unit 0's agent hosts the c10d store, said outright: torchrun's guess compares the endpoint with
        # the host name, which Debian and Pi OS resolve to 127.0.1.1.
        # join_timeout: how long the agents wait for every node at a rendezvous before they give up (a node
        # that is down or unreachable is then reported, not waited for without end).
        f"--rdzv-conf=is_host={'true' if _hosts_rendezvous(entry) else 'false'},"
        f"join_timeout={int(entry.get('join_timeout_s') or DEFAULT_TIMEOUT_S)}",
    ]
    if entry.get("module"):
        argv += ["-m", str(entry["module"])]
    elif entry.get("entry"):
        argv.append(str(app_dir / str(entry["entry"])))
    else:
        raise InputError(f"training unit {entry['id']}: neither entry nor module")
    return argv + [str(a) for a in entry.get("args") or []]


def data_dir(entry: Mapping[str, Any]) -> Path:
    """The node's data directory (the records database, the checkpoints): launch writes it in the config."""
    return Path(str(entry.get("data_dir") or "."))


def checkpoint_dir(entry: Mapping[str, Any]) -> Path:
    return data_dir(entry) / "checkpoints" / str(entry["id"])


def environment(entry: Mapping[str, Any], interface: str, base: Mapping[str, str]) -> dict[str, str]:
    """The environment of the torchrun agent and its ranks."""
    return {
        **base,
        trainrec.ENV_RECORDS: str(data_dir(entry) / RECORDS_FILE),
        trainrec.ENV_CHECKPOINTS: str(checkpoint_dir(entry)),
        "GLOO_SOCKET_IFNAME": interface,
        "EDGEJAR_TRAINING_BACKEND": str(entry["backend"]),
        "EDGEJAR_TRAINING_JOB": str(entry["experiment"]),
        "EDGEJAR_TRAINING_UNIT": str(entry["id"]),
        "EDGEJAR_TRAINING_DATA": str(entry.get("data") or "synthetic"),
        "EDGEJAR_TRAINING_WEIGHTING": str(entry.get("weighting") or "none"),
        # the process group's timeout (init_process_group(timeout=...)): a rank whose peer vanished mid-run
        # fails after this long instead of gloo's 30 minutes, and torchrun re-forms the job or gives up
        "EDGEJAR_TRAINING_TIMEOUT_S": str(int(entry.get("collective_timeout_s") or DEFAULT_TIMEOUT_S)),
    }


def prepare(
    entry: Mapping[str, Any], python: str, app_dir: Path, run: Run = subprocess.run
) -> tuple[list[str], dict[str, str]]:
    """(argv, env) for this node's unit; InputError (exit 2) names what is wrong."""
    argv = command(entry, python, app_dir)
    check_data(entry)
    host = str(entry["rdzv_endpoint"]).rsplit(":", 1)[0].strip("[]")
    return argv, environment(entry, gloo_interface(host, int(entry["nnodes"]), run), os.environ)


def check_data(entry: Mapping[str, Any]) -> None:
    """A job's data path must be readable here, by the unit (its user, under its hardening: a home
    directory is hidden from it); InputError (exit 2, not restarted) names it otherwise."""
    data = str(entry.get("data") or "synthetic")
    if data != "synthetic" and not os.access(data, os.R_OK):
        why = "does not exist" if not os.path.exists(data) else "is not readable by the unit's user"
        raise InputError(
            f"training unit {entry['id']}: data {data} {why} on this node (put it on every node of the "
            "job, readable by the service user, outside /home: the unit cannot see home directories)"
        )


def notify_ready(environ: Mapping[str, str] = os.environ) -> bool:
    """Tell systemd that the unit started (Type=notify): its checks passed and torchrun follows. Until
    then the unit is `activating`, so launch waits for this and sees a unit whose checks failed (bad data,
    no route: exit 2) as failed, with its reason, instead of briefly active. Without NOTIFY_SOCKET (run by
    hand) it does nothing. Returns whether it told systemd."""
    address = environ.get("NOTIFY_SOCKET", "")
    if not address:
        return False
    target = "\0" + address[1:] if address.startswith("@") else address  # an abstract socket
    with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as sock:
        sock.connect(target)
        sock.sendall(b"READY=1")
    return True


def load(path: Path) -> dict[str, Any]:
    return read_object(path, "the training unit's config")


def register(conn: Any, entry: Mapping[str, Any]) -> int:
    """Record the unit (its experiment and placement entry, once) and this launch; returns the launch
    number (1 for the unit's first start on this node, then 2, 3, ... after each systemd restart)."""
    t = records.now()
    job = str(entry["experiment"])
    records.insert(
        conn,
        "experiments",
        {"name": job, "mode": "torch_distributed", "experiment_file": None, "first_seen": t},
    )
    records.insert(
        conn,
        "instances",
        {
            "instance_id": str(entry["id"]),
            "experiment": job,
            "mode": "torch_distributed",
            "node": entry.get("node"),
            "address": entry.get("address"),
            "port": None,
            "model": None,
            "memory_mib": entry.get("memory_mib"),
            "gpu": int(bool(entry.get("gpu"))),
            "gpu_memory_mib": entry.get("gpu_memory_mib"),
            "config": dict(entry),
            "registered_at": t,
        },
    )
    row = conn.execute(
        "SELECT COALESCE(MAX(launch), 0) FROM train_events WHERE instance_id = ? AND event = 'launch'",
        (str(entry["id"]),),
    ).fetchone()
    return int(row[0]) + 1


def _event(conn: Any, entry: Mapping[str, Any], launch: int, event: str, **detail: Any) -> None:
    records.insert(
        conn,
        "train_events",
        {
            "instance_id": str(entry["id"]),
            "launch": launch,
            "restart": 0,
            "local_rank": -1,
            "rank": None,
            "event": event,
            "step": None,
            "detail": json.dumps(detail, sort_keys=True),
            "at": records.now(),
        },
    )


# torchrun's own errors that mean the job cannot form: every node did not arrive within the join
# timeout, the c10d store on unit 0's node could not be reached within c10d's read timeout (60 s), or the
# rendezvous was closed (an agent of the job shut it down: it gave up or ran out of restarts; a restarted
# unit would be told "closed" again for as long as the store's holder lives).
GIVE_UP_ERRORS = ("RendezvousTimeoutError", "RendezvousConnectionError", "RendezvousClosedError")


def error_file(entry: Mapping[str, Any]) -> Path:
    """Where torchrun's agent writes the error it failed with (TORCHELASTIC_ERROR_FILE, its @record)."""
    return data_dir(entry) / f"{entry['id']}.torchrun-error.json"


def rendezvous_failure(path: Path) -> str | None:
    """torchrun's error message when it is one of GIVE_UP_ERRORS, else None (no file, another error)."""
    try:
        message = json.loads(path.read_text(encoding="utf-8"))["message"]["message"]
    except (OSError, ValueError, KeyError, TypeError):
        return None
    text = str(message)
    return text if text.split(":", 1)[0].strip() in GIVE_UP_ERRORS else None


def run(entry: Mapping[str, Any], argv: list[str], env: dict[str, str]) -> int:
    """Record the launch, run torchrun as a child (SIGTERM and SIGINT passed on), record its exit; its exit
    status is the unit's (systemd restarts a failed unit within its start limit).

    When torchrun fails because the job could not form (GIVE_UP_ERRORS: a node missing at the rendezvous
    past the join timeout, or the store's node unreachable), the wrapper records `gave_up` with the reason
    and exits GAVE_UP, which the unit does not restart: the job is reported as failed rather than tried
    again without end. Any other failure (a rank died, the store's agent restarted under it) is the plain
    failure that systemd restarts within its start limit."""
    checkpoint_dir(entry).mkdir(parents=True, exist_ok=True)
    conn = records.connect(data_dir(entry) / RECORDS_FILE)
    stopping: list[int] = []
    try:
        launch = register(conn, entry)
        errors = error_file(entry)
        errors.unlink(missing_ok=True)
        env = {**env, trainrec.ENV_LAUNCH: str(launch), "TORCHELASTIC_ERROR_FILE": str(errors)}
        env.pop("NOTIFY_SOCKET", None)  # the unit's main process is this wrapper, not torchrun
        shown = {k: env[k] for k in ("GLOO_SOCKET_IFNAME", "EDGEJAR_TRAINING_BACKEND")}
        _event(conn, entry, launch, "launch", argv=argv, env=shown, nnodes=entry.get("nnodes"))
        sys.stdout.flush()
        child = subprocess.Popen(argv, env=env)

        def forward(signum: int, _frame: object) -> None:
            stopping.append(signum)
            child.send_signal(signum)

        for sig in (signal.SIGTERM, signal.SIGINT):
            signal.signal(sig, forward)
        code = child.wait()
        _event(conn, entry, launch, "exit", returncode=code)
        failure = rendezvous_failure(errors) if code != 0 and not stopping else None
        if failure is not None:
            reason = (
                f"the job did not form at the rendezvous {entry.get('rdzv_endpoint')} (join timeout "
                f"{int(entry.get('join_timeout_s') or DEFAULT_TIMEOUT_S)} s; a node down or unreachable, "
                f"or the store's node): torchrun: {failure[:300]}"
            )
            _event(conn, entry, launch, "gave_up", returncode=code, reason=reason)
            print(f"edgejar train: {entry['id']}: gave up: {reason}", file=sys.stderr, flush=True)
            return GAVE_UP
    finally:
        conn.close()
    return code if code >= 0 else 128 - code  # killed by a signal: the shell's convention
