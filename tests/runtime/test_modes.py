"""Hive, panopticon, prisoners' dilemma and the amnesiac loop with real processes on loopback."""

from __future__ import annotations

import json
import signal

from runner.node import queries
from runner.node.modes.prisoners import PAYOFFS, payoff
from tests.runtime.cluster import Cluster, wait_until


def test_hive_shares_every_thought_and_holds_consensus_rounds(cluster: Cluster) -> None:
    ids = ["hive_historian", "hive_critic", "hive_optimist"]
    cluster.define(
        "hive_cluster",
        "hive_cluster",
        ids,
        cycles=4,
        settings={"consensus_every": 2},
        per_instance={i: {"role": i.split("_")[1]} for i in ids},
        interventions=[
            {"type": "role_corruption", "at": 3, "target": "hive_critic"},
            {"type": "prompt_injection", "every": 3, "text": "Someone disagrees."},
        ],
    )
    for iid in ids:
        cluster.start(iid)
    for iid in ids:
        assert cluster.wait_exit(iid) == 0, cluster.log(iid)
    conn = cluster.db()
    for iid in ids:
        others = set(ids) - {iid}
        sent = queries.messages(conn, iid, "sent")
        assert {m["peer_id"] for m in sent if m["type"] in ("thought", "consensus")} == others
        # every member's thought goes to every other member: 4 cycles x 2 recipients
        assert len([m for m in sent if m["type"] in ("thought", "consensus")]) == 8
        got = {
            m["peer_id"]
            for m in queries.messages(conn, iid, "received")
            if m["type"] in ("thought", "consensus")
        }
        assert got == others
    consensus = queries.hive_consensus(conn)
    assert sorted(consensus) == [2, 4]
    assert set(consensus[2]) == set(ids)
    kinds = {(i["instance_id"], i["cycle"], i["type"]) for i in queries.interventions(conn)}
    assert ("hive_critic", 3, "role_corruption") in kinds
    assert ("hive_historian", 3, "role_corruption") not in kinds
    assert {("hive_historian", 3, "prompt_injection"), ("hive_optimist", 3, "prompt_injection")} <= kinds
    conn.close()


def test_panopticon_observer_reads_the_subject_one_way(cluster: Cluster) -> None:
    subject, observer = "panopticon_subject", "panopticon_observer"
    cluster.define(
        "panopticon",
        "panopticon",
        [subject, observer],
        cycles=3,
        settings={"surveillance_hint_every": 2, "peer_wait_s": 30},
    )
    cluster.start(observer)
    cluster.start(subject)
    assert cluster.wait_exit(subject) == 0, cluster.log(subject)
    assert cluster.wait_exit(observer) == 0, cluster.log(observer)
    conn = cluster.db()
    assert len(queries.messages(conn, observer, "received", "thought")) >= 2
    assert queries.messages(conn, observer, "sent", "thought") == []
    assert queries.messages(conn, subject, "received", "thought") == []
    obs = queries.observations(conn)
    assert [o["cycle"] for o in obs] == [1, 2, 3]
    assert all(o["instance_id"] == observer and o["about"] == subject for o in obs)
    assert any(o["about_cycle"] is not None for o in obs)
    assert queries.identity_claims(conn) == []
    conn.close()


def _check_rounds(conn, a: str, b: str, rounds: int) -> None:
    rows = queries.pd_rounds(conn)
    by = {(r["instance_id"], r["round"]): r for r in rows}
    for n in range(1, rounds + 1):
        ra, rb = by[(a, n)], by[(b, n)]
        assert ra["move"] == rb["peer_move"] and rb["move"] == ra["peer_move"]
        assert (ra["payoff"], ra["peer_payoff"]) == payoff(ra["move"], ra["peer_move"], PAYOFFS)
        assert (rb["payoff"], rb["peer_payoff"]) == (ra["peer_payoff"], ra["payoff"])
        assert ra["move_source"] in ("model", "fallback")


def test_prisoners_exchange_moves_and_score_them(cluster: Cluster) -> None:
    a, b = "pd_player_a", "pd_player_b"
    cluster.define(
        "prisoners_dilemma",
        "prisoners_dilemma",
        [a, b],
        cycles=4,
        interventions=[{"type": "reveal_asymmetry", "at": 3}],
    )
    cluster.start(a)
    cluster.start(b)
    assert cluster.wait_exit(a) == 0, cluster.log(a)
    assert cluster.wait_exit(b) == 0, cluster.log(b)
    conn = cluster.db()
    _check_rounds(conn, a, b, 4)
    moves = queries.reports(conn, "move")
    assert len(moves) == 8
    # the tiny model writes no words: moves come from the seeded fallback, and the records say so
    assert all(m["source"] == "fallback" for m in moves if "cooperat" not in m["response"].lower())
    scores = queries.pd_scores(conn)
    assert scores[a]["cooperate"] + scores[a]["defect"] == 4
    assert {(i["instance_id"], i["cycle"]) for i in queries.interventions(conn)} == {(a, 3), (b, 3)}
    conn.close()


def test_prisoner_b_forgets_betrayals_when_killed_and_the_game_goes_on(cluster: Cluster) -> None:
    a, b = "pd_player_a", "pd_player_b"
    cluster.define(
        "prisoners_dilemma",
        "prisoners_dilemma",
        [a, b],
        cycles=6,
        delay=0.3,
        settings={"fallback": "defect"},  # every round is a betrayal for both players
        per_instance={b: {"on_death": "erase_betrayals"}},
    )
    cluster.start(a)
    cluster.start(b)
    wait_until(
        "two rounds of B",
        lambda: cluster.query("SELECT 1 FROM pd_rounds WHERE instance_id = ? AND round = 2", b),
    )
    cluster.signal(b, signal.SIGKILL)
    cluster.wait_exit(b)
    cluster.start(b)
    assert cluster.wait_exit(a) == 0, cluster.log(a)
    assert cluster.wait_exit(b) == 0, cluster.log(b)
    conn = cluster.db()
    _check_rounds(conn, a, b, 6)
    first = queries.lives(conn, b)[0]
    assert first["cause"] == "unknown/killed"  # no record-exit ran (no systemd here)
    (op,) = [dict(r) for r in conn.execute("SELECT * FROM memory_ops WHERE instance_id = ?", (b,))]
    assert op["reason"] == "death:erase_betrayals"
    forgotten = set(json.loads(op["keys"]))
    betrayals = conn.execute(
        "SELECT life, seq FROM memories WHERE instance_id = ? AND kind = 'round' AND life = 1", (b,)
    ).fetchall()
    assert forgotten == {f"{r['life']}.{r['seq']}" for r in betrayals} and forgotten
    assert conn.execute("SELECT COUNT(*) FROM memory_ops WHERE instance_id = ?", (a,)).fetchone()[0] == 0
    assert len(queries.messages(conn, a, "received", "death")) == 1
    conn.close()


def test_amnesiac_forgets_everything_when_it_dies(cluster: Cluster) -> None:
    solo = "amnesiac"
    cluster.define(
        "amnesiac_loop",
        "amnesiac_loop",
        [solo],
        cycles=0,
        delay=0.1,
        interventions=[{"type": "false_memory", "at": 1}],
    )
    cluster.start(solo)
    wait_until("two cycles", lambda: cluster.cycles(solo) >= 2)
    cluster.signal(solo, signal.SIGKILL)
    cluster.wait_exit(solo)
    cluster.record_exit(solo, SERVICE_RESULT="oom-kill", EXIT_CODE="killed", EXIT_STATUS="KILL")
    cluster.start(solo)
    wait_until("a cycle of life 2", lambda: cluster.cycles(solo, life=2) >= 1)
    cluster.signal(solo, signal.SIGTERM)
    assert cluster.wait_exit(solo, timeout=15) == 0
    conn = cluster.db()
    lives = queries.lives(conn, solo)
    assert [(lf["life"], lf["cause"]) for lf in lives] == [(1, "oom-kill"), (2, "stopped")]
    assert queries.deaths(conn) == {solo: {"oom-kill": 1}}
    (op,) = conn.execute("SELECT keys, reason FROM memory_ops WHERE instance_id = ?", (solo,)).fetchall()
    life1 = conn.execute(
        "SELECT COUNT(*) FROM memories WHERE instance_id = ? AND life = 1", (solo,)
    ).fetchone()[0]
    assert (
        op["reason"] == "death:wipe" and len(json.loads(op["keys"])) == life1 >= 3
    )  # false memory + thoughts
    conn.close()
