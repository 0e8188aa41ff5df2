"""`python -m runner failover [NODE...]`: move the instances of UNAVAILABLE nodes to the others, then deploy
and launch them there (runner/planning/failover.py). Exit 0 done (or nothing to do), 1 deploy/launch
failed on a host (named) or not confirmed, 2 bad input or no room for the instances (nothing written then)."""

from __future__ import annotations

import argparse
import json
import logging
import sys
from pathlib import Path

from runner import inventory
from runner.commands.common import add_inventory, inventory_path
from runner.commands.health import poll_with_grace
from runner.commands.up import add_extra_vars, extra_vars
from runner.errors import EXIT_FAILURE, EXIT_OK, InputError
from runner.health.cluster import HealthService
from runner.health.model import Status
from runner.health.status import Thresholds
from runner.placement.policies import POLICIES
from runner.planning import failover, requirements

log = logging.getLogger(__name__)

GRACE_DEFAULT_S = 30.0  # the monitor's: a node is UNAVAILABLE only after SSH failed this long


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "failover",
        help="move the instances of UNAVAILABLE nodes to the others, deploy and launch them",
        description="Without NODE: poll every node (re-polling the unreachable ones for --grace seconds) and "
        "fail over each UNAVAILABLE one. With NODE: that node (refused if it answers, unless --force). "
        "Re-places the current placement with those nodes excluded (only their instances move, plus what "
        "the planner must displace), shows the moves, asks, writes host_vars and runs deploy.yml and "
        "launch.yml on the live nodes. Exit status: 0 done or nothing to do, 1 a host failed (named) or "
        "not confirmed, 2 bad input or no room elsewhere (nothing written).",
    )
    add_inventory(p)
    p.add_argument(
        "nodes", nargs="*", metavar="NODE", help="node(s) to fail over (default: every UNAVAILABLE)"
    )
    p.add_argument("--yes", "-y", action="store_true", help="do not ask for confirmation")
    p.add_argument("--dry-run", action="store_true", help="show the moves, write and run nothing")
    p.add_argument("--force", action="store_true", help="fail over NODE even if it answers (no poll)")
    p.add_argument(
        "--grace",
        type=float,
        default=GRACE_DEFAULT_S,
        metavar="S",
        help=f"a node is UNAVAILABLE after SSH failed for S seconds (default {GRACE_DEFAULT_S:g})",
    )
    p.add_argument(
        "--timeout", type=float, default=10.0, metavar="S", help="per-node poll timeout (default 10)"
    )
    p.add_argument("--policy", default="score", choices=sorted(POLICIES), help="placement objective")
    p.add_argument("--json", action="store_true", help="print one JSON object on stdout")
    add_extra_vars(p)
    p.set_defaults(func=run)


def unavailable(path: Path, nodes: list[str] | None, grace_s: float, timeout_s: float) -> dict[str, Status]:
    """node -> status after a poll with the grace period (only `nodes` when given)."""
    service = HealthService.from_inventory(
        path, Thresholds(grace_s=grace_s), nodes=nodes, timeout_s=timeout_s
    )
    try:
        health = poll_with_grace(service)
    finally:
        service.close()
    return {n.node: n.status for n in health.nodes}


def confirm(question: str) -> bool:
    print(f"{question} [y/N] ", end="", file=sys.stderr, flush=True)
    try:
        answer = sys.stdin.readline()
    except (OSError, ValueError):
        return False
    return answer.strip().lower() in ("y", "yes")


def dead_nodes(args: argparse.Namespace, path: Path, cluster: inventory.Cluster) -> list[str]:
    if args.nodes:
        failover.check_nodes(cluster, args.nodes)
        if args.force:
            return list(args.nodes)
        states = unavailable(path, list(args.nodes), args.grace, args.timeout)
        alive = {n: s for n, s in states.items() if s != Status.UNAVAILABLE}
        if alive:
            raise InputError(
                "failover: "
                + ", ".join(f"{n} is {s.value}" for n, s in sorted(alive.items()))
                + f" (it answers, or failed for less than --grace {args.grace:g} s); refusing to fail it "
                "over (--force does it anyway)"
            )
        return list(args.nodes)
    states = unavailable(path, None, args.grace, args.timeout)
    return sorted(n for n, s in states.items() if s == Status.UNAVAILABLE)


def run(args: argparse.Namespace) -> int:
    extra = extra_vars(args.extra_var)
    for name in ("grace", "timeout"):
        if getattr(args, name) < 0:
            raise InputError(f"--{name} must not be negative, got {getattr(args, name)}")
    if args.force and not args.nodes:
        raise InputError("--force needs the NODE(s) to fail over")
    path = inventory_path(args)
    cluster = inventory.load(path)
    dead = dead_nodes(args, path, cluster)
    doc: dict[str, object] = {"inventory": str(path), "dry_run": args.dry_run}
    if not dead:
        log.info("failover: no node is UNAVAILABLE: nothing to do")
        if args.json:
            print(json.dumps({**doc, "dead": [], "moves": []}, indent=2))
        return EXIT_OK
    the_plan = failover.plan(cluster, dead, requirements.project_root(), policy=args.policy)
    doc.update(the_plan.to_json())
    report = sys.stderr if args.json else sys.stdout
    print(f"failover of {', '.join(the_plan.dead)} (live: {', '.join(the_plan.live)})", file=report)
    for line in the_plan.describe():
        print(f"  {line}", file=report)
    if not the_plan.needed or args.dry_run:
        if args.dry_run and the_plan.needed:
            print("dry run: nothing written, nothing run", file=report)
        if args.json:
            print(json.dumps(doc, indent=2))
        return EXIT_OK
    if not args.yes and not confirm(
        f"Write the new placement and deploy + launch on {', '.join(the_plan.live)}?"
    ):
        log.warning("failover: not confirmed; nothing written")
        return EXIT_FAILURE
    outcome = failover.apply(the_plan, path, extravars=extra)
    doc.update(outcome.to_json())
    if args.json:
        print(json.dumps(doc, indent=2))
    log.info(
        "failover: wrote %d placement file(s); %s's stale units are removed by launch.yml the next time it "
        "is reachable (`python -m runner up` or playbooks/launch.yml)",
        len(outcome.written),
        ", ".join(the_plan.dead),
    )
    if the_plan.replicas or the_plan.left_out:
        log.info(
            "failover: serving replica(s) moved or removed (%s): the front door's replicas file was "
            "rewritten (frontdoor.yml, state replicas; the front door re-reads it, no restart)",
            ", ".join([*the_plan.replicas, *the_plan.left_out]),
        )
    failover.raise_for(outcome)
    return EXIT_OK
