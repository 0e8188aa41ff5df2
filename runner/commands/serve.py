"""`python -m runner serve status|strategy|drain|ready`: the serving front door seen and steered from the
controller (docs/serving.md).

The key comes from $EDGEJAR_FRONTDOOR_KEY (never from the command line, where `ps` shows it): a
read-only key for `status`, an admin key for the others. The front door's URL defaults to the
coordinator of the inventory (the first node of kind x86, else the first node) on port 8443 with TLS,
trusting the certificate frontdoor.yml fetched (`.edgejar/frontdoor/<node>.crt`).
"""

from __future__ import annotations

import argparse
import json
import os
import ssl
import urllib.error
import urllib.request
from pathlib import Path
from typing import Any

from runner import inventory
from runner.commands.common import add_inventory, inventory_path, table
from runner.errors import EdgejarError, InputError
from runner.node.frontdoor.routing import STRATEGIES
from runner.planning.requirements import project_root

KEY_ENV = "EDGEJAR_FRONTDOOR_KEY"
PORT = 8443


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "serve",
        help="the serving front door: status, strategy, drain, ready",
        description=f"Talk to the serving front door with the key in ${KEY_ENV}. Exit status: 0 done, 1 the "
        "front door refused or could not be reached, 2 bad input.",
    )
    add_inventory(p)
    p.add_argument("--url", default=None, help=f"the front door (default: https://<coordinator>:{PORT})")
    p.add_argument(
        "--cacert", type=Path, default=None, help="the certificate to trust (default: the fetched one)"
    )
    p.add_argument("--json", action="store_true", help="print the answer as JSON")
    what = p.add_subparsers(dest="action", required=True)
    what.add_parser("status", help="strategy, backends, load, measurements (a read-only key)")
    st = what.add_parser("strategy", help="change the routing strategy at run time (an admin key)")
    st.add_argument("name", choices=STRATEGIES)
    for action in ("drain", "ready"):
        d = what.add_parser(action, help=f"{action} one backend (an admin key)")
        d.add_argument("backend", help="the replica id, e.g. chat-1")
    p.set_defaults(func=run)


def _coordinator(args: argparse.Namespace) -> inventory.ClusterNode:
    cluster = inventory.load(inventory_path(args))
    return next((cn for cn in cluster.nodes if cn.kind == "x86"), cluster.nodes[0])


def _target(args: argparse.Namespace) -> tuple[str, ssl.SSLContext | None]:
    url, cacert = args.url, args.cacert
    if url is None:
        node = _coordinator(args)
        url = f"https://{node.address}:{PORT}"
        cacert = cacert or project_root() / ".edgejar" / "frontdoor" / f"{node.node.name}.crt"
    if not url.startswith("https://"):
        return url.rstrip("/"), None
    if cacert is not None and not cacert.is_file():
        raise InputError(f"--cacert {cacert}: no such file (run playbooks/frontdoor.yml, which fetches it)")
    return url.rstrip("/"), ssl.create_default_context(cafile=str(cacert) if cacert else None)


def request(url: str, tls: ssl.SSLContext | None, method: str, path: str, key: str, body: Any = None) -> Any:
    data = None if body is None else json.dumps(body).encode()
    req = urllib.request.Request(url + path, data=data, method=method, headers={
        "Authorization": f"Bearer {key}", "Content-Type": "application/json"})  # fmt: skip
    try:
        with urllib.request.urlopen(req, timeout=30, context=tls) as resp:
            return json.loads(resp.read())
    except urllib.error.HTTPError as exc:
        try:
            message = json.loads(exc.read())["error"]["message"]
        except (ValueError, KeyError, TypeError):
            message = exc.reason
        raise EdgejarError(f"{url}{path}: HTTP {exc.code}: {message}") from None
    except OSError as exc:
        raise EdgejarError(f"{url}: cannot reach the front door ({exc})") from None


def _fmt(value: Any, digits: int = 2) -> str:
    return "-" if value is None else f"{value:.{digits}f}" if isinstance(value, float) else str(value)


def run(args: argparse.Namespace) -> int:
    key = os.environ.get(KEY_ENV, "")
    if not key:
        raise InputError(
            f"${KEY_ENV} is not set: the front door needs a key (read-only for status, admin else)"
        )
    url, tls = _target(args)
    if args.action == "status":
        doc = request(url, tls, "GET", "/admin/status", key)
    elif args.action == "strategy":
        doc = request(url, tls, "PUT", "/admin/strategy", key, {"strategy": args.name})
    else:
        doc = request(url, tls, "POST", f"/admin/backends/{args.backend}/{args.action}", key)
    if args.json or args.action != "status":
        print(json.dumps(doc, indent=2))
        return 0
    problem = f"; keys file: {doc['keys_error']}" if doc.get("keys_error") else ""
    models = ", ".join(doc["models"]) or "-"
    print(f"front door {url}: strategy {doc['strategy']}; models {models}; {doc['keys']} key(s){problem}")

    def state(b: dict[str, Any]) -> str:
        if b["drained"]:
            return "drained"
        if b.get("unreachable"):
            return "unreachable"
        return f"cooling {b['cooldown_s']:g} s" if b["cooldown_s"] else "up"

    rows = [
        [b["id"], b["model"], b["node"], state(b), str(b["in_flight"]), str(b["queued"]), str(b["served"]),
         _fmt(b["ttft_s"], 3), _fmt(b["decode_tokens_per_s"], 1)]
        for b in doc["backends"]
    ]  # fmt: skip
    header = ["backend", "model", "node", "state", "in flight", "queued", "served", "ttft s", "tok/s"]
    print(table(rows, header))
    return 0
