"""`python -m runner report [EXPERIMENT...]`: one self-contained HTML report per collected experiment."""

from __future__ import annotations

import argparse
import logging
from pathlib import Path

from runner import inventory
from runner.commands.results import add_results_dir
from runner.errors import EdgejarError, InputError
from runner.results import report, summary

log = logging.getLogger(__name__)


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "report",
        help="write results/<experiment>/report.html (timeline, memory, messages, the mode's outcome)",
        description="Write one self-contained HTML file per experiment (inline SVG pictures, nothing loaded "
        "from the network): the timeline per instance with lives, deaths and their causes, restarts and "
        "interventions; memory per instance against its MemoryMax and per node against its RAM; who talked "
        "to whom; the mode's outcome over time; what the instances said; provenance. Reads "
        "results/<experiment>/results.sqlite3 (written by `collect`). Needs matplotlib (the `report` "
        "extra; `make venv` installs it).",
    )
    p.add_argument("experiments", nargs="*", metavar="EXPERIMENT", help="only these (default: all collected)")
    add_results_dir(p)
    p.add_argument(
        "-i",
        "--inventory",
        type=Path,
        default=None,
        help="the inventory the run used: node RAM and the model catalog for the report (optional)",
    )
    p.set_defaults(func=run)


def write(results_dir: Path, names: list[str] | None, inventory_file: Path | None) -> list[Path]:
    """Write the reports; print where. An inventory that cannot be read is named and left out."""
    cluster = None
    if inventory_file is not None:
        try:
            cluster = inventory.load(inventory_file)
        except EdgejarError as exc:
            log.warning("report: without node RAM and model catalog: %s", exc)
    found = summary.find(results_dir, names)
    paths = report.write(results_dir, list(found), cluster)
    for path in paths:
        log.info("report: %s", path)
    return paths


def run(args: argparse.Namespace) -> int:
    if args.results.exists() and not args.results.is_dir():
        raise InputError(f"--results {args.results}: not a directory")
    names = args.experiments or None
    known = summary.find(args.results)
    if names:
        unknown = [n for n in names if n not in known]
        if unknown:
            raise InputError(
                f"no results for {', '.join(unknown)} under {args.results} "
                f"(collected: {', '.join(known) or 'none'}; run `python -m runner collect`)"
            )
    elif not known:
        raise InputError(f"no results under {args.results} (run `python -m runner collect`)")
    write(args.results, names, args.inventory)
    return 0
