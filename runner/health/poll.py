"""Poll nodes: the probe over each node's persistent SSH connection, all nodes at once, with a per-node
timeout. Also runs other short commands (actions) and log followers over the same connections."""

from __future__ import annotations

import subprocess
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

from runner.health import probe, ssh
from runner.health.model import PollResult
from runner.health.parse import ProbeError, parse
from runner.health.targets import Target

DEFAULT_TIMEOUT_S = 10.0
PROBE_COMMAND = ["python3", "-I", "-S", "-"]  # isolated, no site: stdlib only, faster start


def probe_source() -> str:
    return Path(probe.__file__).read_text(encoding="utf-8")


class Poller:
    """Holds the nodes' targets and their control sockets; `close()` ends the masters it may have started."""

    def __init__(
        self,
        targets: dict[str, Target],
        *,
        timeout_s: float = DEFAULT_TIMEOUT_S,
        persist_s: int = ssh.PERSIST_S,
        control_dir: Path | None = None,
    ) -> None:
        self.targets = dict(targets)
        self.timeout_s = timeout_s
        self.persist_s = persist_s
        self.control_dir = control_dir or ssh.runtime_dir()
        self._source = probe_source()
        self._pool = ThreadPoolExecutor(max_workers=max(1, len(targets)), thread_name_prefix="edgejar-poll")

    def control(self, node: str) -> Path:
        return ssh.control_path(self.control_dir, self.targets[node])

    def argv(self, node: str, remote: list[str]) -> list[str]:
        target = self.targets[node]
        if target.local:
            return ssh.local_argv(remote)
        return ssh.ssh_argv(target, remote, self.control(node), persist_s=self.persist_s)

    def run(
        self, node: str, remote: list[str], *, stdin: str | None = None, timeout_s: float | None = None
    ) -> subprocess.CompletedProcess[str]:
        """Run a command on a node. Raises subprocess.TimeoutExpired after the timeout."""
        return subprocess.run(
            self.argv(node, remote),
            input=stdin,
            stdin=None if stdin is not None else subprocess.DEVNULL,
            capture_output=True,
            text=True,
            timeout=timeout_s or self.timeout_s,
            check=False,
        )

    def popen(self, node: str, remote: list[str]) -> subprocess.Popen[str]:
        """A long-running command (a log follower) over the node's connection; the caller ends it."""
        return subprocess.Popen(
            self.argv(node, remote),
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
            bufsize=1,
        )

    def poll_node(self, node: str) -> PollResult:
        start = time.monotonic()
        try:
            proc = self.run(node, PROBE_COMMAND, stdin=self._source)
        except subprocess.TimeoutExpired:
            now = time.monotonic()
            return PollResult(
                node, now, now - start, error=f"no answer in {self.timeout_s:g} s", unreachable=True
            )
        except OSError as exc:
            now = time.monotonic()
            return PollResult(node, now, now - start, error=f"cannot run ssh: {exc}", unreachable=True)
        now = time.monotonic()
        err = (proc.stderr.strip().splitlines() or [f"exit status {proc.returncode}"])[-1]
        if proc.returncode == ssh.SSH_UNREACHABLE and not self.targets[node].local:
            return PollResult(node, now, now - start, error=err, unreachable=True)
        if proc.returncode != 0:
            return PollResult(node, now, now - start, error=f"probe exited {proc.returncode}: {err}")
        try:
            return PollResult(node, now, now - start, sample=parse(proc.stdout))
        except ProbeError as exc:
            return PollResult(node, now, now - start, error=str(exc))

    def poll(self, nodes: list[str] | None = None) -> dict[str, PollResult]:
        """Every node (or the given ones) at once; returns node -> result in the targets' order."""
        names = [n for n in self.targets if nodes is None or n in nodes]
        return dict(zip(names, self._pool.map(self.poll_node, names), strict=True))

    def shutdown(self) -> None:
        """Stop the thread pool; the SSH masters stay for ControlPersist seconds (the next run reuses
        them)."""
        self._pool.shutdown(wait=False, cancel_futures=True)

    def close(self) -> None:
        """End the SSH masters of these nodes (in parallel) and the thread pool."""
        remote = [self.control(n) for n, t in self.targets.items() if not t.local]
        list(self._pool.map(ssh.close_master, remote))
        self.shutdown()
