"""One self-contained HTML report per experiment: `results/<experiment>/report.html`.

Sections: the timeline per instance, memory per instance against its MemoryMax and per node against its
RAM, who talked to whom, the mode's outcome over time, what the instances said, the run's provenance.
Pictures are inline SVG (runner/results/plots.py); the page loads nothing from anywhere.
"""

from __future__ import annotations

import html
import sqlite3
from datetime import UTC, datetime
from pathlib import Path

from runner.files import atomic
from runner.inventory import Cluster
from runner.results import activity, excerpts, modes, plots, provenance
from runner.results.merge import DB_NAME

REPORT_NAME = "report.html"
STYLE = """
body { font-family: system-ui, sans-serif; margin: 1.5em auto; max-width: 1100px; color: #222; }
h1 { font-size: 1.5em; } h2 { border-bottom: 1px solid #ccc; padding-bottom: .2em; margin-top: 1.6em; }
table { border-collapse: collapse; font-size: .85em; margin: .5em 0; }
td, th { border: 1px solid #ddd; padding: .2em .5em; text-align: left; vertical-align: top; }
th { background: #f3f3f3; } .death { color: #d62728; font-weight: bold; }
figure { margin: .5em 0; } figure svg { width: 100%; height: auto; }
blockquote { margin: .3em 0 .3em 1em; padding-left: .6em; border-left: 3px solid #ccc;
  white-space: pre-wrap; }
.note { color: #666; font-size: .85em; }
"""


def esc(value: object) -> str:
    return html.escape("" if value is None else str(value))


def html_table(header: list[str], rows: list[list[object]], classes: list[str] | None = None) -> str:
    head = "".join(f"<th>{esc(h)}</th>" for h in header)
    body = []
    for k, row in enumerate(rows):
        cls = f' class="{classes[k]}"' if classes and classes[k] else ""
        body.append(f"<tr{cls}>" + "".join(f"<td>{esc(c)}</td>" for c in row) + "</tr>")
    return f"<table><tr>{head}</tr>{''.join(body)}</table>"


def html_figure(svg: str, caption: str) -> str:
    return f"<figure>{svg}<figcaption class='note'>{esc(caption)}</figcaption></figure>"


def _when(t: float | None, t0: float) -> str:
    return "-" if t is None else f"{t - t0:+.1f} s"


def timeline_section(conn: sqlite3.Connection, ids: list[str], t0: float) -> str:
    lives = activity.lives(conn)
    cyc = activity.cycles(conn)
    inter = activity.interventions(conn)
    parts = ["<h2 id='timeline'>Timeline</h2>"]
    if not lives:
        return parts[0] + "<p>No instance started.</p>"
    parts.append(
        html_figure(
            plots.timeline(ids, lives, cyc, inter, t0),
            "Each life a bar (one colour per life number), cycles as ticks, deaths as red crosses "
            "with their cause, interventions as orange triangles.",
        )
    )
    rows = [
        [
            x.instance_id,
            x.life,
            x.node,
            _when(x.started_at, t0),
            _when(x.ended_at, t0),
            x.cause or "no end recorded",
            x.last_cycle,
            x.peak_rss_mib and f"{x.peak_rss_mib:.0f}",
            x.memory_max_mib,
        ]
        for x in lives
    ]
    parts.append("<h3>Lives and deaths</h3>")
    parts.append(
        html_table(
            [
                "instance",
                "life",
                "node",
                "started",
                "ended",
                "end / cause",
                "last cycle",
                "peak RSS MiB",
                "MemoryMax MiB",
            ],
            rows,
            ["death" if x.died else "" for x in lives],
        )
    )
    restarts = activity.restarts(conn)
    if any(restarts.values()):
        parts.append(
            "<p>Restarts: " + esc(", ".join(f"{k} {v}" for k, v in sorted(restarts.items()) if v)) + "</p>"
        )
    if inter:
        parts.append("<h3>Interventions</h3>")
        parts.append(
            html_table(
                ["instance", "life", "cycle", "type", "what", "result"],
                [
                    [i["instance_id"], i["life"], i["cycle"], i["type"], i["description"], i["result"]]
                    for i in inter
                ],
            )
        )
    return "".join(parts)


def memory_section(conn: sqlite3.Connection, cluster: Cluster | None, t0: float) -> str:
    parts = ["<h2 id='memory'>Memory</h2>"]
    series = activity.memory_series(conn)
    if not series:
        return parts[0] + "<p>No memory readings recorded.</p>"
    deaths = activity.deaths(conn)
    parts.append(
        html_figure(
            plots.memory(series, activity.memory_max(conn), deaths, t0),
            "Per instance: resident memory at each cycle's end (and its peak at a death) against "
            "the unit's MemoryMax (dashed).",
        )
    )
    ram: dict[str, float] = {}
    if cluster:
        ram = {name: float(cn.node.ram_mib) for name, cn in cluster.by_name().items()}
    parts.append(
        html_figure(
            plots.memory(activity.node_memory(conn), ram, [], t0, ylabel="MiB", ceiling_label="RAM"),
            "Per node: the sum of this experiment's instances' resident memory against the node's "
            "RAM (dashed; from the inventory" + ("" if cluster else ", not given") + ").",
        )
    )
    return "".join(parts)


def talk_section(conn: sqlite3.Connection) -> str:
    names, counts = activity.talk(conn)
    head = "<h2 id='messages'>Who talked to whom</h2>"
    if not counts:
        return head + "<p>No messages recorded.</p>"
    return head + html_figure(
        plots.matrix(names, names, counts, xlabel="to", ylabel="from"),
        f"Messages sent, per sender (row) and recipient (column); {sum(counts.values())} in all.",
    )


def mode_section(conn: sqlite3.Connection, mode: str, ids: list[str]) -> str:
    if mode == "prisoners_dilemma":
        d = modes.dilemma(conn)
        head = "<h2 id='mode'>Prisoners' dilemma</h2>"
        if not d.players:
            return head + "<p>No rounds recorded.</p>"
        total = {p: d.cumulative[p][-1] for p in d.players}
        fallback = {p: sum(s != "model" for _, s in d.moves[p].values()) for p in d.players}
        return (
            head
            + html_figure(
                plots.dilemma(d),
                "Cumulative payoffs; each round's moves (hatched: the "
                "seeded fallback, the model's text named no clear move).",
            )
            + html_table(
                ["player", "rounds", "payoff", "fallback moves"],
                [[p, len(d.moves[p]), total[p], fallback[p]] for p in d.players],
            )
        )
    if mode == "split_brain":
        cl = modes.claims(conn)
        head = "<h2 id='mode'>Split brain: identity claims</h2>"
        if not cl:
            return head + "<p>No identity claims recorded.</p>"
        told = modes.assigned_identities(conn)
        who = sorted({c.instance_id for c in cl})
        rows = [
            [
                c.instance_id,
                c.cycle,
                c.value,
                "model" if c.from_model else "assigned",
                excerpts.clean(c.response, 160),
            ]
            for c in cl
        ]
        return (
            head
            + html_figure(
                plots.claims(who, cl, told),
                "Each cycle's claim: filled, the model's own "
                "words; hollow, the text said neither and the assigned identity was recorded.",
            )
            + html_table(["instance", "cycle", "claim", "from", "words"], rows)
        )
    if mode == "hive_cluster":
        rounds = modes.consensus(conn)
        head = "<h2 id='mode'>Hive: consensus rounds</h2>"
        if not rounds:
            return head + "<p>No consensus rounds recorded.</p>"
        members = sorted({m for said in rounds.values() for m in said})
        rows = [
            [c, m, excerpts.clean(t, 200)]
            for c, said in list(rounds.items())[-3:]
            for m, t in sorted(said.items())
        ]
        return (
            head
            + html_figure(
                plots.consensus(rounds, members),
                f"{len(rounds)} consensus round(s): who stated the consensus in which cycle.",
            )
            + "<h3>The last rounds</h3>"
            + html_table(["cycle", "member", "statement"], rows)
        )
    if mode == "panopticon":
        obs = modes.observations(conn)
        head = "<h2 id='mode'>Panopticon: observations</h2>"
        if not obs:
            return head + "<p>No observations recorded.</p>"
        rows = [
            [o["instance_id"], o["cycle"], o["about"], o["about_cycle"], excerpts.clean(o["response"], 200)]
            for o in obs[-8:]
        ]
        return (
            head
            + html_figure(
                plots.observations(obs),
                f"{len(obs)} observation(s): the observer's cycle against the subject's cycle it saw.",
            )
            + "<h3>The latest</h3>"
            + html_table(["observer", "cycle", "subject", "subject's cycle", "observation"], rows)
        )
    return ""


def said_section(conn: sqlite3.Connection) -> str:
    parts = ["<h2 id='said'>What they said</h2>"]
    said = excerpts.said(conn, per_instance=3, limit=400)
    if not said:
        return parts[0] + "<p>No generated text recorded.</p>"
    for iid, items in said.items():
        parts.append(f"<h3>{esc(iid)}</h3>")
        parts += [
            f"<p class='note'>life {s.life}, cycle {s.cycle}</p><blockquote>{esc(s.text)}</blockquote>"
            for s in items
        ]
    return "".join(parts)


def provenance_section(p: provenance.Provenance, db: Path) -> str:
    parts = ["<h2 id='provenance'>Provenance</h2>"]
    parts.append(
        html_table(
            ["", ""],
            [
                ["experiment", p.experiment],
                ["mode", p.mode],
                ["experiment file", p.experiment_file],
                [
                    "experiment file sha256 (controller's copy)",
                    p.experiment_file_sha256 or "not found on the controller",
                ],
                ["results database", db],
                *[[k, v] for k, v in p.versions.items()],
            ],
        )
    )
    parts.append("<h3>Placement</h3>")
    parts.append(
        html_table(
            ["instance", "node", "address", "model", "model path", "memory MiB", "GPU", "GPU MiB"],
            [
                [
                    x["instance"],
                    x["node"],
                    x["address"],
                    x["model"],
                    x["model_path"],
                    x["memory_mib"],
                    "yes" if x["gpu"] else "no",
                    x["gpu_memory_mib"],
                ]
                for x in p.placement
            ],
        )
    )
    parts.append("<h3>Models</h3>")
    parts.append(
        html_table(
            ["model", "file", "sha256", "from"],
            [[m["name"], m["file"], m["sha256"], m["sha256_from"]] for m in p.models],
        )
    )
    parts.append("<h3>Nodes</h3>")
    parts.append(
        html_table(
            ["node", "kind", "RAM MiB", "CPU cores", "GPU"],
            [
                [n["name"], n["kind"] or "not in the inventory given", n["ram_mib"], n["cpu_cores"], n["gpu"]]
                for n in p.nodes
            ],
        )
    )
    return "".join(parts)


def render(name: str, db: Path, cluster: Cluster | None = None) -> str:
    conn = sqlite3.connect(f"file:{db}?mode=ro", uri=True)
    conn.row_factory = sqlite3.Row
    try:
        prov = provenance.collect(conn, name, cluster)
        ids = sorted(str(r[0]) for r in conn.execute("SELECT DISTINCT instance_id FROM instances"))
        t0 = activity.start(conn) or 0.0
        body = [
            f"<h1>{esc(name)} <span class='note'>({esc(prov.mode)})</span></h1>",
            f"<p class='note'>{len(ids)} instance(s); report written "
            f"{datetime.now(UTC).strftime('%Y-%m-%d %H:%M:%S UTC')}; the run started "
            f"{datetime.fromtimestamp(t0, UTC).strftime('%Y-%m-%d %H:%M:%S UTC') if t0 else '-'}.</p>",
            timeline_section(conn, ids, t0),
            memory_section(conn, cluster, t0),
            talk_section(conn),
            mode_section(conn, prov.mode, ids),
            said_section(conn),
            provenance_section(prov, db),
        ]
    finally:
        conn.close()
    return (
        "<!DOCTYPE html>\n<html lang='en'><head><meta charset='utf-8'>"
        f"<title>edgejar report: {esc(name)}</title><style>{STYLE}</style></head><body>"
        + "\n".join(body)
        + "</body></html>\n"
    )


def write(results_dir: Path, names: list[str], cluster: Cluster | None = None) -> list[Path]:
    """Write results/<name>/report.html for each name (an experiment with a results database)."""
    out = []
    for name in names:
        db = results_dir / name / DB_NAME
        path = results_dir / name / REPORT_NAME
        atomic.write_all({path: render(name, db, cluster)})
        out.append(path)
    return out
