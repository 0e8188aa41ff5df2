"""`python -m runner monitor`: the Textual monitor (runner/monitor/)."""

from __future__ import annotations

import argparse
from pathlib import Path

from runner.commands.common import add_inventory, inventory_path
from runner.commands.health import add_health_options, thresholds
from runner.serving import door_client


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "monitor",
        help="watch nodes and instances live (Textual app)",
        description="Nodes and instances tables, a live journal of the selected instance, and actions "
        "(restart or stop an instance, mark a node in maintenance), each after a confirmation. Polls in "
        "the background; a node is UNAVAILABLE only after SSH failed for --grace seconds. With a key in "
        f"${door_client.KEY_ENV} (read-only is enough) it also shows the serving front door's backends, load "
        "and strategy.",
    )
    add_inventory(p)
    p.add_argument(
        "--interval", type=float, default=2.0, metavar="S", help="seconds between polls (default 2)"
    )
    add_health_options(p, grace_default=30.0)
    p.add_argument(
        "--frontdoor-url",
        default=None,
        metavar="URL",
        help=f"the serving front door (default https://<coordinator>:{door_client.PORT}; shown when "
        f"${door_client.KEY_ENV} is set)",
    )
    p.add_argument(
        "--frontdoor-cacert",
        type=Path,
        default=None,
        metavar="FILE",
        help="the front door's certificate to trust (default: the one frontdoor.yml fetched)",
    )
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from runner.errors import InputError
    from runner.health.cluster import HealthService
    from runner.monitor.app import MonitorApp

    th = thresholds(args)
    if args.interval <= 0:
        raise InputError(f"--interval must be positive, got {args.interval}")
    key = door_client.key_from_env()
    door = None
    if key:
        door = door_client.locate(inventory_path(args), args.frontdoor_url, args.frontdoor_cacert, key)
    service = HealthService.from_inventory(inventory_path(args), th, timeout_s=args.timeout)
    app = MonitorApp(service, interval_s=args.interval, prom=args.prom, frontdoor=door)
    try:
        app.run()
    finally:
        service.close()
    return 0
