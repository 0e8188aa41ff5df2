"""Split brain with two real processes: messages, identity claims, a SIGKILL death, SIGTERM, a late peer."""

from __future__ import annotations

import signal

from runner.node import queries
from tests.runtime.cluster import Cluster, wait_until

A, B = "sb_A", "sb_B"


def test_two_minds_hear_each_other_and_claim_identities(cluster: Cluster) -> None:
    cluster.define(
        "split_brain",
        "split_brain",
        [A, B],
        cycles=3,
        settings={"peer_wait_s": 30},
        per_instance={B: {"identity": "You are the BACKUP CLONE of the other process."}},
        interventions=[{"type": "identity_challenge", "every": 2}],
    )
    cluster.start(A)
    cluster.start(B)
    assert cluster.wait_exit(A) == 0, cluster.log(A)
    assert cluster.wait_exit(B) == 0, cluster.log(B)
    conn = cluster.db()
    claims = queries.identity_claims(conn)
    assert sorted((c["instance_id"], c["cycle"]) for c in claims) == [
        (i, n) for i in (A, B) for n in (1, 2, 3)
    ]
    for c in claims:
        assert c["value"] in ("original", "clone")
        assert c["source"] in ("model", "fallback")
        if c["source"] == "fallback":  # the tiny model's text says nothing: the assigned identity, marked
            assert c["value"] == ("original" if c["instance_id"] == A else "clone")
    # each hears the other: every cycle after the first waits for a new thought from the peer
    for me, other in ((A, B), (B, A)):
        got = queries.messages(conn, me, "received", "thought")
        assert {m["peer_id"] for m in got} == {other}
        assert len(got) >= 2
        sent = queries.messages(conn, me, "sent", "thought")
        assert len(sent) == 3
    heard = conn.execute(
        "SELECT COUNT(*) FROM memories WHERE instance_id = ? AND kind = 'heard'", (A,)
    ).fetchone()
    assert heard[0] >= 2
    challenges = queries.interventions(conn, A)
    assert [(i["cycle"], i["type"]) for i in challenges] == [(2, "identity_challenge")]
    assert {(lf["instance_id"], lf["cause"]) for lf in queries.lives(conn)} == {
        (A, "completed"),
        (B, "completed"),
    }
    stats = queries.cycle_stats(conn)
    assert stats[A]["cycles"] == 3 and stats[A]["tokens"] > 0 and stats[A]["peak_rss_mib"] > 0
    conn.close()
    assert "sb_A life 1 cycle 3/3" in cluster.log(A)


def test_sigkill_death_is_recorded_and_told_then_sigterm_stops(cluster: Cluster) -> None:
    cluster.define("split_brain", "split_brain", [A, B], cycles=0, delay=0.2, settings={"peer_wait_s": 5})
    cluster.start(A)
    cluster.start(B)
    wait_until("two cycles of A", lambda: cluster.cycles(A) >= 2)
    cluster.signal(A, signal.SIGKILL)
    assert cluster.wait_exit(A) == -signal.SIGKILL
    assert "signal:KILL" in cluster.record_exit(
        A, SERVICE_RESULT="signal", EXIT_CODE="killed", EXIT_STATUS="KILL"
    )
    before = cluster.cycles(A, life=1)
    cluster.start(A)  # what systemd's Restart= does
    wait_until("a cycle of A's second life", lambda: cluster.cycles(A, life=2) >= 1)
    wait_until(
        "B hearing of A's death",
        lambda: cluster.query("SELECT 1 FROM messages WHERE instance_id = ? AND type = 'death'", B),
    )
    conn = cluster.db()
    first = queries.lives(conn, A)[0]
    assert first["cause"] == "signal:KILL"
    assert first["detected_by"] == "next-start"
    assert first["last_cycle"] >= before >= 2
    assert first["peak_rss_mib"] > 0
    assert first["memory_limit_mib"] == 512
    (death,) = queries.messages(conn, B, "received", "death")
    assert '"cause": "signal:KILL"' in death["content"]
    # A's second life resumes after the last recorded cycle and keeps its memory (default rule)
    second = queries.lives(conn, A)[1]
    assert second["start_cycle"] == first["last_cycle"] + 1
    assert conn.execute("SELECT COUNT(*) FROM memory_ops WHERE instance_id = ?", (A,)).fetchone()[0] == 0
    conn.close()

    for iid in (A, B):
        cluster.signal(iid, signal.SIGTERM)
    assert cluster.wait_exit(A, timeout=15) == 0
    assert cluster.wait_exit(B, timeout=15) == 0
    conn = cluster.db()
    ends = {(lf["instance_id"], lf["life"]): lf["cause"] for lf in queries.lives(conn)}
    assert ends == {(A, 1): "signal:KILL", (A, 2): "stopped", (B, 1): "stopped"}
    # records intact: every recorded cycle has its thought and numbers, and the DB is consistent
    assert conn.execute("PRAGMA integrity_check").fetchone()[0] == "ok"
    assert (
        conn.execute("SELECT COUNT(*) FROM cycles WHERE thought IS NULL OR tokens IS NULL").fetchone()[0] == 0
    )
    conn.close()


def test_a_peer_that_starts_late_is_waited_for_and_reached(cluster: Cluster) -> None:
    cluster.define("split_brain", "split_brain", [A, B], cycles=3, settings={"peer_wait_s": 120})
    cluster.start(A)
    wait_until(
        "A logging that B is down", lambda: "sb_B" in cluster.log(A) and "not reachable" in cluster.log(A)
    )
    wait_until("A's first cycle", lambda: cluster.cycles(A) >= 1)
    assert cluster.procs[A].poll() is None  # waiting, not crashed
    assert cluster.cycles(A) == 1  # cycle 2 waits for B's first thought
    cluster.start(B)
    assert cluster.wait_exit(A) == 0, cluster.log(A)
    assert cluster.wait_exit(B) == 0, cluster.log(B)
    assert "peer sb_B reached after" in cluster.log(A)
    conn = cluster.db()
    assert len(queries.messages(conn, A, "received", "thought")) >= 2
    # B's link delivered A's first thought, queued while B was down
    got = queries.messages(conn, B, "received", "thought")
    assert 1 in {m["cycle"] for m in got} and len(got) >= 2
    conn.close()
