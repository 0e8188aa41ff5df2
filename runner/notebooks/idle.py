"""Kernels' idle time as the notebook gateway sees it (its last_activity), for health and `runner kernels`."""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterable, Mapping
from typing import Any


def idle_seconds(kernels: Iterable[Mapping[str, Any]], now: dt.datetime) -> dict[str, float]:
    """kernel id -> seconds since its last activity (kernels whose time cannot be read are left out)."""
    out: dict[str, float] = {}
    for k in kernels:
        try:
            last = dt.datetime.fromisoformat(str(k["last_activity"]).replace("Z", "+00:00"))
        except (KeyError, ValueError):
            continue
        if last.tzinfo is None:
            last = last.replace(tzinfo=dt.UTC)
        out[str(k["id"])] = round(max(0.0, (now - last).total_seconds()), 1)
    return out
