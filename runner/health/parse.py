"""Parse a node's probe output (the JSON `runner.health.probe` prints) into a NodeSample. Pure."""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Any

from runner.health.model import NodeSample, RecordStats, UnitSample

UNIT_PREFIXES = ("edgejar-instance@", "edgejar-train@")  # instances and training units
KERNEL_PREFIX = "edgejar-kernel-"  # notebook kernels
UNIT_SUFFIX = ".service"


class ProbeError(ValueError):
    """The probe's output is not what this controller understands."""


def _int(value: Any) -> int | None:
    """systemd and /proc numbers; '[not set]', 'infinity', '' and absurd sentinels are None."""
    try:
        n = int(str(value).strip())
    except (TypeError, ValueError):
        return None
    return None if n < 0 or n >= 2**62 else n


def instance_id(unit: str) -> str | None:
    for prefix in UNIT_PREFIXES:
        if unit.startswith(prefix) and unit.endswith(UNIT_SUFFIX):
            return unit[len(prefix) : -len(UNIT_SUFFIX)] or None
    return None


def _float(value: Any) -> float | None:
    return float(value) if isinstance(value, int | float) and not isinstance(value, bool) else None


def kernel_id(unit: str) -> str | None:
    if unit.startswith(KERNEL_PREFIX) and unit.endswith(UNIT_SUFFIX):
        return unit[len(KERNEL_PREFIX) : -len(UNIT_SUFFIX)] or None
    return None


def unit_sample(props: Mapping[str, str], uptime_s: float, kernel: bool = False) -> UnitSample | None:
    iid = (kernel_id if kernel else instance_id)(props.get("Id", ""))
    if iid is None:
        return None
    changed = _int(props.get("StateChangeTimestampMonotonic"))
    age = max(0.0, uptime_s - changed / 1e6) if changed else None
    return UnitSample(
        instance=iid,
        active=props.get("ActiveState", "unknown"),
        sub=props.get("SubState", "unknown"),
        result=props.get("Result", ""),
        restarts=_int(props.get("NRestarts")) or 0,
        memory_bytes=_int(props.get("MemoryCurrent")),
        memory_max_bytes=_int(props.get("MemoryMax")),
        main_pid=_int(props.get("MainPID")) or 0,
        state_age_s=age,
    )


def instance_stats(records: Any) -> dict[str, RecordStats]:
    """The probe's "records" map (instance id -> stats) as RecordStats; unknown keys are ignored."""
    if not isinstance(records, Mapping):
        return {}
    out = {}
    for iid, raw in records.items():
        if not isinstance(raw, Mapping):
            continue
        train = raw.get("train")
        step, loss, sps, rank = train if isinstance(train, list) and len(train) == 4 else (None,) * 4
        end = raw.get("end") or raw.get("train_end")
        out[str(iid)] = RecordStats(
            lives=_int(raw.get("lives")),
            deaths=_int(raw.get("deaths")),
            cycle=_int(raw.get("cycle")),
            tokens_per_s=_float(raw.get("tokens_per_s")),
            last_message_at=_float(raw.get("last_message_at")),
            end=str(end) if isinstance(end, str) and end else None,
            step=_int(step),
            loss=_float(loss),
            samples_per_s=_float(sps),
            rank=_int(rank),
        )
    return out


def memory(mem: Mapping[str, Any], cgroup: Mapping[str, Any]) -> tuple[int, int]:
    """(total, available) bytes. A memory ceiling on the machine's own cgroup root (a container, like the
    simulated hosts) that is below MemTotal is the real limit: then total = ceiling and
    available = ceiling - usage.
    """
    total = (_int(mem.get("MemTotal")) or 0) * 1024
    avail_kb = _int(mem.get("MemAvailable"))
    available = avail_kb * 1024 if avail_kb is not None else (_int(mem.get("MemFree")) or 0) * 1024
    limit, usage = _int(cgroup.get("limit")), _int(cgroup.get("usage"))
    if limit and usage is not None and (not total or limit < total):
        return limit, max(0, limit - usage)
    return total, min(available, total)


def parse(text: str) -> NodeSample:
    """The probe's stdout (one JSON object) -> NodeSample. Raises ProbeError on anything malformed."""
    try:
        data = json.loads(text)
    except json.JSONDecodeError as exc:
        raise ProbeError(f"probe output is not JSON ({exc.msg} at {exc.pos}): {text[:120]!r}") from None
    if not isinstance(data, dict):
        raise ProbeError("probe output is not a JSON object")
    if data.get("v") != 1:
        raise ProbeError(f"probe version {data.get('v')!r}, expected 1")
    try:
        mem = data.get("mem") or {}
        cgroup = data.get("cgroup") or {}
        disk = data.get("disk") or {}
        uptime = float(data.get("uptime_s") or 0.0)
        total, available = memory(mem, cgroup)
        load = [*[float(x) for x in data.get("load") or [0, 0, 0]][:3], 0.0, 0.0, 0.0]
        units = [unit_sample(u, uptime) for u in data.get("units") or [] if isinstance(u, Mapping)]
        kernels = [unit_sample(u, uptime, True) for u in data.get("kernels") or [] if isinstance(u, Mapping)]
        jetson = data.get("jetson") or {}
        gpu_load = jetson.get("gpu_load_pct")
        return NodeSample(
            hostname=str(data.get("hostname", "")),
            time=float(data.get("time") or 0.0),
            uptime_s=uptime,
            load=(load[0], load[1], load[2]),
            cpus=int(data.get("cpus") or 1),
            mem_total_bytes=total,
            mem_available_bytes=available,
            swap_total_bytes=(_int(mem.get("SwapTotal")) or 0) * 1024,
            swap_free_bytes=(_int(mem.get("SwapFree")) or 0) * 1024,
            memory_cgroup=bool(cgroup.get("memory")),
            disk_path=str(disk.get("path", "/")),
            disk_total_bytes=_int(disk.get("total")) or 0,
            disk_avail_bytes=_int(disk.get("avail")) or 0,
            failed_units=tuple(str(u) for u in data.get("failed_units") or []),
            units=tuple(sorted((u for u in units if u is not None), key=lambda u: u.instance)),
            kernels=tuple(sorted((k for k in kernels if k is not None), key=lambda k: k.instance)),
            gpu_load_pct=float(gpu_load) if isinstance(gpu_load, int | float) else None,
            temps_c={str(k): float(v) for k, v in (jetson.get("temps_c") or {}).items()},
            records_db=bool(data.get("records_db")),
            records=instance_stats(data.get("records")),
            probe_s=float(data.get("probe_s") or 0.0),
        )
    except (TypeError, ValueError, AttributeError) as exc:
        raise ProbeError(f"probe output has a malformed field: {exc}") from None
