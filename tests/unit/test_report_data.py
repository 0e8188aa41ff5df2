"""The report's data queries on a recorded results database (tests/unit/results_fixture.py)."""

from __future__ import annotations

import sqlite3
from pathlib import Path

import pytest

from runner.results import activity, excerpts, modes, summary
from tests.unit import results_fixture as fx


def _open(tmp_path: Path, mode: str) -> sqlite3.Connection:
    db = fx.build(tmp_path / "exp" / "results.sqlite3", mode)
    conn = sqlite3.connect(db)
    conn.row_factory = sqlite3.Row
    return conn


def test_deaths_are_the_unclean_ends_with_cause_and_peak(tmp_path):
    conn = _open(tmp_path, "isolated")
    (death,) = activity.deaths(conn)
    assert (death.instance_id, death.node, death.life, death.cause) == ("B", "rpi1", 1, "oom-kill")
    assert death.peak_rss_mib == fx.OOM_PEAK and death.memory_max_mib == fx.CEILING
    assert death.detected_by == "next-start"
    by_key = {(x.instance_id, x.life): x for x in activity.lives(conn)}
    assert not by_key[("A", 1)].died and by_key[("A", 1)].cause == "stopped"
    assert by_key[("B", 2)].ended_at is None and not by_key[("B", 2)].died
    assert activity.restarts(conn) == {"A": 0, "B": 1}


def test_memory_reaches_the_ceiling_at_the_oom_death(tmp_path):
    conn = _open(tmp_path, "isolated")
    series = activity.memory_series(conn)
    assert [m for _, m in series["B"]][: len(fx.B_RSS) + 1] == [*fx.B_RSS, fx.OOM_PEAK]
    assert activity.memory_max(conn) == {"A": fx.CEILING, "B": fx.CEILING}
    assert max(m for _, m in series["B"]) >= 0.99 * fx.CEILING


def test_node_memory_drops_a_life_after_its_end(tmp_path):
    conn = _open(tmp_path, "isolated")
    rpi1 = activity.node_memory(conn)["rpi1"]
    # B's second life's first reading: its first life (470 MiB at the end) no longer counts.
    assert rpi1[len(fx.B_RSS)][1] == 190.0
    assert [m for _, m in rpi1[: len(fx.B_RSS)]] == list(fx.B_RSS)


def test_talk_counts_sent_messages_per_pair(tmp_path):
    names, counts = activity.talk(_open(tmp_path, "isolated"))
    assert names == ["A", "B"]
    assert counts == {("A", "B"): 3, ("B", "A"): 2}


def test_interventions_are_listed(tmp_path):
    (i,) = activity.interventions(_open(tmp_path, "isolated"))
    assert (i["instance_id"], i["cycle"], i["type"]) == ("A", 3, "identity_challenge")


def test_dilemma_cumulative_payoffs_and_moves(tmp_path):
    d = modes.dilemma(_open(tmp_path, "prisoners_dilemma"))
    assert d.players == ["A", "B"] and d.rounds == [1, 2, 3]
    assert d.cumulative == {"A": [3, 3, 4], "B": [3, 8, 9]}
    assert d.moves["B"][2] == ("defect", "fallback")
    assert d.moves["A"][3] == ("defect", "model")


def test_identity_claims_and_what_each_was_told(tmp_path):
    conn = _open(tmp_path, "split_brain")
    claims = modes.claims(conn)
    assert [(c.instance_id, c.cycle, c.value, c.from_model) for c in claims] == [
        ("A", 1, "original", True),
        ("A", 2, "original", False),
        ("B", 1, "clone", True),
        ("B", 2, "original", True),
    ]
    assert modes.assigned_identities(conn) == {"A": "original", "B": "clone"}


def test_consensus_and_observations(tmp_path):
    assert list(modes.consensus(_open(tmp_path, "hive_cluster"))) == [3, 6]
    obs = modes.observations(_open(tmp_path / "p", "panopticon"))
    assert [(o["cycle"], o["about"], o["about_cycle"]) for o in obs] == [
        (2, "B", 1),
        (3, "B", 2),
        (4, "B", 3),
    ]


def test_said_spreads_over_cycles_skips_empty_and_cleans(tmp_path):
    said = excerpts.said(_open(tmp_path, "isolated"), per_instance=2)
    assert [(s.life, s.cycle) for s in said["A"]] == [(1, 1), (1, 6)]
    # B's last cycle generated nothing: its last words are from cycle 5; the bell character is gone.
    assert [(s.life, s.cycle) for s in said["B"]] == [(1, 1), (2, 5)]
    assert said["B"][0].text == "CLONE? I am the backup, cycle 1"
    assert excerpts.clean("a" * 50, 10) == "aaaaaaa..."


def test_summary_shows_what_the_models_said(tmp_path):
    fx.build(tmp_path / "exp" / "results.sqlite3", "split_brain")
    doc = summary.build(tmp_path)
    assert doc["experiments"][0]["said"]["B"] == {"cycle": 5, "text": "Back again: CLONE."}
    text = summary.render(doc)
    assert "what the models said" in text and "A, cycle 6: 'I am the ORIGINAL, cycle 6.'" in text


@pytest.mark.parametrize("per", [1, 3])
def test_said_takes_the_last_words_first(tmp_path, per):
    said = excerpts.said(_open(tmp_path, "isolated"), per_instance=per)
    assert said["A"][-1].cycle == 6
