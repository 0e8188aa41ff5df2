"""Run a playbook of playbooks/ through ansible-runner with a per-host progress display.

On a terminal the display is a block of one line per host (task count, ok/changed/failed/unreachable,
current task), redrawn in place. Elsewhere (CI logs) a host's line is printed when it fails or is
unreachable, at most every `LOG_EVERY_S` seconds while it works, and once at the end of the run.
"""

from __future__ import annotations

import os
import shutil
import sys
import tempfile
import threading
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TextIO

from runner.errors import EdgejarError

ROOT = Path(__file__).resolve().parents[1]
PLAYBOOKS = ROOT / "playbooks"
LOG_EVERY_S = 15.0
REASON_CHARS = 300


@dataclass
class HostProgress:
    tasks: int = 0
    ok: int = 0
    changed: int = 0
    failed: int = 0
    unreachable: int = 0
    skipped: int = 0
    task: str = ""
    reason: str = ""  # of the first failure
    logged_at: float = 0.0

    def line(self, host: str, width: int) -> str:
        state = "UNREACHABLE" if self.unreachable else "FAILED" if self.failed else "ok"
        counts = (
            f"ok={self.ok} changed={self.changed} failed={self.failed} "
            f"unreachable={self.unreachable} skipped={self.skipped}"
        )
        return f"{host:<{width}}  task {self.tasks:>3}  {counts}  {state}  {self.task}".rstrip()


def reason_of(res: Mapping[str, Any]) -> str:
    """A short reason from a module result: its msg, and the end of stderr (or stdout) when there is one."""
    parts = [str(res[k]) for k in ("msg",) if res.get(k)]
    for key in ("stderr", "module_stderr", "stdout"):
        if res.get(key):
            parts.append(str(res[key]))
            break
    text = " ".join(" ".join(parts).split()) or "no message"
    return text if len(text) <= REASON_CHARS else "..." + text[-REASON_CHARS:]


@dataclass
class Progress:
    """ansible-runner event handler. Thread-safe: events may come from ansible-runner's threads."""

    out: TextIO = field(default_factory=lambda: sys.stderr)
    tty: bool | None = None
    hosts: dict[str, HostProgress] = field(default_factory=dict)
    # Module results kept for the caller: task name -> host -> the task's result (e.g. launch's reconcile).
    capture: frozenset[str] = frozenset()
    captured: dict[str, dict[str, Mapping[str, Any]]] = field(default_factory=dict)
    _lock: threading.Lock = field(default_factory=threading.Lock)
    _drawn: int = 0

    def __post_init__(self) -> None:
        if self.tty is None:
            self.tty = bool(getattr(self.out, "isatty", lambda: False)())

    def __call__(self, event: Mapping[str, Any]) -> bool:
        with self._lock:
            self._handle(event)
        return True  # keep the event (ansible-runner stores it)

    def _width(self) -> int:
        return max((len(h) for h in self.hosts), default=4)

    def _print(self, text: str) -> None:
        """A line above the block (terminal) or in the log."""
        if self.tty and self._drawn:
            self.out.write(f"\x1b[{self._drawn}F\x1b[J")
            self._drawn = 0
        self.out.write(text + "\n")
        if self.tty:
            self._draw()
        self.out.flush()

    def _draw(self) -> None:
        if self._drawn:
            self.out.write(f"\x1b[{self._drawn}F")
        width = self._width()
        cols = shutil.get_terminal_size((120, 20)).columns
        for host in sorted(self.hosts):
            self.out.write("\x1b[2K" + self.hosts[host].line(host, width)[: cols - 1] + "\n")
        self._drawn = len(self.hosts)
        self.out.flush()

    def _handle(self, event: Mapping[str, Any]) -> None:
        kind = event.get("event", "")
        data = event.get("event_data") or {}
        if kind == "playbook_on_play_start":
            self._print(f"play: {data.get('play', '')}")
            return
        if kind == "playbook_on_stats":
            self.finish()
            return
        host = data.get("host")
        if not host or not kind.startswith("runner_on_") or kind == "runner_on_start":
            return
        if data.get("task") in self.capture and kind in ("runner_on_ok", "runner_on_failed"):
            self.captured.setdefault(str(data["task"]), {})[host] = data.get("res") or {}
        p = self.hosts.setdefault(host, HostProgress())
        p.task = str(data.get("task", ""))
        problem = ""
        if kind == "runner_on_ok":
            p.tasks += 1
            p.ok += 1
            p.changed += bool(data.get("res", {}).get("changed"))
        elif kind == "runner_on_skipped":
            p.tasks += 1
            p.skipped += 1
        elif kind == "runner_on_failed":
            p.tasks += 1
            if data.get("ignore_errors"):
                p.ok += 1
            else:
                p.failed += 1
                problem = "failed"
        elif kind == "runner_on_unreachable":
            p.tasks += 1
            p.unreachable += 1
            problem = "unreachable"
        if problem:
            reason = f"{problem} at task '{p.task}': {reason_of(data.get('res', {}))}"
            p.reason = p.reason or reason
            self._print(f"{host}: {reason}")
            return
        now = time.monotonic()
        if self.tty:
            self._draw()
        elif now - p.logged_at >= LOG_EVERY_S:
            p.logged_at = now
            self.out.write(p.line(host, self._width()) + "\n")
            self.out.flush()

    def finish(self) -> None:
        """The final line per host (in the log; on a terminal the block is already there)."""
        if self.tty:
            self._draw()
            self._drawn = 0
            return
        width = self._width()
        for host in sorted(self.hosts):
            self.out.write(self.hosts[host].line(host, width) + "\n")
        self.out.flush()


@dataclass(frozen=True)
class PlaybookResult:
    playbook: str
    status: str
    rc: int
    hosts: dict[str, HostProgress]

    @property
    def failed_hosts(self) -> dict[str, str]:
        """host -> reason, for every host that failed or was unreachable."""
        return {h: p.reason for h, p in sorted(self.hosts.items()) if p.failed or p.unreachable}

    @property
    def ok(self) -> bool:
        return self.status == "successful" and not self.failed_hosts

    def raise_for_failures(self) -> None:
        if self.ok:
            return
        bad = self.failed_hosts
        if not bad:
            raise EdgejarError(
                f"{self.playbook}: ansible-runner finished with status {self.status} (rc {self.rc})"
            )
        lines = "\n".join(f"  {h}: {r}" for h, r in bad.items())
        raise EdgejarError(f"{self.playbook} failed on {len(bad)} host(s): {', '.join(bad)}\n{lines}")


def playbook_path(name: str) -> Path:
    path = PLAYBOOKS / name
    if not path.is_file():
        raise EdgejarError(f"{path} does not exist (this checkout does not have that playbook)")
    return path


def run_playbook(
    name: str,
    inventory: Path,
    *,
    extravars: Mapping[str, Any] | None = None,
    limit: str | None = None,
    cmdline: Sequence[str] = (),
    progress: Progress | None = None,
) -> PlaybookResult:
    """Run playbooks/<name> on `inventory` with the repository's ansible.cfg. Host failures are in the
    result (`raise_for_failures`), not raised."""
    import ansible_runner

    playbook_path(name)
    if not inventory.exists():
        raise EdgejarError(f"inventory {inventory} does not exist")
    progress = progress or Progress()
    bin_dir = str(Path(sys.executable).parent)
    envvars = {
        "ANSIBLE_CONFIG": str(ROOT / "ansible.cfg"),
        "PATH": f"{bin_dir}:{os.environ.get('PATH', '')}",
        # ansible-runner sets ANSIBLE_HOST_KEY_CHECKING=False unless it is given: host keys are checked.
        "ANSIBLE_HOST_KEY_CHECKING": "True",
    }
    private = tempfile.mkdtemp(prefix="edgejar-ansible-runner-")
    try:
        r = ansible_runner.run(
            private_data_dir=private,
            project_dir=str(PLAYBOOKS),
            playbook=name,
            inventory=str(inventory.resolve()),
            envvars=envvars,
            extravars=dict(extravars or {}),
            limit=limit,
            cmdline=" ".join(cmdline) or None,
            quiet=True,
            event_handler=progress,
        )
    finally:
        shutil.rmtree(private, ignore_errors=True)
    return PlaybookResult(name, str(r.status), int(r.rc or 0), dict(progress.hosts))
