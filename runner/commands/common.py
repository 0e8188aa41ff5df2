"""Argument helpers shared by the planner commands."""

from __future__ import annotations

import argparse
from pathlib import Path

from runner.inventory import default_inventory


def add_inventory(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "-i",
        "--inventory",
        type=Path,
        default=None,
        metavar="INVENTORY",
        help="Ansible inventory file (default: $EDGEJAR_INVENTORY or ./inventory)",
    )


def inventory_path(args: argparse.Namespace) -> Path:
    return args.inventory if args.inventory is not None else default_inventory()


def table(rows: list[list[str]], header: list[str]) -> str:
    widths = [max(len(str(r[c])) for r in [header, *rows]) for c in range(len(header))]
    lines = [
        "  ".join(str(v).ljust(w) for v, w in zip(r, widths, strict=True)).rstrip() for r in [header, *rows]
    ]
    lines.insert(1, "  ".join("-" * w for w in widths))
    return "\n".join(lines)
