"""`python -m runner results [EXPERIMENT...]`: the summary of collected results (results/<experiment>/)."""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from runner.ansible_bridge import ROOT
from runner.errors import InputError
from runner.results import summary


def add_results_dir(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "--results",
        type=Path,
        default=ROOT / "results",
        metavar="DIR",
        help="the results directory (default: results/ in the repository)",
    )


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "results",
        help="summarise collected results",
        description="Per instance: node, lives, deaths and their causes, cycles, tokens/s, messages sent and "
        "received; per experiment the mode's outcome (identity claims, payoff table, consensus rounds, "
        "observations). Reads results/<experiment>/results.sqlite3 (written by `collect`).",
    )
    p.add_argument("experiments", nargs="*", metavar="EXPERIMENT", help="only these (default: all collected)")
    add_results_dir(p)
    p.add_argument("--json", action="store_true", help="print one JSON object on stdout")
    p.set_defaults(func=run)


def show(results_dir: Path, names: list[str] | None, as_json: bool) -> None:
    doc = summary.build(results_dir, names)
    print(json.dumps(doc, indent=2, sort_keys=True) if as_json else summary.render(doc))


def run(args: argparse.Namespace) -> int:
    if args.results.exists() and not args.results.is_dir():
        raise InputError(f"--results {args.results}: not a directory")
    names = args.experiments or None
    if names:
        known = summary.find(args.results)
        unknown = [n for n in names if n not in known]
        if unknown:
            raise InputError(
                f"no results for {', '.join(unknown)} under {args.results} "
                f"(collected: {', '.join(known) or 'none'}; run `python -m runner collect`)"
            )
    show(args.results, names, args.json)
    return 0
