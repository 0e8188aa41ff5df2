"""The controller side's messages. What a command tells the user besides its result (progress steps,
notes, warnings, errors) goes through `logging`, logger "runner" and its children, to standard error as
plain lines; a command's result (tables, JSON, paths asked for) stays on standard output, and the
playbook progress display (runner/ansible_bridge.py) is not a log. `python -m runner -q COMMAND` shows
warnings and errors alone, `-v` adds debug detail. Each module logs to `logging.getLogger(__name__)`.
The node runtime (runner/node) configures its own logging in its own process."""

from __future__ import annotations

import logging
import sys
from typing import TextIO

LOGGER = "runner"


class _Stderr(logging.StreamHandler):  # type: ignore[type-arg]
    """Writes to whatever sys.stderr is when a line is written (a redirected or captured stream)."""

    def __init__(self) -> None:
        super().__init__(sys.stderr)

    @property  # type: ignore[override]
    def stream(self) -> TextIO:
        return sys.stderr

    @stream.setter
    def stream(self, _value: TextIO) -> None:  # StreamHandler sets it once; the property wins
        pass


def level(verbose: int, quiet: int) -> int:
    """The level for -v/-q counts: -q warnings and errors, -qq errors alone, -v debug."""
    if quiet:
        return logging.WARNING if quiet == 1 else logging.ERROR
    return logging.DEBUG if verbose else logging.INFO


def setup(at: int = logging.INFO) -> logging.Logger:
    """Send the runner's messages to standard error at level `at` (again: only the level changes)."""
    root = logging.getLogger(LOGGER)
    if not any(isinstance(h, _Stderr) for h in root.handlers):
        handler = _Stderr()
        handler.setFormatter(logging.Formatter("%(message)s"))
        root.addHandler(handler)
    root.setLevel(at)
    root.propagate = False
    return root
