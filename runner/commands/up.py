"""`python -m runner up EXPERIMENT_FILE...`: place, deploy and launch in one command.

Place is `runner place` (same options, same output, same exit 2 on bad input, nothing written then);
playbooks/up.yml (deploy.yml + launch.yml in one run) runs through ansible-runner with a per-host
progress display. A host that fails or cannot be reached makes the command exit 1, naming the hosts and
the reasons.
"""

from __future__ import annotations

import argparse
import logging
import time
from pathlib import Path
from typing import Any

import yaml

from runner import ansible_bridge, deployed
from runner.commands import launched, place
from runner.commands.common import add_inventory, inventory_path
from runner.errors import InputError
from runner.experiment import load_files
from runner.inventory import load as load_cluster
from runner.placement.policies import POLICIES

log = logging.getLogger(__name__)

PLAYBOOKS = ("up.yml", "launch.yml")  # up.yml: deploy.yml + launch.yml in one run; launch.yml alone
# The extra variables that carry runner/deployed.py's fingerprints (node -> fingerprint) to the roles:
# deploy records its node's in the stamp file, launch checks the stamp against its node's first.
FINGERPRINT_VAR = "edgejar_up_fingerprints"
EXPECT_VAR = "edgejar_up_expect_deployed"


def add_extra_vars(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "-e",
        "--extra-var",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="an Ansible extra variable for the playbooks (VALUE is read as YAML; repeatable)",
    )


def extra_vars(values: list[str]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for value in values:
        key, sep, raw = value.partition("=")
        if not sep or not key.isidentifier():
            raise InputError(f"-e {value}: expected KEY=VALUE with KEY a variable name")
        try:
            out[key] = yaml.safe_load(raw) if raw else ""
        except yaml.YAMLError as exc:
            raise InputError(f"-e {value}: VALUE is not valid YAML ({exc})") from None
    return out


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "up",
        help="place, deploy and launch experiments (one command)",
        description="Place the experiments' instances (as `place`), then run playbooks/up.yml "
        "(deploy.yml and launch.yml in one run) with a per-host progress display. Exit status: 0 all hosts "
        "done, 1 a host failed or was unreachable (named, with the reason), 2 bad input (nothing written).",
    )
    add_inventory(p)
    p.add_argument("experiments", nargs="+", type=Path, metavar="EXPERIMENT_FILE")
    p.add_argument("--policy", default="score", choices=sorted(POLICIES), help="placement objective")
    p.add_argument("--pin", action="append", default=[], metavar="ID=NODE", help="pin an instance to a node")
    p.add_argument("--exclude", action="append", default=[], metavar="NODE", help="keep instances off a node")
    p.add_argument("--rebalance", action="store_true", help="re-score everything instead of keeping put")
    p.add_argument("--timeout", type=float, default=10.0, metavar="S", help="bound on the exact search (s)")
    deploy = p.add_mutually_exclusive_group()
    deploy.add_argument(
        "--skip-deploy", action="store_true", help="place and launch only (code and models as they are)"
    )
    deploy.add_argument(
        "--deploy",
        action="store_true",
        help="deploy even when nothing changed since the last deploy (by default an unchanged deploy is "
        "skipped: see docs/e2e.md)",
    )
    p.add_argument(
        "--watch",
        nargs="?",
        type=float,
        const=30.0,
        default=None,
        metavar="S",
        help="then stream the journals of the instances launch started or restarted for S seconds "
        "(default 30; Ctrl-C stops)",
    )
    add_extra_vars(p)
    p.set_defaults(func=run)


def models_per_node(inventory: Path) -> dict[str, list[str]]:
    """node -> the models its placement (as just written) needs: what deploy delivers there."""
    return {
        cn.node.name: sorted({str(e["model"]) for e in cn.placed if isinstance(e, dict) and e.get("model")})
        for cn in load_cluster(inventory).nodes
    }


def _playbook(
    name: str, inventory: Path, extra: dict[str, Any]
) -> tuple[ansible_bridge.PlaybookResult, dict[str, Any]]:
    progress = ansible_bridge.Progress(capture=frozenset({launched.RECONCILE_TASK}))
    result = ansible_bridge.run_playbook(name, inventory, extravars=extra, progress=progress)
    return result, dict(progress.captured.get(launched.RECONCILE_TASK, {}))


def run(args: argparse.Namespace) -> int:
    extra = extra_vars(args.extra_var)
    missing = [str(f) for f in args.experiments if not f.is_file()]
    if missing:
        raise InputError(f"experiment file(s) not found: {', '.join(missing)}")
    load_files(args.experiments)  # bad input exits 2 before any playbook is looked for
    for name in PLAYBOOKS:
        ansible_bridge.playbook_path(name)  # before anything is written
    inventory = inventory_path(args)
    place_args = argparse.Namespace(
        inventory=inventory,
        experiments=args.experiments,
        policy=args.policy,
        pin=args.pin,
        exclude=args.exclude,
        rebalance=args.rebalance,
        explain=False,
        dry_run=False,
        json=False,
        timeout=args.timeout,
    )
    log.info("==> place")
    t0 = time.monotonic()
    place.run(place_args)
    timings = {"place": time.monotonic() - t0}
    t0 = time.monotonic()
    if args.skip_deploy:
        log.info("\n==> launch.yml (launch)")
        name, deploy = "launch.yml", False
        result, reconciled = _playbook(name, inventory, extra)
    else:
        want = deployed.fingerprints(inventory, models_per_node(inventory), extra)
        deploy = args.deploy or not deployed.unchanged(inventory, want)
        if not deploy:  # the nodes must hold what was deployed: launch checks each one's stamp first
            log.info("\n==> launch.yml (launch; nothing changed since the last deploy)")
            name = "launch.yml"
            result, reconciled = _playbook(name, inventory, {**extra, EXPECT_VAR: want})
            stale = sorted(n for n, res in reconciled.items() if res.get("not_deployed"))
            for node in stale:
                log.info("up: %s: %s", node, reconciled[node].get("msg"))
            if stale:
                log.info("up: deploying to every node, then launching again")
                timings[name], t0, deploy = time.monotonic() - t0, time.monotonic(), True
        if deploy:
            log.info("\n==> up.yml (deploy + launch)")
            name = "up.yml"
            result, reconciled = _playbook(name, inventory, {**extra, FINGERPRINT_VAR: want})
            failed = set(result.failed_hosts)
            deployed.remember(inventory, {n: f for n, f in want.items() if n not in failed}, forget=failed)
    timings[name] = time.monotonic() - t0
    instances = launched.from_results(reconciled)
    removed = {node: list(res.get("removed") or []) for node, res in reconciled.items()}
    log.info("\n".join(["", *(f"up: {line}" for line in launched.summary(instances, removed))]))
    result.raise_for_failures()
    spent = " ".join(f"{k}={v:.2f}" for k, v in timings.items())
    what = "placed, deployed, launched" if deploy else "placed, launched"
    log.info("\nup: %s (seconds: %s)", what, spent)
    if args.watch is not None:
        launched.watch(inventory, instances, args.watch)
    else:
        log.info("up: `--watch` follows what changed; `python -m runner monitor` watches; `python -m runner "
                 "collect` fetches the results")  # fmt: skip
    return 0
