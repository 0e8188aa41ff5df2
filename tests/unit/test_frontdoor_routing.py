"""The front door's routing strategies (runner/node/frontdoor/routing.py): pure decisions over backend
state, each checked against what its rule says it does."""

from __future__ import annotations

from collections import Counter

import pytest

from runner.node.frontdoor import routing
from runner.node.frontdoor.routing import Backend, Router


def pool(*ids: str, model: str = "chat") -> list[Backend]:
    return [Backend(id=i, model=model, node=f"node-{i}") for i in ids]


def spread(router: Router, backends: list[Backend], n: int, now: float = 100.0) -> Counter[str]:
    picks: Counter[str] = Counter()
    for _ in range(n):
        b = router.choose(backends, "chat", now)
        assert b is not None
        picks[b.id] += 1
    return picks


def test_round_robin_spreads_evenly_over_the_eligible_backends_whatever_their_load() -> None:
    backends = pool("a", "b", "c")
    backends[0].in_flight = 5
    assert spread(Router("round_robin"), backends, 9) == {"a": 3, "b": 3, "c": 3}


def test_only_backends_of_the_model_not_drained_and_not_cooling_down_are_chosen() -> None:
    backends = pool("a", "b", "c") + pool("x", model="other")
    backends[0].drained = True
    routing.cool_down(backends[1], now=100.0, base_s=5.0, max_s=60.0)
    assert spread(Router("round_robin"), backends, 4) == {"c": 4}
    assert spread(Router("round_robin"), backends, 2, now=106.0) == {"b": 1, "c": 1}  # rested
    assert Router().choose(backends, "missing", 100.0) is None


def test_least_busy_takes_the_fewest_in_flight_and_queued() -> None:
    backends = pool("a", "b", "c")
    backends[0].in_flight, backends[1].in_flight, backends[1].queued = 1, 1, 1
    assert Router("least_busy").choose(backends, "chat", 0.0).id == "c"
    backends[2].in_flight = 3
    assert Router("least_busy").choose(backends, "chat", 0.0).id == "a"


def test_latency_prefers_the_faster_measured_backend_and_tries_the_unmeasured_first() -> None:
    backends = pool("fast", "slow", "new")
    routing.observe(backends[0], ttft_s=0.05, tokens=33, decode_s=0.32, now=100.0)  # 100 tok/s
    routing.observe(backends[1], ttft_s=0.40, tokens=33, decode_s=3.2, now=100.0)  # 10 tok/s
    router = Router("latency")
    assert router.choose(backends, "chat", 100.0).id == "new"  # never measured: predicted fastest
    routing.observe(backends[2], ttft_s=0.2, tokens=33, decode_s=1.0, now=100.0)
    assert spread(router, backends, 5) == {"fast": 5}


def test_capability_splits_by_weight_smoothly() -> None:
    backends = pool("jetson", "pi1", "pi2")
    backends[0].weight = 4.0
    picks = spread(Router("capability"), backends, 12)
    assert picks == {"jetson": 8, "pi1": 2, "pi2": 2}


def test_adaptive_weighs_queue_and_speed_and_moves_both_ways() -> None:
    """The written rule: the shortest (in flight + queued + 1) x predicted service time. A slow backend
    gets requests once the fast one's queue would make a request finish later; after the slow one stops
    being measured its estimate drifts back to the pool's mean, so it is tried again."""
    fast, slow = pool("fast", "slow")
    routing.observe(fast, ttft_s=0.1, tokens=65, decode_s=0.64, now=0.0)  # ~0.74 s for 64 tokens
    routing.observe(slow, ttft_s=0.1, tokens=65, decode_s=2.56, now=0.0)  # ~2.66 s
    router = Router("adaptive")
    assert router.choose([fast, slow], "chat", 0.0).id == "fast"
    fast.in_flight, fast.queued = 1, 2  # 4 x 0.74 s > 1 x 2.66 s
    assert router.choose([fast, slow], "chat", 0.0).id == "slow"
    fast.in_flight = fast.queued = 0
    # the slow backend, idle and unmeasured for a long time, is predicted near the pool's mean again
    later = 10 * routing.HALF_LIFE_S
    assert routing.predicted_service_s(slow, [fast, slow], 64, later) < routing.predicted_service_s(
        slow, [fast, slow], 64, 0.0
    )
    routing.observe(slow, ttft_s=0.1, tokens=65, decode_s=0.3, now=later)  # it recovered: measured fast
    routing.observe(slow, ttft_s=0.1, tokens=65, decode_s=0.3, now=later)
    routing.observe(fast, ttft_s=0.1, tokens=65, decode_s=0.64, now=later)
    assert router.choose([fast, slow], "chat", later).id == "slow"


def test_the_cool_down_doubles_with_each_failure_up_to_its_bound_and_an_answer_resets_it() -> None:
    (b,) = pool("a")
    assert [routing.cool_down(b, 0.0, 2.0, 10.0) for _ in range(4)] == [2.0, 4.0, 8.0, 10.0]
    routing.recovered(b)
    assert routing.cool_down(b, 0.0, 2.0, 10.0) == 2.0


def test_an_unknown_strategy_is_refused_with_the_choices() -> None:
    with pytest.raises(ValueError, match="unknown strategy 'fastest' \\(one of round_robin, least_busy"):
        Router("fastest").choose(pool("a"), "chat", 0.0)


def test_a_released_slot_goes_to_the_highest_priority_then_the_oldest_waiter() -> None:
    """queueing.Slots: with the backend busy, lows queued first and a high queued last, the high gets
    the slot first; a waiter that gave up (cancelled) is skipped and its place passes on."""
    import asyncio

    from runner.node.frontdoor.queueing import Slots

    async def scenario() -> list[str]:
        (b,) = pool("a")
        slots = Slots(b, limit=1)
        order: list[str] = []
        await slots.acquire("normal")  # the request in flight
        assert b.in_flight == 1

        async def wait(name: str, priority: str) -> None:
            await slots.acquire(priority)
            order.append(name)
            slots.release()

        tasks = [asyncio.create_task(wait(n, p)) for n, p in
                 (("low-1", "low"), ("low-2", "low"), ("gone", "high"), ("normal-1", "normal"), ("high-1", "high"))]  # fmt: skip
        await asyncio.sleep(0)
        assert b.queued == 5 and slots.queued_by_priority["low"] == 2
        tasks[2].cancel()  # the client went away while queued
        await asyncio.sleep(0)
        slots.release()  # the request in flight ends
        await asyncio.gather(*(t for t in tasks if t is not tasks[2]))
        assert b.in_flight == 0 and b.queued == 0
        return order

    assert asyncio.run(scenario()) == ["high-1", "normal-1", "low-1", "low-2"]


def test_the_key_file_names_its_problem_and_roles_decide(tmp_path) -> None:
    import json

    from runner.node.frontdoor import keys

    path = tmp_path / "keys.json"
    path.write_text(
        json.dumps({"keys": [{"name": "ro", "sha256": keys.digest("k" * 20), "role": "readonly"}]})
    )
    store = keys.KeyStore(path)
    who = store.identify("Bearer " + "k" * 20)
    assert who == keys.Identity("ro", "readonly") and who.may("read") and not who.may("inference")
    assert store.identify("Bearer other") is None and store.identify("k" * 20) is None
    with pytest.raises(keys.KeyFileError, match=r"keys\[0\]\.role: must be one of admin, user, readonly"):
        keys.parse(path, {"keys": [{"name": "x", "sha256": "0" * 64, "role": "root"}]})
    with pytest.raises(keys.KeyFileError, match=r"keys\[0\]\.sha256: must be 64 lower-case hex"):
        keys.parse(path, {"keys": [{"name": "x", "sha256": "plain-key", "role": "user"}]})
    # rotated in place: the new key works at once, the old one no longer; a broken file keeps the last keys
    path.write_text(json.dumps({"keys": [{"name": "u", "sha256": keys.digest("n" * 20), "role": "user"}]}))
    assert store.identify("Bearer " + "n" * 20) == keys.Identity("u", "user")
    assert store.identify("Bearer " + "k" * 20) is None
    path.write_text("{broken")
    assert store.identify("Bearer " + "n" * 20) == keys.Identity("u", "user") and store.error
