"""Deciding a node's status from a poll, and the hysteresis that keeps one lost packet from moving anything.

States (documented in docs/health.md):
- MAINTENANCE: `node_maintenance` is true. Wins over everything; the other findings are still listed.
- UNAVAILABLE: SSH to the node has failed on every poll for at least `grace_s` seconds.
- DEGRADED: any threshold crossed (memory, disk, memory cgroup missing on a node that runs instances, a
  failed systemd unit, the probe itself failing), or SSH failing for less than the grace period
  ("unreachable for N s (grace G s)": a suspect node, not yet moved off).
- HEALTHY: none of the above.
Pure functions: no clock, no I/O; the caller passes `now` (monotonic seconds).
"""

from __future__ import annotations

from dataclasses import dataclass

from runner.health.model import NodeSample, PollResult, Status

GIB = 1024**3


@dataclass(frozen=True)
class Thresholds:
    """Documented defaults; `python -m runner health` and the monitor take them as flags."""

    mem_used_max: float = 0.90  # DEGRADED above 90 % of memory used (MemTotal - MemAvailable)
    disk_used_max: float = 0.95  # DEGRADED when the data disk is 95 % full ...
    disk_free_min_bytes: int = 1 * GIB  # ... or has less than 1 GiB free
    grace_s: float = 30.0  # UNAVAILABLE only after SSH failed continuously this long


@dataclass(frozen=True)
class Link:
    """Hysteresis state of one node's connection: when it started failing and when it last answered."""

    failing_since: float | None = None
    last_ok: float | None = None
    last_sample: NodeSample | None = None
    last_error: str | None = None


def step(link: Link, result: PollResult) -> Link:
    """The next link state after a poll. A probe that ran but printed garbage still proves the node is
    reachable; only an SSH failure (result.unreachable) starts or continues the failing period."""
    if result.ok:
        return Link(None, result.at, result.sample, None)
    if not result.unreachable:
        return Link(None, result.at, link.last_sample, result.error)
    since = link.failing_since if link.failing_since is not None else result.at
    return Link(since, link.last_ok, link.last_sample, result.error)


def sample_problems(sample: NodeSample, th: Thresholds, limits_needed: bool) -> list[str]:
    """Why a reachable node is DEGRADED (empty: healthy)."""
    problems = []
    if sample.mem_total_bytes and sample.mem_used_fraction > th.mem_used_max:
        problems.append(
            f"memory {sample.mem_used_fraction:.0%} used (over {th.mem_used_max:.0%}, "
            f"{sample.mem_used_bytes / GIB:.1f} of {sample.mem_total_bytes / GIB:.1f} GiB)"
        )
    if sample.disk_total_bytes and (
        sample.disk_used_fraction >= th.disk_used_max or sample.disk_avail_bytes < th.disk_free_min_bytes
    ):
        problems.append(
            f"disk {sample.disk_path} nearly full ({sample.disk_used_fraction:.0%} used, "
            f"{sample.disk_avail_bytes / GIB:.1f} GiB free)"
        )
    if limits_needed and not sample.memory_cgroup:
        problems.append("no memory cgroup: instance memory ceilings (MemoryMax) cannot be enforced")
    if sample.failed_units:
        problems.append(f"failed units: {', '.join(sample.failed_units)}")
    return problems


def decide(
    link: Link, now: float, th: Thresholds, *, maintenance: bool, limits_needed: bool
) -> tuple[Status, tuple[str, ...]]:
    """Status and reasons of a node from its link state (after `step`)."""
    reasons: list[str] = []
    if link.failing_since is not None:
        down_for = max(0.0, now - link.failing_since)
        unavailable = down_for >= th.grace_s
        reasons.append(
            f"unreachable for {down_for:.0f} s (grace {th.grace_s:g} s): {link.last_error or 'no answer'}"
        )
        status = Status.UNAVAILABLE if unavailable else Status.DEGRADED
    elif link.last_error is not None:
        reasons.append(f"probe failed: {link.last_error}")
        status = Status.DEGRADED
    elif link.last_sample is None:
        reasons.append("not polled yet")
        status = Status.DEGRADED
    else:
        reasons += sample_problems(link.last_sample, th, limits_needed)
        status = Status.DEGRADED if reasons else Status.HEALTHY
    if maintenance:
        return Status.MAINTENANCE, ("node_maintenance is true", *reasons)
    return status, tuple(reasons)
