"""Pure: the results of the bench task (one loop item per model, its stdout the JSON of
runner/node/bench.py) into stored results and per-node failures."""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Any

from runner.bench.store import Result

BENCH_TASK = "Benchmark each model on the node"  # roles/edgejar_bench/tasks/main.yml
REQUIRED = ("method", "model", "build", "board", "reps", "summary", "peak_rss_mib")


def from_task(
    captured: Mapping[str, Mapping[str, Any]], kinds: Mapping[str, str]
) -> tuple[list[Result], dict[str, str]]:
    """node -> the task's result (loop results) into (results, node/model -> why it failed)."""
    results: list[Result] = []
    failures: dict[str, str] = {}
    for node in sorted(captured):
        for item in captured[node].get("results") or []:
            model = str(item.get("item", "?"))
            where = f"{node}/{model}"
            if item.get("skipped"):
                continue
            if item.get("rc") != 0:
                tail = str(item.get("stderr") or item.get("msg") or "").strip().splitlines()[-3:]
                failures[where] = f"exit {item.get('rc', '?')}: {' | '.join(tail) or 'no output'}"
                continue
            try:
                data = json.loads(str(item.get("stdout") or "").strip().splitlines()[-1])
            except (ValueError, IndexError):
                failures[where] = "its output is not the bench JSON"
                continue
            missing = [k for k in REQUIRED if k not in data]
            if missing:
                failures[where] = f"the bench JSON lacks {', '.join(missing)}"
                continue
            results.append(Result(node, model, kinds.get(node, "?"), data))
    return results, failures
