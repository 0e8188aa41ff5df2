"""A few instances as real processes on loopback addresses, with their configs, logs and records."""

from __future__ import annotations

import json
import os
import signal
import socket
import sqlite3
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from runner.node import records

ROOT = Path(__file__).resolve().parents[2]
BOUND_S = 60.0  # an upper bound for things that take well under a second here: never a speed assertion


def free_port(address: str) -> int:
    with socket.socket() as s:
        s.bind((address, 0))
        return int(s.getsockname()[1])


def wait_until(what: str, check: Callable[[], Any], timeout: float = BOUND_S) -> Any:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = check()
        if value:
            return value
        time.sleep(0.1)
    raise AssertionError(f"timed out waiting for {what}")


class Cluster:
    def __init__(self, tmp: Path, model: Path) -> None:
        self.tmp, self.model = tmp, model
        self.data_dir = tmp / "data"  # one "node": every instance shares its database (WAL)
        self.entries: dict[str, dict[str, Any]] = {}
        self.procs: dict[str, subprocess.Popen[bytes]] = {}
        self.logs: dict[str, Path] = {}

    def define(
        self,
        experiment: str,
        mode: str,
        ids: list[str],
        *,
        cycles: int = 3,
        max_tokens: int = 8,
        delay: float = 0.05,
        settings: dict[str, Any] | None = None,
        per_instance: dict[str, dict[str, Any]] | None = None,
        interventions: list[dict[str, Any]] | None = None,
        peers: dict[str, list[str]] | None = None,
    ) -> None:
        """Entries as `runner place` would write them, each instance on its own loopback address."""
        addrs = {iid: f"127.0.0.{n + 1}" for n, iid in enumerate(ids)}
        ports = {iid: free_port(addrs[iid]) for iid in ids}
        for iid in ids:
            peer_ids = (peers or {}).get(iid, [p for p in ids if p != iid])
            self.entries[iid] = {
                "id": iid,
                "experiment": experiment,
                "experiment_file": f"experiments/{experiment}.yml",
                "mode": mode,
                "model": "tiny",
                "memory_mib": 512,
                "gpu": False,
                "gpu_memory_mib": None,
                "node": "node1",
                "address": addrs[iid],
                "port": ports[iid],
                "peers": [
                    {"id": p, "node": "node1", "address": addrs[p], "port": ports[p]} for p in peer_ids
                ],
                "runtime": {
                    "n_ctx": 256,
                    "n_threads": 1,
                    "n_batch": 256,
                    "max_tokens": max_tokens,
                    "cycles": cycles,
                    "cycle_delay_s": delay,
                    "seed": 7,
                },
                "settings": {"reconnect_max_s": 0.5, **(settings or {}), **(per_instance or {}).get(iid, {})},
                "interventions": interventions or [],
                "model_path": str(self.model),
                "data_dir": str(self.data_dir),
                "members": list(ids),
                "peer_secret_file": str(self.secret_file(experiment)),
            }

    def secret_file(self, experiment: str) -> Path:
        """The experiment's peer secret, as launch writes it on a node (runner/node/auth.py)."""
        path = self.tmp / f"{experiment}.key"
        if not path.exists():
            path.write_text(os.urandom(24).hex() + "\n")
            path.chmod(0o600)
        return path

    def config(self, iid: str) -> Path:
        path = self.tmp / f"{iid}.json"
        path.write_text(json.dumps(self.entries[iid]))
        return path

    def start(self, iid: str) -> subprocess.Popen[bytes]:
        log = self.tmp / f"{iid}.log"
        self.logs[iid] = log
        with log.open("ab") as out:
            proc = subprocess.Popen(
                [sys.executable, "-m", "runner.node", "run", "--config", str(self.config(iid))],
                cwd=ROOT,
                stdout=out,
                stderr=subprocess.STDOUT,
                env={**os.environ, "PYTHONPATH": str(ROOT)},
            )
        self.procs[iid] = proc
        return proc

    def record_exit(self, iid: str, **env: str) -> str:
        """What systemd's ExecStopPost does, with its $SERVICE_RESULT/$EXIT_CODE/$EXIT_STATUS."""
        out = subprocess.run(
            [sys.executable, "-m", "runner.node", "record-exit", "--config", str(self.config(iid))],
            cwd=ROOT,
            env={**os.environ, "PYTHONPATH": str(ROOT), **env},
            capture_output=True,
            text=True,
            check=True,
        )
        return out.stdout

    def wait_exit(self, iid: str, timeout: float = BOUND_S) -> int:
        try:
            return self.procs[iid].wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            logs = "\n".join(f"--- {i} ---\n{self.log(i)}" for i in self.logs)
            raise AssertionError(f"{iid} did not exit within {timeout:.0f} s; the logs:\n{logs}") from None

    def signal(self, iid: str, sig: signal.Signals) -> None:
        self.procs[iid].send_signal(sig)

    def log(self, iid: str) -> str:
        return self.logs[iid].read_text(errors="replace")

    def db(self) -> sqlite3.Connection:
        return records.connect(self.data_dir / "records.sqlite3", readonly=True)

    def query(self, sql: str, *args: Any) -> list[sqlite3.Row]:
        if not (self.data_dir / "records.sqlite3").exists():
            return []
        conn = self.db()
        try:
            return list(conn.execute(sql, args))
        except sqlite3.OperationalError:  # tables not created yet
            return []
        finally:
            conn.close()

    def cycles(self, iid: str, life: int | None = None) -> int:
        rows = self.query(
            "SELECT COUNT(*) FROM cycles WHERE instance_id = ? AND (? IS NULL OR life = ?)", iid, life, life
        )
        return int(rows[0][0]) if rows else 0

    def kill_all(self) -> None:
        for proc in self.procs.values():
            if proc.poll() is None:
                proc.kill()
                proc.wait(timeout=10)
