"""`results/bench/report.html`: bench runs side by side, self-contained (inline SVG, nothing fetched).

For each metric one picture: per node and model, a bar per run (the median, whiskers from min to max);
then per run its table and what each measurement ran on (the provenance that makes bars comparable).
"""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path

from runner.bench.store import Result, Run
from runner.bench.table import METRICS, run_rows
from runner.files import atomic
from runner.results import plots
from runner.results.report import STYLE, esc, html_figure, html_table

REPORT = Path("bench") / "report.html"
UNITS = {"ttft_s": 1000.0}  # TTFT is drawn in ms


def series(runs: list[Run], metric: str) -> dict[str, list[tuple[str, float, float, float]]]:
    """Pure: "node/model" -> [(run label, median, min, max)] for one metric."""
    scale = UNITS.get(metric, 1.0)
    out: dict[str, list[tuple[str, float, float, float]]] = {}
    for run in runs:
        for r in run.results:
            s = r.measurement["summary"][metric]
            point = (f"run {run.run_id}", s["median"] * scale, s["min"] * scale, s["max"] * scale)
            out.setdefault(f"{r.node}/{r.model}", []).append(point)
    return out


def _provenance_rows(r: Result) -> list[object]:
    m = r.measurement
    board, build, model = m["board"], m["build"], m["model"]
    return [
        r.node,
        r.model,
        board.get("cpu_model"),
        board.get("power_mode"),
        build.get("wheel_key"),
        build.get("system_info"),
        str(model.get("sha256", ""))[:16],
        m.get("temperatures_before"),
        m.get("temperatures_after"),
    ]


def render(runs: list[Run]) -> str:
    when = datetime.now(UTC).strftime("%Y-%m-%d %H:%M:%S UTC")
    body = [
        "<h1>edgejar bench</h1>",
        f"<p class='note'>{len(runs)} run(s): {esc(', '.join(str(r.run_id) for r in runs))}; written {when}. "
        "Bars: the median over the repetitions, whiskers from min to max (docs/bench.md).</p>",
    ]
    for metric, (title, _, higher) in METRICS.items():
        data = series(runs, metric)
        if data:
            note = "higher is better" if higher else "lower is better"
            caption = f"{title} per node and model, per run ({note})"
            body.append(html_figure(plots.bench(data, title), caption))
    for run in runs:
        header, rows = run_rows(run)
        body.append(f"<h2>run {run.run_id} <span class='note'>{esc(run.started)}</span></h2>")
        controller = ", ".join(f"{k}: {v}" for k, v in sorted(run.controller.items()))
        body.append(f"<p class='note'>inventory {esc(run.inventory)}; {esc(controller)}</p>")
        body.append(html_table(header, [list(r) for r in rows]))
        prov_header = ["node", "model", "CPU", "power mode", "wheel key", "build", "model sha256",
                       "temperatures before", "after"]  # fmt: skip
        body.append(html_table(prov_header, [_provenance_rows(r) for r in run.results]))
    return (
        "<!DOCTYPE html>\n<html lang='en'><head><meta charset='utf-8'>"
        f"<title>edgejar bench</title><style>{STYLE}</style></head><body>"
        + "\n".join(body)
        + "</body></html>\n"
    )


def write(results_dir: Path, runs: list[Run]) -> Path:
    path = results_dir / REPORT
    path.parent.mkdir(parents=True, exist_ok=True)
    atomic.write_all({path: render(runs)})
    return path
