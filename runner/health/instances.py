"""Instance rows: a node's placement entries joined with its edgejar-instance@ units and records. Pure."""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any

from runner.health.model import InstanceRow, NodeSample, RecordStats

NOT_LOADED = "not loaded"  # placed, but systemd has no such unit loaded (not deployed, or stopped long ago)
UNKNOWN = "unknown"  # the node was never reached
STALE_PREFIX = "stale: "


def rows(
    node: str, placed: Iterable[Mapping[str, Any]], sample: NodeSample | None, *, stale: bool = False
) -> tuple[InstanceRow, ...]:
    """One row per placed instance and per loaded unit. `stale`: the node does not answer now, so the
    states are the last ones seen and are shown as `stale: <state>` (not counted as running)."""
    placed_ids = [str(e["id"]) for e in placed if "id" in e]
    units = {u.instance: u for u in sample.units} if sample else {}
    records = sample.records if sample else {}
    out = []
    for iid in dict.fromkeys([*placed_ids, *units]):
        unit = units.get(iid)
        stats = records.get(iid, RecordStats())
        if unit is None:
            state = UNKNOWN if sample is None else NOT_LOADED
            out.append(InstanceRow(iid, node, state, iid in placed_ids, stats=stats))
            continue
        out.append(
            InstanceRow(
                instance=iid,
                node=node,
                state=f"{STALE_PREFIX if stale else ''}{unit.active}/{unit.sub}",
                placed=iid in placed_ids,
                memory_bytes=unit.memory_bytes,
                memory_max_bytes=unit.memory_max_bytes,
                restarts=unit.restarts,
                stats=stats,
            )
        )
    return tuple(out)
