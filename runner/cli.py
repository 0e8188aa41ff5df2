"""Top-level argument parser. Each command lives in its own module and registers itself here."""

from __future__ import annotations

import argparse
import importlib
import sys
from collections.abc import Sequence

from runner import __version__
from runner.errors import EdgejarError

# Modules that expose `register(subparsers) -> None`; each sets `func` on its parser.
COMMAND_MODULES: tuple[str, ...] = (
    "runner.commands.validate",
    "runner.commands.place",
    "runner.commands.health",
    "runner.commands.monitor",
    "runner.commands.up",
    "runner.commands.failover",
    "runner.commands.down",
    "runner.commands.collect",
    "runner.commands.results",
    "runner.commands.report",
    "runner.commands.bench",
    "runner.commands.model",
    "runner.commands.sim",
)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m runner",
        description="edgejar: place, deploy, run and watch LLM experiments on an edge cluster.",
    )
    parser.add_argument("--version", action="version", version=f"edgejar {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)
    for name in COMMAND_MODULES:
        importlib.import_module(name).register(sub)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    try:
        args = parser.parse_args(argv)
    except SystemExit as exc:  # argparse exits 2 on usage errors already; keep its status
        return int(exc.code or 0)
    try:
        return int(args.func(args) or 0)
    except EdgejarError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return exc.exit_status
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130
    except BrokenPipeError:
        return 0
