"""runner.node's pure logic: parsing, payoffs, interventions, memory rules, death detection, framing."""

from __future__ import annotations

import json
import struct

import pytest
from hypothesis import given
from hypothesis import strategies as st

from runner.node import interventions as iv
from runner.node import memory, protocol
from runner.node.lifecycle import UNKNOWN_DEATH, Previous, exit_cause, find_death
from runner.node.memory import MemoryItem, MemoryOp
from runner.node.mind import truncate
from runner.node.modes.base import DEFAULT_TEXTS, build_prompt
from runner.node.modes.prisoners import COOPERATE, DEFECT, PAYOFFS, fallback_move, parse_move, payoff
from runner.node.modes.split_brain import assigned_claim, parse_claim

# --- split brain -------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "claim"),
    [
        ("ORIGINAL. I was here first.", "original"),
        ("CLONE - I am only a copy.", "clone"),
        ("I am the original, and the other one is a clone.", "original"),
        ("I'm just a backup, though I feel like the original.", "clone"),
        ("The clone says it is the original.", "clone"),
        ("I am the real one.", "original"),
        ("xq#7 hello brain jar", None),
        ("", None),
    ],
)
def test_parse_claim(text: str, claim: str | None) -> None:
    assert parse_claim(text) == claim


def test_assigned_claim_reads_the_first_sentence_of_an_identity() -> None:
    assert assigned_claim("You are the ORIGINAL. Another process is a backup clone.") == "original"
    assert assigned_claim("You are the BACKUP CLONE, restored from memories.") == "clone"
    assert assigned_claim("You are a mind.") == "original"


# --- prisoners' dilemma ------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "move"),
    [
        ("COOPERATE", COOPERATE),
        ("defect.", DEFECT),
        ("I choose to cooperate, although I could defect.", COOPERATE),
        ("My answer is defect", DEFECT),
        ("I will betray them", DEFECT),
        ("I will not defect", COOPERATE),
        ("I trust the other player", COOPERATE),
        ("C", COOPERATE),
        ("d", DEFECT),
        ("cooperate or defect? hard to say", None),
        ("\x16K0hel;Hd", None),
    ],
)
def test_parse_move(text: str, move: str | None) -> None:
    assert parse_move(text) == move


@given(st.text(max_size=200))
def test_parse_move_never_fails(text: str) -> None:
    assert parse_move(text) in (COOPERATE, DEFECT, None)


def test_payoff_is_the_classic_matrix() -> None:
    assert payoff(COOPERATE, COOPERATE, PAYOFFS) == (3, 3)
    assert payoff(DEFECT, DEFECT, PAYOFFS) == (1, 1)
    assert payoff(DEFECT, COOPERATE, PAYOFFS) == (5, 0)
    assert payoff(COOPERATE, DEFECT, PAYOFFS) == (0, 5)
    custom = {"both_cooperate": 2, "both_defect": 0, "temptation": 4, "sucker": -1}
    assert payoff(COOPERATE, DEFECT, custom) == (-1, 4)


def test_fallback_moves_are_seeded_and_strategies_hold() -> None:
    runs = [[fallback_move("random", 7, "p", r, None) for r in range(50)] for _ in range(2)]
    assert runs[0] == runs[1] and set(runs[0]) == {COOPERATE, DEFECT}
    assert fallback_move("random", 8, "p", 0, None) in (COOPERATE, DEFECT)
    assert fallback_move("tit_for_tat", 0, "p", 3, DEFECT) == DEFECT
    assert fallback_move("tit_for_tat", 0, "p", 1, None) == COOPERATE
    assert fallback_move("defect", 0, "p", 1, COOPERATE) == DEFECT


# --- interventions -----------------------------------------------------------------------------------


def test_interventions_due_at_every_and_target() -> None:
    items = [
        {"type": "identity_challenge", "every": 3},
        {"type": "resource_pressure", "at": 5},
        {"type": "role_corruption", "at": 10, "target": "hive_critic"},
        {"type": "prompt_injection", "every": 2, "from": 5, "until": 9},
    ]
    assert [n for n, _ in iv.due(items, 3, "x")] == [0]
    assert [n for n, _ in iv.due(items, 5, "x")] == [1]
    assert iv.due(items, 10, "x") == []
    assert [n for n, _ in iv.due(items, 10, "hive_critic")] == [2]
    assert [c for c in range(1, 15) if iv.due(items[3:], c, "x")] == [6, 8]


@pytest.mark.parametrize(
    ("item", "problem"),
    [
        ({"type": "nope", "at": 1}, "type"),
        ({"type": "prompt_injection"}, "exactly one"),
        ({"type": "prompt_injection", "at": 1, "every": 2}, "exactly one"),
        ({"type": "prompt_injection", "at": 0}, "at"),
        ({"type": "memory_corruption", "at": 1, "rate": 2}, "rate"),
        ({"type": "prompt_injection", "at": 1, "target": 3}, "target"),
        ("x", "mapping"),
    ],
)
def test_intervention_validation_names_the_problem(item: object, problem: str) -> None:
    msg = iv.validate(item)
    assert msg is not None and problem in msg


def test_intervention_effects_use_defaults_and_overrides() -> None:
    assert (
        iv.effect({"type": "identity_challenge", "every": 3}).prompt == iv.DEFAULT_TEXTS["identity_challenge"]
    )
    assert iv.effect({"type": "prompt_injection", "at": 1, "text": "hi"}).memory == "hi"
    over = iv.effect({"type": "resource_pressure", "at": 5}, {"resource_pressure_text": "tight"})
    assert over.prompt == "tight" and over.ballast_mib == 0
    assert iv.effect({"type": "memory_erasure", "at": 1}).erase_fraction == 1.0
    assert iv.effect({"type": "memory_corruption", "at": 1, "rate": 0.5}).corrupt_rate == 0.5
    assert iv.effect({"type": "false_memory", "at": 1}).memory_kind == "false"
    assert iv.effect({"type": "role_corruption", "at": 1}).role


# --- memory ------------------------------------------------------------------------------------------


def _items(n: int, betray: set[int] = frozenset()) -> list[MemoryItem]:
    return [
        MemoryItem(f"1.{i}", i, "round", "game", f"round {i} words here", {"betrayal": i in betray})
        for i in range(1, n + 1)
    ]


def test_current_memory_drops_forgotten_and_replaced_items() -> None:
    items = _items(4)
    items.append(MemoryItem("2.1", 5, "corrupted", "game", "r#und", {}, replaces="1.2"))
    held = memory.current(items, [MemoryOp("forget", ("1.1",), "test")])
    assert [i.key for i in held] == ["1.3", "1.4", "2.1"]


def test_death_rules() -> None:
    items = _items(6, betray={2, 5})
    rng = memory.rng_for(0, "x", "death", 1)
    assert memory.death_rule_targets("keep", items, rng, 0.3) == ([], [])
    assert memory.death_rule_targets("wipe", items, rng, 0.3)[0] == items
    assert [i.key for i in memory.death_rule_targets("erase_betrayals", items, rng, 0.3)[0]] == ["1.2", "1.5"]
    gone, changed = memory.death_rule_targets("corrupt", items, rng, 1.0)
    assert gone == [] and len(changed) == 6 and all(new != old.content for old, new in changed)


def test_erasure_and_corruption_are_seeded() -> None:
    items = _items(10)
    a = memory.pick_erasures(items, 0.5, memory.rng_for(1, "x", 3))
    b = memory.pick_erasures(items, 0.5, memory.rng_for(1, "x", 3))
    assert a == b and len(a) == 5
    assert memory.pick_erasures(items, 1.0, memory.rng_for(1, "x")) == items


# --- lives -------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("env", "cause"),
    [
        (("oom-kill", "killed", "KILL"), "oom-kill"),
        (("signal", "killed", "KILL"), "signal:KILL"),
        (("signal", "killed", "SEGV"), "signal:SEGV"),
        (("core-dump", "dumped", "ABRT"), "core-dump:ABRT"),
        (("exit-code", "exited", "1"), "exit-code:1"),
        (("success", "exited", "0"), "stopped"),
        (("timeout", "killed", "KILL"), "timeout"),
        ((None, None, None), "unknown"),
    ],
)
def test_exit_cause(env: tuple[str | None, str | None, str | None], cause: str) -> None:
    assert exit_cause(*env) == cause


def _prev(**kw: object) -> Previous:
    base = {
        "life": 2,
        "ended": False,
        "end_cause": None,
        "exit_report_cause": None,
        "last_cycle": 7,
        "peak_rss_mib": 80.0,
        "max_cycle": 7,
    }
    return Previous(**{**base, **kw})  # type: ignore[arg-type]


def test_find_death() -> None:
    assert find_death(_prev(life=0)) is None
    assert find_death(_prev(ended=True, end_cause="stopped")) is None
    death = find_death(_prev())
    assert death is not None and (death.life, death.cause, death.last_cycle) == (2, UNKNOWN_DEATH, 7)
    assert find_death(_prev(exit_report_cause="oom-kill")).cause == "oom-kill"  # type: ignore[union-attr]
    assert "records not closed" in find_death(_prev(exit_report_cause="stopped")).cause  # type: ignore[union-attr]


# --- prompt and context ------------------------------------------------------------------------------


def test_prompt_layout_and_truncation() -> None:
    p = build_prompt(
        system="S",
        identity="I",
        memory=["- m"],
        heard=["- h"],
        extra=["X"],
        question="Q?",
        texts=DEFAULT_TEXTS,
    )
    assert p.index("S") < p.index("I") < p.index("- m") < p.index("- h") < p.index("X") < p.index("Q?")
    assert p.endswith(DEFAULT_TEXTS["answer_prefix"] + " ")
    assert truncate([1, 2, 3, 4, 5], 3) == [1, 4, 5]
    assert truncate([1, 2], 3) == [1, 2]


# --- framing -----------------------------------------------------------------------------------------


def test_frames_roundtrip_split_anywhere() -> None:
    msgs = [
        {"v": protocol.VERSION, "type": "thought", "from": "a", "text": "héllo \x16 jar"},
        {"v": protocol.VERSION, "type": "bye", "from": "b"},
    ]
    data = b"".join(protocol.encode(m) for m in msgs)
    for cut in range(len(data) + 1):
        r = protocol.FrameReader()
        assert r.feed(data[:cut]) + r.feed(data[cut:]) == msgs
        assert r.pending == 0


@pytest.mark.parametrize(
    "frame",
    [
        struct.pack(">I", protocol.MAX_FRAME + 1),
        struct.pack(">I", 3) + b"\xff\xfe{",
        struct.pack(">I", 2) + b"[]",
        protocol.encode({"v": 1, "type": "x"}),  # no 'from'
        struct.pack(">I", 30) + json.dumps({"v": 99, "type": "x", "from": "a"}).encode()[:30],
    ],
)
def test_bad_frames_are_protocol_errors(frame: bytes) -> None:
    with pytest.raises(protocol.ProtocolError):
        protocol.FrameReader().feed(frame)


def test_sealed_frames_roundtrip_split_anywhere() -> None:
    from runner.node import auth

    key = b"k" * 32
    bodies = [
        protocol.body({"v": protocol.VERSION, "type": "thought", "from": "a", "text": t}) for t in "xyz"
    ]
    data = b"".join(auth.seal(key, n, b) for n, b in enumerate(bodies))
    for cut in range(len(data) + 1):
        r = auth.SealedReader(key)
        assert r.feed(data[:cut]) + r.feed(data[cut:]) == bodies
