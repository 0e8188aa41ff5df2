"""Small helpers around subprocess and /proc used by every part of the simulated cluster."""

from __future__ import annotations

import contextlib
import logging
import os
import signal
import subprocess
import time
from collections.abc import Mapping, Sequence
from pathlib import Path

from runner.errors import EdgejarError

_log = logging.getLogger(__name__)


def log(message: str) -> None:
    """Progress and diagnostics go to the log (stderr): stdout is kept for output that scripts read."""
    _log.info("sim: %s", message)


def run(
    cmd: Sequence[str],
    *,
    check: bool = True,
    input_text: str | None = None,
    timeout: float | None = 120,
    env: Mapping[str, str] | None = None,
    cwd: Path | None = None,
) -> subprocess.CompletedProcess[str]:
    """Run a command, capture its output and turn a failure into an EdgejarError naming the command."""
    full_env = None if env is None else {**os.environ, **env}
    try:
        proc = subprocess.run(
            list(cmd),
            input=input_text,
            capture_output=True,
            text=True,
            timeout=timeout,
            env=full_env,
            cwd=cwd,
            check=False,
        )
    except FileNotFoundError as exc:
        raise EdgejarError(f"command not found: {cmd[0]}") from exc
    except subprocess.TimeoutExpired as exc:
        raise EdgejarError(f"`{' '.join(cmd)}` did not finish within {timeout} s") from exc
    if check and proc.returncode != 0:
        detail = (proc.stderr or proc.stdout).strip().splitlines()[-5:]
        raise EdgejarError(
            f"`{' '.join(cmd)}` failed with exit status {proc.returncode}: {' / '.join(detail)}"
        )
    return proc


def start_time(pid: int) -> int | None:
    """Start time of a process in clock ticks since boot (field 22 of /proc/PID/stat), None if gone.

    Saved next to every PID the sim records, so that a later `sim down` never signals a recycled PID.
    """
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    # The command name (field 2) may contain spaces and parentheses: split after the last ')'.
    fields = stat[stat.rindex(")") + 2 :].split()
    return int(fields[19])


def is_same_process(pid: int | None, started: int | None) -> bool:
    """True if PID is alive (not a zombie) and is the process recorded with that start time."""
    if pid is None or started is None or start_time(pid) != started:
        return False
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return False
    return stat[stat.rindex(")") + 2 :].split()[0] != "Z"  # a zombie has exited: only its entry is left


def children(pid: int) -> list[int]:
    """Direct children of a process (from /proc/PID/task/*/children)."""
    found: list[int] = []
    for task in Path(f"/proc/{pid}/task").glob("*"):
        try:
            found.extend(int(p) for p in (task / "children").read_text().split())
        except OSError:
            continue
    return found


def signal_pid(pid: int, sig: signal.Signals) -> None:
    with contextlib.suppress(ProcessLookupError):
        os.kill(pid, sig)


def wait_gone(pid: int, started: int | None, timeout: float) -> bool:
    """Wait until the recorded process has exited; True if it did within the timeout."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        with contextlib.suppress(ChildProcessError):  # our own child (a failed `sim up`): reap it
            os.waitpid(pid, os.WNOHANG)
        if not is_same_process(pid, started):
            return True
        time.sleep(0.1)
    return not is_same_process(pid, started)
