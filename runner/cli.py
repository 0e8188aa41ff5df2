"""Top-level argument parser. Each command lives in its own module and registers itself here."""

from __future__ import annotations

import argparse
import importlib
import logging
import sys
from collections.abc import Sequence

from runner import __version__, logs
from runner.errors import EdgejarError

log = logging.getLogger(__name__)

# Modules that expose `register(subparsers) -> None`; each registers the command of its own name and sets
# `func` on its parser. Only the named command's module is imported (a command line starts faster);
# without one (`--help`, `--version`, a typo) all are, so that argparse can list them.
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
    "runner.commands.serve",
    "runner.commands.kernels",
)


def build_parser(command: str | None = None) -> argparse.ArgumentParser:
    """The parser for every command, or for `command` alone when it names one."""
    modules = [m for m in COMMAND_MODULES if m.rsplit(".", 1)[1] == command] or COMMAND_MODULES
    parser = argparse.ArgumentParser(
        prog="python -m runner",
        description="edgejar: place, deploy, run and watch LLM experiments on an edge cluster.",
    )
    parser.add_argument("--version", action="version", version=f"edgejar {__version__}")
    parser.add_argument(
        "-v", "--verbose", action="count", default=0, help="more detail on stderr (debug messages)"
    )
    parser.add_argument(
        "-q", "--quiet", action="count", default=0,
        help="only warnings and errors on stderr (-qq: errors alone); results on stdout are unchanged",
    )  # fmt: skip
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)
    for name in modules:
        importlib.import_module(name).register(sub)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args_in = list(sys.argv[1:] if argv is None else argv)
    parser = build_parser(next((a for a in args_in if not a.startswith("-")), None))
    try:
        args = parser.parse_args(args_in)
    except SystemExit as exc:  # argparse exits 2 on usage errors already; keep its status
        return int(exc.code or 0)
    logs.setup(logs.level(args.verbose, args.quiet))
    try:
        return int(args.func(args) or 0)
    except EdgejarError as exc:
        log.error("error: %s", exc)
        return exc.exit_status
    except KeyboardInterrupt:
        log.error("interrupted")
        return 130
    except BrokenPipeError:
        return 0
