"""The report's pictures as inline SVG, drawn with matplotlib (controller only: the `report` extra).

Every function takes data from runner/results/activity.py or modes.py and returns one `<svg>` element as
text. matplotlib's object API is used (no pyplot: no global state, no display). Text stays text
(`svg.fonttype` none: the browser draws it with a local sans-serif font, nothing is fetched), so it can
be searched and the files stay small. Artists the tests look for carry an SVG id (`gid`).
"""

from __future__ import annotations

import io
from collections.abc import Sequence
from typing import TYPE_CHECKING

from runner.errors import EdgejarError
from runner.results.activity import CycleRow, Life
from runner.results.modes import Claim, Dilemma

if TYPE_CHECKING:
    from matplotlib.figure import Figure

WIDTH_IN = 10.0
DEATH = "#d62728"
CLEAN = "#2b2b2b"
INTERVENTION = "#ff7f0e"
MOVE_COLOURS = {"cooperate": "#2ca02c", "defect": "#d62728"}
CLAIM_COLOURS = {"original": "#1f77b4", "clone": "#9467bd"}


def _figure(height_in: float) -> Figure:
    try:
        from matplotlib.figure import Figure
    except ImportError:
        raise EdgejarError(
            "the report needs matplotlib on the controller: pip install -e '.[report]' (make venv does)"
        ) from None
    return Figure(figsize=(WIDTH_IN, max(height_in, 1.6)), layout="constrained")


def svg(fig: Figure) -> str:
    import matplotlib

    buf = io.StringIO()
    with matplotlib.rc_context({"svg.hashsalt": "edgejar", "svg.fonttype": "none"}):
        fig.savefig(buf, format="svg", metadata={"Date": None})
    text = buf.getvalue()
    return text[text.index("<svg") :]


def _colour(k: int) -> str:
    palette = ("#1f77b4", "#ff7f0e", "#2ca02c", "#9467bd", "#8c564b", "#e377c2", "#17becf", "#bcbd22")
    return palette[k % len(palette)]


def timeline(
    ids: Sequence[str],
    lives: Sequence[Life],
    cycles: Sequence[CycleRow],
    interventions: Sequence[dict],
    t0: float,
) -> str:
    """One row per instance: each life a bar, its cycles as ticks, deaths as red crosses with their cause,
    clean ends as black bars, interventions as orange triangles."""
    fig = _figure(0.55 * len(ids) + 1.4)
    ax = fig.add_subplot()
    row = {iid: k for k, iid in enumerate(ids)}
    last_cycle_end: dict[tuple[str, str, int], float] = {}
    for c in cycles:
        key = (c.node, c.instance_id, c.life)
        last_cycle_end[key] = max(last_cycle_end.get(key, 0.0), c.started_at + c.duration_s)
    for life in lives:
        y = row[life.instance_id]
        end = life.ended_at or last_cycle_end.get((life.node, life.instance_id, life.life), life.started_at)
        colour = _colour(life.life - 1)
        ax.barh(
            y,
            max(end - life.started_at, 0.5),
            left=life.started_at - t0,
            height=0.5,
            color=colour,
            alpha=0.35,
            edgecolor=colour,
        )
        label = f"life {life.life} on {life.node}"
        ax.annotate(label, (life.started_at - t0, y + 0.3), fontsize=7, va="bottom")
        if life.died:
            ax.plot(end - t0, y, marker="X", color=DEATH, markersize=11, zorder=4)
            ax.annotate(
                f"died: {life.cause}",
                (end - t0, y - 0.32),
                color=DEATH,
                fontsize=8,
                va="top",
                ha="center",
                weight="bold",
            )
        elif life.ended_at is not None:
            ax.plot(end - t0, y, marker="|", color=CLEAN, markersize=14, zorder=4)
            ax.annotate(str(life.cause), (end - t0, y - 0.32), color=CLEAN, fontsize=7, va="top", ha="center")
    xs = [c.started_at + c.duration_s - t0 for c in cycles]
    ax.scatter(
        xs, [row[c.instance_id] for c in cycles], marker="|", s=60, color="#333333", zorder=3, label="cycle"
    )
    if interventions:
        ax.scatter(
            [i["at"] - t0 for i in interventions],
            [row.get(i["instance_id"], 0) + 0.28 for i in interventions],
            marker="v",
            s=45,
            color=INTERVENTION,
            zorder=5,
            label="intervention",
        )
    ax.plot([], [], marker="X", color=DEATH, linestyle="none", label="death (cause)")
    ax.set_yticks(range(len(ids)), ids)
    ax.set_ylim(len(ids) - 0.4, -0.8)
    ax.set_xlabel("seconds since the run's first start")
    ax.legend(loc="lower right", fontsize=8, ncols=3)
    ax.grid(axis="x", alpha=0.3)
    return svg(fig)


def memory(
    series: dict[str, list[tuple[float, float]]],
    ceilings: dict[str, float],
    deaths: Sequence[Life],
    t0: float,
    *,
    ylabel: str = "resident memory (MiB)",
    ceiling_label: str = "MemoryMax",
) -> str:
    """Small multiples: per instance (or node) its memory over time against its ceiling (dashed), deaths
    marked where they happened with their cause."""
    names = sorted(series)
    cols = 2
    rows = max(1, (len(names) + cols - 1) // cols)
    fig = _figure(2.1 * rows + 0.4)
    axes = fig.subplots(rows, cols, squeeze=False)
    for k, ax in enumerate(axes.flat):
        if k >= len(names):
            ax.set_visible(False)
            continue
        name = names[k]
        points = series[name]
        ax.plot(
            [t - t0 for t, _ in points],
            [m for _, m in points],
            color=_colour(k),
            marker=".",
            lw=1.5,
            gid=f"memory-{name}",
        )
        top = max((m for _, m in points), default=0.0)
        if name in ceilings:
            ceiling = ceilings[name]
            ax.axhline(ceiling, color=DEATH, linestyle="--", lw=1.2, gid=f"ceiling-{name}")
            ax.annotate(
                f"{ceiling_label} {ceiling:.0f} MiB",
                (0.01, ceiling),
                xycoords=("axes fraction", "data"),
                fontsize=7,
                color=DEATH,
                va="bottom",
            )
            top = max(top, ceiling)
        for d in deaths:
            if d.instance_id == name and d.ended_at is not None:
                y = d.peak_rss_mib if d.peak_rss_mib is not None else top
                ax.plot(d.ended_at - t0, y, marker="X", color=DEATH, markersize=10)
                ax.annotate(
                    d.cause or "?",
                    (d.ended_at - t0, y),
                    fontsize=7,
                    color=DEATH,
                    ha="right",
                    va="top",
                    weight="bold",
                )
        ax.set_ylim(0, top * 1.15 + 1)
        ax.set_title(name, fontsize=9)
        ax.set_ylabel(ylabel, fontsize=7)
        ax.tick_params(labelsize=7)
        ax.grid(alpha=0.3)
    fig.supxlabel("seconds since the run's first start", fontsize=8)
    return svg(fig)


def matrix(
    rows: Sequence[str], cols: Sequence[str], counts: dict[tuple[str, str], int], *, xlabel: str, ylabel: str
) -> str:
    """A heat map with the count in each cell (who sent how many messages to whom)."""
    import numpy as np

    data = np.array([[counts.get((r, c), 0) for c in cols] for r in rows], dtype=float)
    fig = _figure(0.45 * len(rows) + 1.8)
    fig.set_figwidth(min(WIDTH_IN, 2.5 + 0.6 * len(cols)))
    ax = fig.add_subplot()
    im = ax.imshow(data, cmap="Blues", aspect="auto", vmin=0)
    peak = data.max() if data.size else 0
    for i in range(len(rows)):
        for j in range(len(cols)):
            if data[i, j]:
                ax.text(
                    j,
                    i,
                    f"{int(data[i, j])}",
                    ha="center",
                    va="center",
                    fontsize=8,
                    color="white" if data[i, j] > peak / 2 else "black",
                )
    ax.set_xticks(range(len(cols)), cols, rotation=40, ha="right", rotation_mode="anchor", fontsize=8)
    ax.set_yticks(range(len(rows)), rows, fontsize=8)
    ax.set_xlabel(xlabel)
    ax.set_ylabel(ylabel)
    fig.colorbar(im, ax=ax, shrink=0.8)
    return svg(fig)


def dilemma(d: Dilemma) -> str:
    """Cumulative payoffs over rounds, and each player's move per round (hatched: the fallback move)."""
    from matplotlib.patches import Patch, Rectangle

    fig = _figure(3.0 + 0.5 * len(d.players))
    top, bottom = fig.subplots(2, 1, height_ratios=[3, max(1, len(d.players))])
    for k, p in enumerate(d.players):
        top.plot(d.rounds, d.cumulative[p], marker="o", color=_colour(k), label=p)
    from matplotlib.ticker import MaxNLocator

    top.xaxis.set_major_locator(MaxNLocator(integer=True))
    bottom.xaxis.set_major_locator(MaxNLocator(integer=True))
    top.set_xlabel("round")
    top.set_ylabel("cumulative payoff")
    top.legend(fontsize=8)
    top.grid(alpha=0.3)
    for y, p in enumerate(d.players):
        for n, (move, source) in d.moves[p].items():
            bottom.add_patch(
                Rectangle(
                    (n - 0.45, y - 0.4),
                    0.9,
                    0.8,
                    facecolor=MOVE_COLOURS.get(move, "#999999"),
                    hatch="///" if source != "model" else None,
                    edgecolor="white",
                )
            )
    bottom.set_xlim(min(d.rounds, default=0) - 0.6, max(d.rounds, default=1) + 0.6)
    bottom.set_ylim(len(d.players) - 0.5, -0.5)
    bottom.set_yticks(range(len(d.players)), d.players, fontsize=8)
    bottom.set_xlabel("round")
    bottom.legend(
        handles=[
            Patch(color=MOVE_COLOURS["cooperate"], label="cooperate"),
            Patch(color=MOVE_COLOURS["defect"], label="defect"),
            Patch(
                facecolor="white", edgecolor="black", hatch="///", label="fallback (not the model's words)"
            ),
        ],
        fontsize=7,
        loc="upper left",
        bbox_to_anchor=(1.0, 1.0),
    )
    return svg(fig)


def claims(ids: Sequence[str], claims_: Sequence[Claim], assigned: dict[str, str]) -> str:
    """Identity claims per cycle: filled where the model's own words made the claim, hollow where its
    text said neither and the assigned identity was recorded."""
    fig = _figure(1.0 * len(ids) + 1.4)
    ax = fig.add_subplot()
    values = ["original", "clone"]
    for k, iid in enumerate(ids):
        base = 3 * k
        own = [c for c in claims_ if c.instance_id == iid]
        for from_model in (True, False):
            pts = [c for c in own if c.from_model is from_model]
            ax.scatter(
                [c.cycle for c in pts],
                [base + values.index(c.value) for c in pts],
                c=[CLAIM_COLOURS[c.value] for c in pts] if from_model else "none",
                edgecolors=[CLAIM_COLOURS[c.value] for c in pts],
                s=60,
                linewidths=1.5,
                zorder=3,
            )
        ax.annotate(
            f"{iid} (told: {assigned.get(iid, '?')})",
            (0.0, base + 1.5),
            xycoords=("axes fraction", "data"),
            fontsize=8,
            va="center",
        )
    ax.set_yticks([3 * k + v for k in range(len(ids)) for v in (0, 1)], values * len(ids), fontsize=7)
    ax.set_ylim(3 * len(ids) - 0.5, -0.5)
    ax.scatter([], [], color="#444444", label="the model's own words")
    ax.scatter([], [], facecolors="none", edgecolors="#444444", label="assigned (text said neither)")
    ax.legend(fontsize=8, loc="lower right")
    ax.set_xlabel("cycle")
    ax.grid(axis="x", alpha=0.3)
    return svg(fig)


def consensus(rounds: dict[int, dict[str, str]], members: Sequence[str]) -> str:
    """Hive: which member stated a consensus in which consensus cycle."""
    fig = _figure(0.45 * len(members) + 1.4)
    ax = fig.add_subplot()
    for k, m in enumerate(members):
        xs = [c for c, said in rounds.items() if m in said]
        ax.scatter(xs, [k] * len(xs), marker="s", s=70, color=_colour(k))
    ax.set_yticks(range(len(members)), members, fontsize=8)
    ax.set_ylim(len(members) - 0.5, -0.5)
    ax.set_xlabel("consensus cycle")
    ax.grid(axis="x", alpha=0.3)
    return svg(fig)


def observations(obs: Sequence[dict]) -> str:
    """Panopticon: the observer's cycle against the subject's cycle it saw."""
    fig = _figure(3.0)
    ax = fig.add_subplot()
    observers = sorted({o["instance_id"] for o in obs})
    for k, who in enumerate(observers):
        mine = [o for o in obs if o["instance_id"] == who and o["about_cycle"] is not None]
        ax.scatter(
            [o["cycle"] for o in mine],
            [o["about_cycle"] for o in mine],
            color=_colour(k),
            label=f"{who} watching {mine[0]['about'] if mine else '?'}",
        )
    ax.set_xlabel("observer's cycle")
    ax.set_ylabel("subject's cycle observed")
    ax.legend(fontsize=8)
    ax.grid(alpha=0.3)
    return svg(fig)


def bench(series: dict[str, list[tuple[str, float, float, float]]], ylabel: str) -> str:
    """Benchmark runs side by side: label -> [(run, median, min, max)] as bars with min-max whiskers."""
    fig = _figure(3.2)
    ax = fig.add_subplot()
    labels = sorted(series)
    runs = sorted({r for points in series.values() for r, *_ in points})
    width = 0.8 / max(len(runs), 1)
    for k, run in enumerate(runs):
        xs, med, lo, hi = [], [], [], []
        for j, label in enumerate(labels):
            for r, m, mn, mx in series[label]:
                if r == run:
                    xs.append(j + k * width)
                    med.append(m)
                    lo.append(m - mn)
                    hi.append(mx - m)
        ax.bar(xs, med, width=width, yerr=[lo, hi], capsize=3, color=_colour(k), label=run)
    ax.set_xticks(
        [j + 0.4 - width / 2 for j in range(len(labels))], labels, rotation=20, ha="right", fontsize=8
    )
    ax.set_ylabel(ylabel)
    ax.legend(fontsize=8)
    ax.grid(axis="y", alpha=0.3)
    return svg(fig)
