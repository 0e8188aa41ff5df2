"""What an experiment's results database says, as a dict (for --json) and as text.

Per instance: node, lives, deaths and their causes, how the last life ended, cycles, tokens, tokens/s,
messages sent and received. Per experiment, the mode's outcome: split brain's identity claims, the
prisoners' dilemma's payoff table and scores, the hive's consensus rounds, the panopticon's observations.
"""

from __future__ import annotations

import sqlite3
from collections import Counter
from pathlib import Path
from typing import Any

from runner.errors import EdgejarError
from runner.node import queries
from runner.results import excerpts, training
from runner.results.merge import DB_NAME, NODES_DIR

TEXT_CHARS = 100  # model text shown in the summary is cut to this length
SAID_LINES = 4  # what the models said: this many instances' latest words per experiment


def _short(text: str | None) -> str:
    text = " ".join((text or "").split())
    return text if len(text) <= TEXT_CHARS else text[: TEXT_CHARS - 3] + "..."


def find(results_dir: Path, names: list[str] | None = None) -> dict[str, Path]:
    """experiment -> results database under `results_dir` (all of them, or the named ones that exist)."""
    found = {p.parent.name: p for p in sorted(results_dir.glob(f"*/{DB_NAME}")) if p.parent.name != NODES_DIR}
    if names is None:
        return found
    return {n: found[n] for n in names if n in found}


def instances(conn: sqlite3.Connection) -> list[dict[str, Any]]:
    lives: dict[str, list[dict[str, Any]]] = {}
    for r in queries.lives(conn):
        lives.setdefault(r["instance_id"], []).append(r)
    deaths = queries.deaths(conn)
    stats = queries.cycle_stats(conn)
    msgs = queries.message_counts(conn)
    out = []
    for r in conn.execute(
        "SELECT instance_id, GROUP_CONCAT(DISTINCT node) AS nodes, MIN(mode) AS mode, MIN(model) AS model "
        "FROM instances GROUP BY instance_id ORDER BY instance_id"
    ):
        iid = r["instance_id"]
        own = lives.get(iid, [])
        last = own[-1] if own else None
        st = stats.get(iid, {})
        tps = st.get("tokens_per_s")
        out.append(
            {
                "id": iid,
                "node": r["nodes"],
                "model": r["model"],
                "lives": len(own),
                "deaths": sum(deaths.get(iid, {}).values()),
                "causes": deaths.get(iid, {}),
                "state": "never started" if last is None else (last["cause"] or "running (no end recorded)"),
                "cycles": st.get("cycles", 0),
                "tokens": st.get("tokens") or 0,
                "tokens_per_s": round(tps, 1) if tps is not None else None,
                "sent": msgs.get(iid, {}).get("sent", 0),
                "received": msgs.get(iid, {}).get("received", 0),
            }
        )
    return out


def split_brain(conn: sqlite3.Connection) -> dict[str, Any]:
    per: dict[str, dict[str, Any]] = {}
    for c in queries.identity_claims(conn):
        s = per.setdefault(c["instance_id"], {"original": 0, "clone": 0, "from_model": 0, "last": None})
        s[c["value"]] = s.get(c["value"], 0) + 1
        s["from_model"] += c["source"] == "model"
        s["last"] = c["value"]
    return {"identity_claims": per}


def prisoners_dilemma(conn: sqlite3.Connection) -> dict[str, Any]:
    rounds = queries.pd_rounds(conn)
    players = sorted({r["instance_id"] for r in rounds})
    table: Counter[str] = Counter()
    if players:
        first = players[0]
        for r in rounds:
            if r["instance_id"] == first:
                table[f"{r['move']}/{r['peer_move']}"] += 1
    return {
        "players": players,
        "rounds": len({r["round"] for r in rounds}),
        "outcomes": dict(sorted(table.items())),  # first player's move / the other's, counted
        "scores": queries.pd_scores(conn),
    }


def hive_cluster(conn: sqlite3.Connection) -> dict[str, Any]:
    rounds = queries.hive_consensus(conn)
    last = max(rounds) if rounds else None
    return {
        "consensus_rounds": len(rounds),
        "last_round": last,
        "last_statements": {k: _short(v) for k, v in sorted(rounds[last].items())} if last else {},
    }


def panopticon(conn: sqlite3.Connection) -> dict[str, Any]:
    obs = queries.observations(conn)
    return {
        "observations": len(obs),
        "subject_cycles_observed": len({(o["about"], o["about_cycle"]) for o in obs}),
        "last_observation": _short(obs[-1]["response"]) if obs else None,
    }


OUTCOMES = {
    training.MODE: training.outcome,
    "split_brain": split_brain,
    "prisoners_dilemma": prisoners_dilemma,
    "hive_cluster": hive_cluster,
    "panopticon": panopticon,
}


def experiment(name: str, db: Path) -> dict[str, Any]:
    """The summary of one experiment's results database; EdgejarError naming the file when it is not one."""
    try:
        return _experiment(name, db)
    except sqlite3.DatabaseError as exc:
        raise EdgejarError(
            f"{db}: not a readable results database ({exc}); `runner collect` writes it anew from the nodes"
        ) from None


def _experiment(name: str, db: Path) -> dict[str, Any]:
    conn = sqlite3.connect(f"file:{db}?mode=ro", uri=True)
    conn.row_factory = sqlite3.Row
    try:
        row = conn.execute("SELECT mode FROM experiments WHERE name = ? LIMIT 1", (name,)).fetchone()
        mode = row["mode"] if row else "unknown"
        outcome = OUTCOMES[mode](conn) if mode in OUTCOMES else {}
        logs = conn.execute("SELECT COUNT(*) FROM logs").fetchone()[0]
        return {
            "name": name,
            "mode": mode,
            "database": str(db),
            "instances": instances(conn),
            "outcome": outcome,
            "said": {
                iid: {"cycle": items[-1].cycle, "text": items[-1].text}
                for iid, items in excerpts.said(conn, per_instance=1, limit=TEXT_CHARS).items()
            },
            "log_lines": logs,
        }
    finally:
        conn.close()


def build(results_dir: Path, names: list[str] | None = None) -> dict[str, Any]:
    return {
        "results_dir": str(results_dir),
        "experiments": [experiment(n, db) for n, db in find(results_dir, names).items()],
    }


def _causes(causes: dict[str, int]) -> str:
    return ", ".join(f"{c} x{n}" for c, n in sorted(causes.items())) or "-"


def _outcome_lines(exp: dict[str, Any]) -> list[str]:
    o = exp["outcome"]
    if exp["mode"] == "split_brain":
        return [
            f"  identity claims of {iid}: original {s.get('original', 0)}, clone {s.get('clone', 0)} "
            f"({s['from_model']} from the model's words, the rest its assigned identity); last: {s['last']}"
            for iid, s in sorted(o["identity_claims"].items())
        ] or ["  no identity claims recorded"]
    if exp["mode"] == "prisoners_dilemma":
        if not o["players"]:
            return ["  no rounds recorded"]
        lines = [f"  {o['rounds']} round(s); outcomes ({o['players'][0]}'s move/the other's): "]
        lines[0] += ", ".join(f"{k} x{n}" for k, n in o["outcomes"].items()) or "-"
        for p, s in sorted(o["scores"].items()):
            lines.append(
                f"  {p}: payoff {s['payoff']}, cooperated {s['cooperate']}, defected {s['defect']} "
                f"({s['fallback']} fallback moves)"
            )
        return lines
    if exp["mode"] == "hive_cluster":
        lines = [f"  {o['consensus_rounds']} consensus round(s)"]
        if o["last_round"] is not None:
            lines[0] += f"; the last, at cycle {o['last_round']}:"
            lines += [f"    {m}: {t!r}" for m, t in o["last_statements"].items()]
        return lines
    if exp["mode"] == "panopticon":
        line = f"  {o['observations']} observation(s) of {o['subject_cycles_observed']} subject cycle(s)"
        return [line] + ([f"    last: {o['last_observation']!r}"] if o["last_observation"] else [])
    return []


def _said_lines(exp: dict[str, Any]) -> list[str]:
    said = sorted(exp.get("said", {}).items())
    if not said:
        return []
    lines = ["  what the models said (each instance's latest words):"]
    lines += [f"    {iid}, cycle {s['cycle']}: {s['text']!r}" for iid, s in said[:SAID_LINES]]
    if len(said) > SAID_LINES:
        lines.append(f"    ... and {len(said) - SAID_LINES} more instance(s): report.html has them all")
    return lines


def render(doc: dict[str, Any]) -> str:
    from runner.commands.common import table

    if not doc["experiments"]:
        return f"no results under {doc['results_dir']} (run `python -m runner collect`)"
    blocks = []
    header = ["instance", "node", "lives", "deaths (causes)", "last life", "cycles", "tok/s", "sent", "recv"]
    for exp in doc["experiments"]:
        if exp["mode"] == training.MODE:
            o = exp["outcome"]
            title = f"== {exp['name']} ({exp['mode']}): {exp['database']}"
            blocks.append("\n".join([title, table(training.rows(o), training.HEADER), *training.lines(o)]))
            continue
        rows = [
            [
                i["id"],
                i["node"] or "-",
                str(i["lives"]),
                f"{i['deaths']} ({_causes(i['causes'])})" if i["deaths"] else "0",
                i["state"],
                str(i["cycles"]),
                "-" if i["tokens_per_s"] is None else f"{i['tokens_per_s']:g}",
                str(i["sent"]),
                str(i["received"]),
            ]
            for i in exp["instances"]
        ]
        blocks.append(
            "\n".join(
                [
                    f"== {exp['name']} ({exp['mode']}): {exp['database']}",
                    table(rows, header),
                    *_outcome_lines(exp),
                    *_said_lines(exp),
                ]
            )
        )
    return "\n\n".join(blocks)
