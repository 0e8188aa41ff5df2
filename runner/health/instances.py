"""Instance rows: a node's placement entries joined with its edgejar-instance@ units and records. Pure."""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any

from runner.health.model import InstanceRow, NodeSample, RecordStats

NOT_LOADED = "not loaded"  # placed, but systemd has no such unit loaded and the records show no end
UNIT_GONE = ("inactive", "failed")  # a unit in these states has ended: the records say how
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
            # A finished unit is unloaded by systemd soon after: the records say how it ended.
            state = UNKNOWN if sample is None else stats.end or NOT_LOADED
            out.append(InstanceRow(iid, node, state, iid in placed_ids, stats=stats))
            continue
        state = f"{unit.active}/{unit.sub}"
        if unit.active in UNIT_GONE and stats.end:
            state = f"{stats.end} ({state})"
        out.append(
            InstanceRow(
                instance=iid,
                node=node,
                state=f"{STALE_PREFIX if stale else ''}{state}",
                placed=iid in placed_ids,
                memory_bytes=unit.memory_bytes,
                memory_max_bytes=unit.memory_max_bytes,
                restarts=unit.restarts,
                stats=stats,
            )
        )
    return tuple(out)
