"""`python -m runner down`: stop experiment instances (all, or some experiments or instances)."""

from __future__ import annotations

import argparse
import sys

from runner import ansible_bridge
from runner.commands.common import add_inventory, inventory_path
from runner.commands.up import add_extra_vars, extra_vars
from runner.errors import InputError

STOP_PLAYBOOK = "stop.yml"


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "down",
        help="stop experiment instances (all by default)",
        description="Run playbooks/stop.yml: every instance unit is stopped gracefully (SIGTERM, the life "
        "ends as `stopped`), or only those of --experiment / --instance. Exit 1 names hosts that failed.",
    )
    add_inventory(p)
    p.add_argument("--experiment", action="append", default=[], metavar="NAME", help="only this experiment")
    p.add_argument("--instance", action="append", default=[], metavar="ID", help="only this instance")
    add_extra_vars(p)
    p.set_defaults(func=run)


def selection(experiments: list[str], instances: list[str]) -> dict[str, list[str]]:
    """stop.yml's selection variables (none: every instance)."""
    for value in [*experiments, *instances]:
        if not value or not all(c.isalnum() or c in "_.-" for c in value):
            raise InputError(f"{value!r}: experiment and instance names are letters, digits, _ . -")
    out: dict[str, list[str]] = {}
    if experiments:
        out["edgejar_stop_experiments"] = experiments
    if instances:
        out["edgejar_stop_instances"] = instances
    return out


def run(args: argparse.Namespace) -> int:
    extra = {**selection(args.experiment, args.instance), **extra_vars(args.extra_var)}
    ansible_bridge.playbook_path(STOP_PLAYBOOK)
    print(f"==> {STOP_PLAYBOOK}", file=sys.stderr)
    ansible_bridge.run_playbook(STOP_PLAYBOOK, inventory_path(args), extravars=extra).raise_for_failures()
    return 0
