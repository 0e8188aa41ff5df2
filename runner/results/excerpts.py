"""What the instances said: a few of their own generated lines, for the summary and the report."""

from __future__ import annotations

import sqlite3
from dataclasses import dataclass


@dataclass(frozen=True)
class Said:
    instance_id: str
    life: int
    cycle: int
    text: str


def clean(text: str, limit: int) -> str:
    """One line, control characters out, cut to `limit` characters."""
    flat = " ".join("".join(ch if ch.isprintable() else " " for ch in text).split())
    return flat if len(flat) <= limit else flat[: limit - 3] + "..."


def said(conn: sqlite3.Connection, per_instance: int = 3, limit: int = 200) -> dict[str, list[Said]]:
    """instance -> up to `per_instance` of its generated texts, spread over its cycles (..., the last).

    Empty texts are skipped; the text is what the model generated in the cycle (`cycles.thought`)."""
    rows: dict[str, list[Said]] = {}
    for iid, life, cycle, thought in conn.execute(
        "SELECT instance_id, life, cycle, thought FROM cycles ORDER BY instance_id, started_at"
    ):
        text = clean(str(thought or ""), limit)
        if text:
            rows.setdefault(str(iid), []).append(Said(str(iid), int(life), int(cycle), text))
    out: dict[str, list[Said]] = {}
    for iid, items in sorted(rows.items()):
        if len(items) <= per_instance:
            out[iid] = items
        else:
            step = (len(items) - 1) / max(per_instance - 1, 1)
            picks = sorted({len(items) - 1 - round(k * step) for k in range(per_instance)})
            out[iid] = [items[k] for k in picks]
    return out
