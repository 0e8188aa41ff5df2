"""`python -m runner collect`: fetch every node's records and logs, merge them per experiment, summarise."""

from __future__ import annotations

import argparse
import logging
from pathlib import Path

from runner import ansible_bridge
from runner.commands import report
from runner.commands.common import add_inventory, inventory_path
from runner.commands.results import add_results_dir, show
from runner.commands.up import add_extra_vars, extra_vars
from runner.errors import EdgejarError, InputError
from runner.results.merge import DB_NAME

log = logging.getLogger(__name__)

COLLECT_PLAYBOOK = "collect.yml"


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "collect",
        help="fetch records and logs from every node, merge them, print the summary",
        description="Run playbooks/collect.yml (a consistent snapshot of each node's records database and "
        "its instances' journal, fetched and merged into results/<experiment>/results.sqlite3 with the "
        "node on every row; collecting again adds nothing twice; when a node's records started afresh, the "
        "earlier run's results move to results/previous-<time>/), then print the summary and write "
        "results/<experiment>/report.html (`runner report`). A node that "
        "cannot be reached is named and the others are collected (exit 1).",
    )
    add_inventory(p)
    add_results_dir(p)
    p.add_argument("--json", action="store_true", help="print the summary as one JSON object on stdout")
    p.add_argument(
        "--no-report", action="store_true", help="do not write results/<experiment>/report.html afterwards"
    )
    add_extra_vars(p)
    p.set_defaults(func=run)


def earlier_runs(results: Path) -> set[Path]:
    """results/previous-<time>/<experiment> directories (where the merge moves an earlier run)."""
    return {p.parent for p in results.glob(f"previous-*/*/{DB_NAME}")}


def run(args: argparse.Namespace) -> int:
    if args.results.exists() and not args.results.is_dir():
        raise InputError(f"--results {args.results}: not a directory")
    extra = {"edgejar_collect_results_dir": str(args.results.resolve()), **extra_vars(args.extra_var)}
    ansible_bridge.playbook_path(COLLECT_PLAYBOOK)
    log.info("==> %s", COLLECT_PLAYBOOK)
    before = earlier_runs(args.results)
    result = ansible_bridge.run_playbook(COLLECT_PLAYBOOK, inventory_path(args), extravars=extra)
    log.info("")
    for moved in sorted(earlier_runs(args.results) - before):
        log.warning(
            "collect: a node's records started afresh (a new run); the earlier run's results are in %s", moved
        )
    show(args.results, None, args.json)
    if not args.no_report:
        try:
            report.write(args.results, None, inventory_path(args))
        except EdgejarError as exc:  # matplotlib missing: the results are collected all the same
            log.warning("collect: no report: %s", exc)
    try:
        result.raise_for_failures()
    except EdgejarError as exc:
        log.error("\ncollect: the others were collected; %s", exc)
        return exc.exit_status
    return 0
