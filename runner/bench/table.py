"""Pure: a bench run as a table, and two runs side by side."""

from __future__ import annotations

from runner.bench.store import Result, Run

# metric -> (column title, format, higher is better)
METRICS = {
    "pp_tps": ("prompt tok/s", "{:.1f}", True),
    "tg_tps": ("gen tok/s", "{:.1f}", True),
    "ttft_s": ("TTFT ms", "{:.0f}", False),
    "load_s": ("load s", "{:.2f}", False),
}


def _value(metric: str, v: float) -> str:
    return METRICS[metric][1].format(v * 1000 if metric == "ttft_s" else v)


def _cell(r: Result, metric: str) -> str:
    s = r.measurement["summary"][metric]
    return f"{_value(metric, s['median'])} ({_value(metric, s['min'])}-{_value(metric, s['max'])})"


def run_rows(run: Run) -> tuple[list[str], list[list[str]]]:
    """One row per node and model: the medians (min-max) and what the number depends on."""
    header = ["node", "kind", "model", "quant", "threads", "gpu layers", *(t for t, _, _ in METRICS.values()),
              "peak MiB"]  # fmt: skip
    rows = []
    for r in run.results:
        m = r.measurement
        quant = str(m["model"].get("quantisation", "?"))
        rows.append(
            [r.node, r.node_kind, r.model, "?" if quant.startswith("unavailable") else quant,
             str(m["build"].get("threads", "?")), str(m["method"].get("n_gpu_layers", "?")),
             *(_cell(r, k) for k in METRICS), f"{float(m['peak_rss_mib']):.0f}"]
        )  # fmt: skip
    return header, rows


def change(before: float, after: float, higher_is_better: bool) -> str:
    """The relative change, signed so that + is better."""
    if before == 0:
        return "n/a"
    pct = (after - before) / before * 100
    return f"{pct if higher_is_better else -pct:+.1f}%"


def compare_rows(a: Run, b: Run) -> tuple[list[str], list[list[str]]]:
    """Node and model pairs measured in both runs: the medians of each and the change (+ is better)."""
    header = ["node", "model", "metric", f"run {a.run_id}", f"run {b.run_id}", "change"]
    ours = {(r.node, r.model): r for r in b.results}
    rows = []
    for r in a.results:
        other = ours.get((r.node, r.model))
        if other is None:
            continue
        for metric, (title, _, better) in METRICS.items():
            va, vb = r.median(metric), other.median(metric)
            values = [_value(metric, va), _value(metric, vb), change(va, vb, better)]
            rows.append([r.node, r.model, title, *values])
    return header, rows


def provenance_diff(a: Result, b: Result) -> list[str]:
    """What differs between two measurements of one node and model, besides the numbers: the first thing
    to read before believing a change."""
    out = []
    for section in ("board", "build", "model", "method"):
        sa, sb = a.measurement.get(section, {}), b.measurement.get(section, {})
        for key in sorted(set(sa) | set(sb)):
            if section == "model" and key == "path":
                continue
            if sa.get(key) != sb.get(key):
                out.append(f"{section}.{key}: {sa.get(key)!r} -> {sb.get(key)!r}")
    return out
