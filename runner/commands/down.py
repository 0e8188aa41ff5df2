"""`python -m runner down`: stop experiment instances and training units (all, or some experiments, jobs,
instances or units)."""

from __future__ import annotations

import argparse
import logging

from runner import ansible_bridge, names
from runner.commands.common import add_inventory, inventory_path
from runner.commands.up import add_extra_vars, extra_vars
from runner.errors import InputError

log = logging.getLogger(__name__)

STOP_PLAYBOOK = "stop.yml"


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "down",
        help="stop experiment instances and training units (all by default)",
        description="Run playbooks/stop.yml: every instance and training unit is stopped gracefully "
        "(SIGTERM, an instance's life ends as `stopped`; units disabled), or only --experiment's (an "
        "experiment or a training job) or --instance (an instance or a training unit). Exit 1 names hosts "
        "that failed or were unreachable; 2 bad input.",
    )
    add_inventory(p)
    which = p.add_mutually_exclusive_group()
    which.add_argument(
        "--experiment", metavar="NAME", help="only this experiment's instances (or training job's units)"
    )
    which.add_argument("--instance", metavar="ID", help="only this instance (or training unit)")
    add_extra_vars(p)
    p.set_defaults(func=run)


def selection(experiment: str | None, instance: str | None) -> dict[str, object]:
    """stop.yml's selection variables: exactly one of edgejar_stop_{instance,experiment,all}."""
    for flag, value in (("--experiment", experiment), ("--instance", instance)):
        bad = None if value is None else names.problem(value)
        if bad:
            raise InputError(f"{flag}: {bad}")
    if instance:
        return {"edgejar_stop_instance": instance}
    if experiment:
        return {"edgejar_stop_experiment": experiment}
    return {"edgejar_stop_all": True}


def run(args: argparse.Namespace) -> int:
    extra = {**selection(args.experiment, args.instance), **extra_vars(args.extra_var)}
    ansible_bridge.playbook_path(STOP_PLAYBOOK)
    log.info("==> %s", STOP_PLAYBOOK)
    ansible_bridge.run_playbook(STOP_PLAYBOOK, inventory_path(args), extravars=extra).raise_for_failures()
    return 0
