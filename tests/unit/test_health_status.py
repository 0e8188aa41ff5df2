"""Status decisions and the hysteresis state machine (pure, with a hand-moved clock)."""

from __future__ import annotations

from runner.health.model import PollResult, Status
from runner.health.status import Link, Thresholds, decide, step
from tests.unit.test_health_fixtures import GIB, down, ok

TH = Thresholds(grace_s=30.0)


def assess(link, now, *, maintenance=False, limits_needed=True, th=TH):
    return decide(link, now, th, maintenance=maintenance, limits_needed=limits_needed)


def test_healthy_node():
    link = step(Link(), ok("n", 0.0))
    assert assess(link, 0.0) == (Status.HEALTHY, ())


def test_memory_over_90_percent_is_degraded():
    link = step(Link(), ok("n", 0.0, mem_total_kb=1000, mem_available_kb=50))
    st, reasons = assess(link, 0.0)
    assert st == Status.DEGRADED and "memory 95% used" in reasons[0]


def test_disk_nearly_full_by_fraction_or_by_free_space():
    by_fraction = step(Link(), ok("n", 0, disk_total=1000 * GIB, disk_avail=20 * GIB))
    by_space = step(Link(), ok("n", 0, disk_total=10 * GIB, disk_avail=GIB // 2))
    for link in (by_fraction, by_space):
        st, reasons = assess(link, 0)
        assert st == Status.DEGRADED and "nearly full" in reasons[0]


def test_missing_memory_cgroup_only_matters_where_limits_are_needed():
    link = step(Link(), ok("n", 0, cgroup={"version": 2, "memory": False}))
    assert assess(link, 0)[0] == Status.DEGRADED
    assert assess(link, 0, limits_needed=False)[0] == Status.HEALTHY


def test_a_failed_unit_is_degraded():
    link = step(Link(), ok("n", 0, failed=["edgejar-instance@a.service"]))
    st, reasons = assess(link, 0)
    assert st == Status.DEGRADED and reasons == ("failed units: edgejar-instance@a.service",)


def test_maintenance_wins_and_keeps_the_findings():
    link = step(Link(), down("n", 0))
    st, reasons = assess(link, 100, maintenance=True)
    assert st == Status.MAINTENANCE
    assert reasons[0] == "node_maintenance is true" and "unreachable" in reasons[1]


def test_unavailable_only_after_failing_for_the_whole_grace_period():
    link = step(Link(), ok("n", 0))
    link = step(link, down("n", 10))
    st, reasons = assess(link, 10)
    assert st == Status.DEGRADED and reasons[0].startswith("unreachable for 0 s (grace 30 s)")
    link = step(link, down("n", 39.9))
    assert assess(link, 39.9)[0] == Status.DEGRADED
    link = step(link, down("n", 40))
    st, reasons = assess(link, 40)
    assert st == Status.UNAVAILABLE and reasons[0].startswith("unreachable for 30 s (grace 30 s)")
    assert link.last_sample is not None  # the last good sample is kept (shown as stale)


def test_one_answer_resets_the_failing_period():
    link = step(Link(), down("n", 0))
    link = step(link, ok("n", 25))
    link = step(link, down("n", 26))
    assert assess(link, 50)[0] == Status.DEGRADED  # 24 s of failing, not 50
    assert assess(link, 56)[0] == Status.UNAVAILABLE


def test_grace_zero_is_unavailable_at_once():
    link = step(Link(), down("n", 0))
    assert assess(link, 0, th=Thresholds(grace_s=0))[0] == Status.UNAVAILABLE


def test_a_failing_probe_on_a_reachable_node_is_degraded_not_unavailable():
    link = step(Link(), PollResult("n", 0, 0.1, error="probe exited 127: python3: not found"))
    st, reasons = assess(link, 1000)
    assert st == Status.DEGRADED and reasons == ("probe failed: probe exited 127: python3: not found",)
    assert link.failing_since is None


def test_never_polled_is_not_healthy():
    assert assess(Link(), 0)[0] == Status.DEGRADED
