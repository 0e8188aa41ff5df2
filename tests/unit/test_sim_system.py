"""Process bookkeeping of the sim: a recorded PID that has exited is gone, even while it is a zombie."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path

from runner.sim.system import is_same_process, start_time, wait_gone


def _state(pid: int) -> str:
    stat = Path(f"/proc/{pid}/stat").read_text()
    return stat[stat.rindex(")") + 2 :].split()[0]


def test_an_exited_unreaped_child_is_not_running_and_wait_gone_reaps_it() -> None:
    child = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(0.5)"])
    started = start_time(child.pid)
    assert is_same_process(child.pid, started)
    deadline = time.monotonic() + 30
    while _state(child.pid) != "Z":  # exited; nobody has waited for it yet
        assert time.monotonic() < deadline
        time.sleep(0.05)
    assert not is_same_process(child.pid, started)
    assert wait_gone(child.pid, started, 5)
    assert not Path(f"/proc/{child.pid}").exists()  # reaped: no entry left
    child.returncode = 0  # already reaped by wait_gone: keep Popen from waiting again


def test_a_recycled_pid_is_not_the_recorded_process() -> None:
    me = os.getpid()
    started = start_time(me)
    assert started is not None and is_same_process(me, started)
    assert not is_same_process(me, started + 1)
