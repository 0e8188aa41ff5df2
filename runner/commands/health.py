"""`python -m runner health`: poll every node once (one probe per node over persistent SSH) and print a
table or JSON. Exit 0 when every node is HEALTHY or in MAINTENANCE, 1 when any is DEGRADED or UNAVAILABLE,
2 on bad input (inventory, --node)."""

from __future__ import annotations

import argparse
import json
import logging
import time
from dataclasses import replace
from pathlib import Path

from runner.commands.common import add_inventory, inventory_path, table
from runner.errors import EXIT_FAILURE, EXIT_OK, EdgejarError, InputError
from runner.health import metrics, report
from runner.health.cluster import ClusterHealth, HealthService
from runner.health.model import Status
from runner.health.status import Thresholds

log = logging.getLogger(__name__)

RETRY_INTERVAL_S = 1.0


def add_health_options(p: argparse.ArgumentParser, *, grace_default: float) -> None:
    d = Thresholds()
    p.add_argument(
        "--grace",
        type=float,
        default=grace_default,
        metavar="S",
        help=f"a node is UNAVAILABLE only after SSH failed for S seconds (default {grace_default:g})",
    )
    p.add_argument(
        "--timeout", type=float, default=10.0, metavar="S", help="per-node poll timeout (default 10)"
    )
    p.add_argument(
        "--mem-max",
        type=float,
        default=d.mem_used_max * 100,
        metavar="PCT",
        help=f"DEGRADED above this memory use in %% (default {d.mem_used_max * 100:g})",
    )
    p.add_argument(
        "--disk-max",
        type=float,
        default=d.disk_used_max * 100,
        metavar="PCT",
        help=f"DEGRADED at this disk use in %% (default {d.disk_used_max * 100:g}; or under 1 GiB free)",
    )
    p.add_argument(
        "--prom", type=Path, metavar="FILE.prom", help="also write Prometheus textfile metrics here"
    )


def thresholds(args: argparse.Namespace) -> Thresholds:
    for name in ("grace", "timeout"):
        if getattr(args, name) < 0:
            raise InputError(f"--{name} must not be negative, got {getattr(args, name)}")
    for name in ("mem_max", "disk_max"):
        if not 0 < getattr(args, name) <= 100:
            raise InputError(f"--{name.replace('_', '-')} must be a percentage in (0, 100]")
    if args.prom is not None and args.prom.suffix != ".prom":
        raise InputError(f"--prom {args.prom}: the textfile collector reads only files ending in .prom")
    return Thresholds(mem_used_max=args.mem_max / 100, disk_used_max=args.disk_max / 100, grace_s=args.grace)


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "health",
        help="poll every node once and show its health",
        description="One lightweight probe per node over persistent SSH connections (memory, load, disk, "
        "memory cgroup, failed units, instance units, Jetson GPU load and temperatures). A node that cannot "
        "be reached is re-polled for up to --grace seconds before it is UNAVAILABLE. Exit status: 0 all "
        "nodes HEALTHY or MAINTENANCE, 1 some DEGRADED or UNAVAILABLE, 2 bad input.",
    )
    add_inventory(p)
    p.add_argument("--node", action="append", default=[], metavar="NODE", help="only this node (repeatable)")
    p.add_argument("--json", action="store_true", help="print one JSON object on stdout")
    add_health_options(p, grace_default=0.0)
    p.set_defaults(func=run)


def poll_with_grace(service: HealthService) -> ClusterHealth:
    """One poll; nodes that could not be reached are polled again until they answer or the grace ends."""
    health = service.poll()
    deadline = time.monotonic() + service.thresholds.grace_s
    while True:
        failing = [n for n, link in service.links.items() if link.failing_since is not None]
        if not failing or time.monotonic() >= deadline:
            return health
        time.sleep(min(RETRY_INTERVAL_S, max(0.0, deadline - time.monotonic())))
        start = time.monotonic()
        service.apply(service.poller.poll(failing))
        health = service.assess(health.elapsed_s + time.monotonic() - start)


def exit_status(health: ClusterHealth) -> int:
    ok = all(n.status in (Status.HEALTHY, Status.MAINTENANCE) for n in health.nodes)
    return EXIT_OK if ok else EXIT_FAILURE


def with_kernel_idle(health: ClusterHealth, path: Path) -> ClusterHealth:
    """Each kernel's idle time from the notebook gateway, when $EDGEJAR_NOTEBOOKS_TOKEN lets us ask it
    (docs/notebooks.md); without the token, or when the gateway does not answer, idle times stay unknown."""
    from runner.notebooks.client import locate, token_from_env

    token = token_from_env()
    if not token or not any(n.kernels for n in health.nodes):
        return health
    import datetime as dt

    from runner.notebooks.idle import idle_seconds

    try:
        idle = idle_seconds(locate(path, None, None, token, timeout_s=10).kernels(), dt.datetime.now(dt.UTC))
    except EdgejarError as exc:
        log.warning("kernels' idle times unknown: %s", exc)
        return health
    return replace(health, nodes=tuple(replace(n, kernel_idle_s=idle) for n in health.nodes))


def run(args: argparse.Namespace) -> int:
    th = thresholds(args)
    path = inventory_path(args)
    service = HealthService.from_inventory(path, th, nodes=args.node or None, timeout_s=args.timeout)
    try:
        health = poll_with_grace(service)
    finally:
        service.poller.shutdown()
    if args.prom is not None:
        metrics.write(args.prom, metrics.render(health))
    health = with_kernel_idle(health, path)
    if args.json:
        doc = {
            "inventory": str(path),
            "polled_at": health.polled_at,
            "elapsed_s": round(health.elapsed_s, 3),
            "grace_s": th.grace_s,
            "nodes": [n.to_json() for n in health.nodes],
        }
        print(json.dumps(doc, indent=2))
    else:
        print(f"inventory: {path}  (poll {health.elapsed_s:.2f} s)")
        print(table(report.table_rows(health), report.HEADER))
    return exit_status(health)
