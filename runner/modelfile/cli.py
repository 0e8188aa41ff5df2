"""`python -m runner model ...` (placeholder)."""

from __future__ import annotations

import argparse


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("model", help="GGUF model helpers")
    p.set_defaults(func=lambda _args: print("model: not implemented yet") or 1)
