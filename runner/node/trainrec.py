"""What a training script records on its node: events and steps into the node's records database, and where
its checkpoints go. The unit's wrapper (runner/node/train.py) sets the environment; a script run by hand,
outside a unit, gets `None` from `Recorder.from_env` and records nothing.

    rec = Recorder.from_env()
    rec.event("start", world_size=4)
    rec.step(step, loss=..., batch=..., step_s=..., compute_s=..., comm_s=...)
    rec.close()  # writes what is buffered

Steps are buffered and written at most once a second (one transaction), events at once. Node side: the
standard library alone (the records module).
"""

from __future__ import annotations

import json
import os
import resource
import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from runner.node import records

# The environment the unit's wrapper gives the workers (beside torchrun's RANK, LOCAL_RANK, ...).
ENV_RECORDS = "EDGEJAR_TRAINING_RECORDS"
ENV_CHECKPOINTS = "EDGEJAR_TRAINING_CHECKPOINTS"
ENV_UNIT = "EDGEJAR_TRAINING_UNIT"
ENV_LAUNCH = "EDGEJAR_TRAINING_LAUNCH"
FLUSH_S = 1.0


def peak_rss_mib() -> float:
    """This process's peak resident memory (ru_maxrss is in KiB on Linux)."""
    return round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0, 1)


@dataclass
class Recorder:
    db: Path
    unit: str
    launch: int
    restart: int
    local_rank: int
    rank: int
    checkpoints: Path
    _rows: list[tuple[str, dict[str, Any]]] = field(default_factory=list)
    _flushed: float = field(default_factory=time.monotonic)
    _conn: Any = None

    @classmethod
    def from_env(cls, env: Mapping[str, str] = os.environ) -> Recorder | None:
        if not env.get(ENV_RECORDS) or not env.get(ENV_UNIT):
            return None
        return cls(
            db=Path(env[ENV_RECORDS]),
            unit=env[ENV_UNIT],
            launch=int(env.get(ENV_LAUNCH, "1")),
            restart=int(env.get("TORCHELASTIC_RESTART_COUNT", "0")),
            local_rank=int(env.get("LOCAL_RANK", "0")),
            rank=int(env.get("RANK", "0")),
            checkpoints=Path(env.get(ENV_CHECKPOINTS) or "."),
        )

    def _key(self) -> dict[str, Any]:
        return {
            "instance_id": self.unit,
            "launch": self.launch,
            "restart": self.restart,
            "local_rank": self.local_rank,
        }

    def event(self, event: str, step: int | None = None, **detail: Any) -> None:
        """One event of this worker (start, resume, end, ...), written at once with what is buffered."""
        row = {**self._key(), "rank": self.rank, "event": event, "step": step}
        self._rows.append(
            ("train_events", {**row, "detail": json.dumps(detail, sort_keys=True), "at": time.time()})
        )
        self.flush()

    def step(
        self, step: int, *, loss: float, batch: int, step_s: float, compute_s: float, comm_s: float
    ) -> None:
        """One training step of this worker: its loss, its batch and where the time went."""
        self._rows.append(
            (
                "train_steps",
                {
                    **self._key(),
                    "rank": self.rank,
                    "step": step,
                    "loss": float(loss),
                    "batch": int(batch),
                    "step_s": step_s,
                    "compute_s": compute_s,
                    "comm_s": comm_s,
                    "samples_per_s": batch / step_s if step_s > 0 else None,
                    "peak_rss_mib": peak_rss_mib(),
                    "at": time.time(),
                },
            )
        )
        if time.monotonic() - self._flushed >= FLUSH_S:
            self.flush()

    def flush(self) -> None:
        if self._rows:
            if self._conn is None:
                self._conn = records.connect(self.db)
            records.write(self._conn, self._rows)
            self._rows = []
        self._flushed = time.monotonic()

    def close(self) -> None:
        self.flush()
        if self._conn is not None:
            self._conn.close()
            self._conn = None

    def checkpoint(self, name: str = "checkpoint.pt") -> Path:
        """Where this worker keeps its checkpoint (the unit's directory on the node, one file per local
        rank): write it beside and rename, so a kill mid-write leaves the previous one."""
        return self.checkpoints / f"rank{self.local_rank}-{name}"
