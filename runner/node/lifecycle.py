"""Lives of an instance: start, clean end, death found on the next start, causes from systemd."""

from __future__ import annotations

import os
import sqlite3
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

from runner.node import records
from runner.node.config import InstanceConfig

UNKNOWN_DEATH = "unknown/killed"
CLEAN_CAUSES = ("stopped", "completed")


def exit_cause(service_result: str | None, exit_code: str | None, exit_status: str | None) -> str:
    """systemd's $SERVICE_RESULT, $EXIT_CODE, $EXIT_STATUS (ExecStopPost) as one cause string."""
    result, code, status = service_result or "", exit_code or "", exit_status or ""
    if result == "oom-kill":
        return "oom-kill"
    if result in ("timeout", "watchdog", "start-limit-hit", "resources"):
        return result
    if code in ("killed", "dumped"):
        return f"signal:{status or '?'}" if code == "killed" else f"core-dump:{status or '?'}"
    if code == "exited":
        return "stopped" if status in ("0", "") else f"exit-code:{status}"
    if result == "success":
        return "stopped"
    return "unknown"


@dataclass(frozen=True)
class Previous:
    """What the records say about an instance's latest life."""

    life: int  # 0: never started
    ended: bool
    end_cause: str | None
    exit_report_cause: str | None
    last_cycle: int  # last cycle recorded in that life (start_cycle - 1 when none)
    peak_rss_mib: float | None
    max_cycle: int  # last cycle recorded in any life


@dataclass(frozen=True)
class Death:
    life: int
    cause: str
    last_cycle: int
    peak_rss_mib: float | None


def find_death(prev: Previous) -> Death | None:
    """The death of the previous life, if it had no recorded end (or ended by a non-clean cause)."""
    if prev.life == 0 or prev.ended:
        return None
    cause = prev.exit_report_cause
    if cause is None or cause in CLEAN_CAUSES or cause == "unknown":
        # a clean exit code without an end row still means the runtime did not finish its records
        cause = UNKNOWN_DEATH if cause is None or cause == "unknown" else f"{cause} (records not closed)"
    return Death(prev.life, cause, prev.last_cycle, prev.peak_rss_mib)


def previous(conn: sqlite3.Connection, instance_id: str) -> Previous:
    row = conn.execute(
        "SELECT life, start_cycle FROM lives WHERE instance_id = ? ORDER BY life DESC LIMIT 1", (instance_id,)
    ).fetchone()
    max_cycle = conn.execute(
        "SELECT COALESCE(MAX(cycle), 0) FROM cycles WHERE instance_id = ?", (instance_id,)
    ).fetchone()[0]
    if row is None:
        return Previous(0, False, None, None, 0, None, max_cycle)
    life = row["life"]
    end = conn.execute(
        "SELECT cause FROM life_ends WHERE instance_id = ? AND life = ?", (instance_id, life)
    ).fetchone()
    report = conn.execute(
        "SELECT cause FROM exit_reports WHERE instance_id = ? AND life = ? ORDER BY reported_at DESC LIMIT 1",
        (instance_id, life),
    ).fetchone()
    stats = conn.execute(
        "SELECT MAX(cycle) AS c, MAX(peak_rss_mib) AS p FROM cycles WHERE instance_id = ? AND life = ?",
        (instance_id, life),
    ).fetchone()
    last = stats["c"] if stats["c"] is not None else row["start_cycle"] - 1
    return Previous(
        life=life,
        ended=end is not None,
        end_cause=end["cause"] if end else None,
        exit_report_cause=report["cause"] if report else None,
        last_cycle=last,
        peak_rss_mib=stats["p"],
        max_cycle=max_cycle,
    )


def cgroup_memory_max_mib() -> int | None:
    """The memory ceiling of this process's cgroup (v2), when there is one."""
    try:
        line = Path("/proc/self/cgroup").read_text().strip().splitlines()[0]
        value = (Path("/sys/fs/cgroup") / line.split("::", 1)[1].lstrip("/") / "memory.max").read_text()
    except (OSError, IndexError):
        return None
    value = value.strip()
    return None if value == "max" else int(value) // (1 << 20)


def register(conn: sqlite3.Connection, cfg: InstanceConfig) -> None:
    t = records.now()
    records.insert(
        conn,
        "experiments",
        {"name": cfg.experiment, "mode": cfg.mode, "experiment_file": cfg.experiment_file, "first_seen": t},
    )
    records.insert(
        conn,
        "instances",
        {
            "instance_id": cfg.id,
            "experiment": cfg.experiment,
            "mode": cfg.mode,
            "node": cfg.node,
            "address": cfg.address,
            "port": cfg.port,
            "model": cfg.model,
            "memory_mib": cfg.memory_mib,
            "gpu": int(cfg.gpu),
            "gpu_memory_mib": cfg.gpu_memory_mib,
            "config": dict(cfg.raw),
            "registered_at": t,
        },
    )


def close_death(conn: sqlite3.Connection, instance_id: str, death: Death) -> None:
    records.insert(
        conn,
        "life_ends",
        {
            "instance_id": instance_id,
            "life": death.life,
            "ended_at": records.now(),
            "cause": death.cause,
            "last_cycle": death.last_cycle,
            "peak_rss_mib": death.peak_rss_mib,
            "detected_by": "next-start",
        },
    )


def begin(conn: sqlite3.Connection, cfg: InstanceConfig, life: int, start_cycle: int) -> None:
    records.insert(
        conn,
        "lives",
        {
            "instance_id": cfg.id,
            "life": life,
            "started_at": records.now(),
            "pid": os.getpid(),
            "node": cfg.node,
            "start_cycle": start_cycle,
            "memory_limit_mib": cfg.memory_mib,
            "cgroup_memory_max_mib": cgroup_memory_max_mib(),
        },
    )


def end(
    conn: sqlite3.Connection, instance_id: str, life: int, cause: str, last_cycle: int, peak: float | None
) -> None:
    records.insert(
        conn,
        "life_ends",
        {
            "instance_id": instance_id,
            "life": life,
            "ended_at": records.now(),
            "cause": cause,
            "last_cycle": last_cycle,
            "peak_rss_mib": peak,
            "detected_by": "runtime",
        },
    )


def record_exit(conn: sqlite3.Connection, instance_id: str, env: Mapping[str, str]) -> str:
    """What `record-exit` does (ExecStopPost): attach systemd's verdict to the latest life."""
    cause = exit_cause(env.get("SERVICE_RESULT"), env.get("EXIT_CODE"), env.get("EXIT_STATUS"))
    row = conn.execute("SELECT MAX(life) FROM lives WHERE instance_id = ?", (instance_id,)).fetchone()
    records.insert(
        conn,
        "exit_reports",
        {
            "instance_id": instance_id,
            "life": row[0],
            "reported_at": records.now(),
            "service_result": env.get("SERVICE_RESULT"),
            "exit_code": env.get("EXIT_CODE"),
            "exit_status": env.get("EXIT_STATUS"),
            "cause": cause,
        },
    )
    return cause
