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
from pathlib import Path

from runner.commands.common import add_inventory, inventory_path, table
from runner.errors import InputError
from runner.node.frontdoor.routing import STRATEGIES
from runner.serving.door_client import (
    BACKEND_HEADER,
    KEY_ENV,
    PORT,
    backend_rows,
    headline,
    key_from_env,
    locate,
)


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


def run(args: argparse.Namespace) -> int:
    key = key_from_env()
    if not key:
        raise InputError(
            f"${KEY_ENV} is not set: the front door needs a key (read-only for status, admin else)"
        )
    door = locate(inventory_path(args), args.url, args.cacert, key)
    if args.action == "status":
        doc = door.call("GET", "/admin/status")
    elif args.action == "strategy":
        doc = door.call("PUT", "/admin/strategy", {"strategy": args.name})
    else:
        doc = door.call("POST", f"/admin/backends/{args.backend}/{args.action}")
    if args.json or args.action != "status":
        print(json.dumps(doc, indent=2))
        return 0
    print(f"front door {door.url}: {headline(doc)}")
    print(table(backend_rows(doc), list(BACKEND_HEADER)))
    return 0
