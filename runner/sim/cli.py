"""`python -m runner sim up|down|status|inventory` (placeholder until the simulated cluster lands)."""

from __future__ import annotations

import argparse


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("sim", help="the simulated edge cluster on this machine")
    p.set_defaults(func=lambda _args: print("sim: not implemented yet") or 1)
