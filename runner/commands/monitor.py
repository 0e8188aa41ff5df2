"""`python -m runner monitor`: the Textual monitor (runner/monitor/)."""

from __future__ import annotations

import argparse

from runner.commands.common import add_inventory, inventory_path
from runner.commands.health import add_health_options, thresholds


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "monitor",
        help="watch nodes and instances live (Textual app)",
        description="Nodes and instances tables, a live journal of the selected instance, and actions "
        "(restart or stop an instance, mark a node in maintenance), each after a confirmation. Polls in "
        "the background; a node is UNAVAILABLE only after SSH failed for --grace seconds.",
    )
    add_inventory(p)
    p.add_argument(
        "--interval", type=float, default=2.0, metavar="S", help="seconds between polls (default 2)"
    )
    add_health_options(p, grace_default=30.0)
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from runner.errors import InputError
    from runner.health.cluster import HealthService
    from runner.monitor.app import MonitorApp

    th = thresholds(args)
    if args.interval <= 0:
        raise InputError(f"--interval must be positive, got {args.interval}")
    service = HealthService.from_inventory(inventory_path(args), th, timeout_s=args.timeout)
    app = MonitorApp(service, interval_s=args.interval, prom=args.prom)
    try:
        app.run()
    finally:
        service.close()
    return 0
