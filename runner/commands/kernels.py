"""`python -m runner kernels specs|list|start|exec|stop`: notebook kernels on the cluster, through the
notebook gateway (docs/notebooks.md).

The token comes from $EDGEJAR_NOTEBOOKS_TOKEN (never the command line, where `ps` shows it). The gateway's
URL defaults to the inventory's coordinator on port 8888 with TLS, trusting the certificate notebooks.yml
fetched (`.edgejar/notebooks/<node>.crt`). `list` joins the gateway's kernels with the nodes' kernel units
(one health poll): where each runs, its memory, ceiling and idle time.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import sys
from pathlib import Path
from typing import Any

from runner.commands.common import add_inventory, inventory_path, table
from runner.errors import InputError
from runner.node.kernels import request
from runner.notebooks.client import PORT, TOKEN_ENV, Gateway, Refused, locate, token_from_env
from runner.notebooks.idle import idle_seconds

HEADER = ["kernel", "spec", "node", "state", "memory", "ceiling", "up", "idle", "clients"]


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "kernels",
        help="notebook kernels: specs, list, start, exec, stop",
        description=f"Notebook kernels through the gateway, with the token in ${TOKEN_ENV}. Exit status: 0 "
        "done, 1 the gateway failed or could not be reached, 2 bad input (a request nothing can satisfy "
        "included).",
    )
    add_inventory(p)
    p.add_argument("--url", default=None, help=f"the gateway (default: https://<coordinator>:{PORT})")
    p.add_argument(
        "--cacert", type=Path, default=None, help="the certificate to trust (default: the fetched one)"
    )
    p.add_argument("--json", action="store_true", help="print the answer as JSON")
    what = p.add_subparsers(dest="action", required=True)
    what.add_parser("specs", help="the kernelspecs the gateway offers")
    what.add_parser("list", help="running kernels: node, memory, ceiling, idle time")
    st = what.add_parser("start", help="start a kernel (placed by edgejar); prints its id")
    st.add_argument("--spec", default="edgejar", help="kernelspec (default: edgejar, any node)")
    st.add_argument("--node", help="pin it to this node")
    st.add_argument("--tags", help="comma-separated tags its node must have")
    st.add_argument("--gpu", action="store_true", help="it needs a GPU")
    st.add_argument("--gpu-memory-gb", type=float, help="free GPU memory it needs")
    st.add_argument("--memory-gb", type=float, help="its memory ceiling (default: the gateway's)")
    ex = what.add_parser("exec", help="run code in a kernel; print its output")
    ex.add_argument("kernel")
    ex.add_argument("code")
    sp = what.add_parser("stop", help="shut a kernel down")
    sp.add_argument("kernel")
    p.set_defaults(func=run)


def start_env(args: argparse.Namespace) -> dict[str, str]:
    env: dict[str, str] = {}
    if args.node:
        env[request.ENV_NODE] = args.node
    if args.tags:
        env[request.ENV_TAGS] = args.tags
    if args.gpu:
        env[request.ENV_GPU] = "true"
    if args.gpu_memory_gb is not None:
        env[request.ENV_GPU_MEMORY] = f"{args.gpu_memory_gb:g}"
    if args.memory_gb is not None:
        env[request.ENV_MEMORY] = f"{args.memory_gb:g}"
    return env


def rows(gw: Gateway, inventory_file: Path) -> list[dict[str, Any]]:
    """The gateway's kernels joined with the nodes' kernel units (one health poll)."""
    from runner.health.cluster import HealthService
    from runner.health.status import Thresholds

    kernels = gw.kernels()
    idle = idle_seconds(kernels, dt.datetime.now(dt.UTC))
    service = HealthService.from_inventory(inventory_file, Thresholds(grace_s=0.0))
    try:
        health = service.poll()
    finally:
        service.poller.shutdown()
    units = {k.instance: (n.node, k) for n in health.nodes for k in n.kernels}
    out = []
    for k in kernels:
        node, unit = units.get(k["id"], (None, None))
        out.append({
            "id": k["id"], "spec": k.get("name"), "node": node,
            "state": k.get("execution_state"), "unit": None if unit is None else f"{unit.active}/{unit.sub}",
            "memory_bytes": None if unit is None else unit.memory_bytes,
            "memory_max_bytes": None if unit is None else unit.memory_max_bytes,
            "up_s": None if unit is None or unit.state_age_s is None else round(unit.state_age_s, 1),
            "idle_s": idle.get(k["id"]), "connections": k.get("connections", 0),
        })  # fmt: skip
    return out


def _mib(n: int | None) -> str:
    return "-" if n is None else f"{n / 1024**2:.0f}M"


def _s(v: float | None) -> str:
    return "-" if v is None else f"{v:.0f}s"


def run(args: argparse.Namespace) -> int:
    token = token_from_env()
    if not token:
        raise InputError(f"${TOKEN_ENV} is not set: the notebook gateway needs its token")
    gw = locate(inventory_path(args), args.url, args.cacert, token)
    try:
        return _act(args, gw)
    except Refused as exc:
        if exc.status in (400, 409):  # the request: a node, tag or size nothing has
            raise InputError(str(exc)) from None
        raise


def _act(args: argparse.Namespace, gw: Gateway) -> int:
    if args.action == "specs":
        specs = gw.kernelspecs()
        if args.json:
            print(json.dumps(specs, indent=2))
        else:
            for name, spec in sorted(specs.items()):
                print(f"{name}\t{spec['spec']['display_name']}")
        return 0
    if args.action == "list":
        found = rows(gw, inventory_path(args))
        if args.json:
            print(json.dumps(found, indent=2))
        else:
            print(table([[r["id"], str(r["spec"]), r["node"] or "?", str(r["state"]), _mib(r["memory_bytes"]),
                          _mib(r["memory_max_bytes"]), _s(r["up_s"]), _s(r["idle_s"]), str(r["connections"])]
                         for r in found], HEADER))  # fmt: skip
        return 0
    if args.action == "start":
        kid = gw.start(args.spec, start_env(args))
        print(json.dumps({"id": kid}) if args.json else kid)
        return 0
    if args.action == "exec":
        cell = gw.execute(args.kernel, args.code)
        if args.json:
            print(json.dumps({"stdout": cell.stdout, "result": cell.result, "error": cell.error}))
        else:
            sys.stdout.write(cell.stdout)
            if cell.result is not None:
                print(cell.result)
            if cell.error:
                print(cell.error, file=sys.stderr)
        return 1 if cell.error else 0
    gw.stop(args.kernel)
    return 0
