"""Which replica a request goes to: the front door's routing strategies. Pure: the backends' state and
the clock in, one backend out; the front door (app.py) keeps the state and measures.

Every strategy picks among the *eligible* backends only: serving the requested model, not drained, not
unreachable (the front door polls each replica's port), not cooling down after a failure. Each request
then waits in its backend's own queue (priority first).

- round_robin: the eligible backends in turn (by id), whatever their load: an even spread.
- least_busy: the fewest requests in flight plus queued; ties in turn.
- latency: the shortest predicted time for this request, time to first token plus the expected tokens
  over the decode rate, both measured on answered requests and decayed (below); a backend never
  measured is predicted fastest, so each one is tried.
- capability: a smooth weighted round robin over static weights (the node's GPU and cores, written by
  the front door's role): a GPU node takes its share, a Pi a smaller one, whatever the measurements.
- adaptive: the shortest predicted *completion*: (requests in flight + queued + 1) x the predicted
  service time. It weighs load and speed together, so a slow backend gets less as long as its queue
  would make the request finish later, and more as soon as it would not.

Decay, so that no estimate only ever moves one way: each measurement enters an exponential moving
average (ALPHA), and an estimate that has not been refreshed for a while drifts back toward the pool's
mean (weight 0.5 ** (age / HALF_LIFE_S)), so a backend that was slow and got no traffic is tried again
and re-measured once it may have recovered.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field

STRATEGIES = ("round_robin", "least_busy", "latency", "capability", "adaptive")
ALPHA = 0.3  # weight of a new measurement in the moving averages
HALF_LIFE_S = 30.0  # an unrefreshed estimate is half its own, half the pool's mean after this long
DEFAULT_TTFT_S = 0.0  # what an unmeasured backend is predicted: fastest, so it is tried
DEFAULT_TOKENS = 64  # the expected length of an answer when the request does not bound it


@dataclass
class Backend:
    id: str
    model: str  # the served name it answers for
    node: str
    weight: float = 1.0  # capability weight (static)
    in_flight: int = 0
    queued: int = 0
    ttft_s: float | None = None  # moving average of the time to the first token
    decode_tps: float | None = None  # moving average of tokens per second after the first
    measured_at: float = 0.0
    cooldown_until: float = 0.0
    failures: int = 0  # consecutive failures (the cool-down doubles with each)
    drained: bool = False  # by an admin
    unreachable: bool = False  # by the front door's own poll (its port does not answer)
    served: int = 0
    _current: float = field(default=0.0, repr=False)  # smooth weighted round robin's running weight

    def eligible(self, model: str, now: float) -> bool:
        return self.model == model and not (self.drained or self.unreachable) and now >= self.cooldown_until


def observe(b: Backend, ttft_s: float, tokens: int, decode_s: float, now: float) -> None:
    """Fold one answered request's measurements into the backend's moving averages."""
    b.ttft_s = ttft_s if b.ttft_s is None else (1 - ALPHA) * b.ttft_s + ALPHA * ttft_s
    if tokens > 1 and decode_s > 0:
        rate = (tokens - 1) / decode_s
        b.decode_tps = rate if b.decode_tps is None else (1 - ALPHA) * b.decode_tps + ALPHA * rate
    b.measured_at = now


def _decayed(own: float | None, pool: float | None, age: float) -> float | None:
    if own is None:
        return None
    if pool is None:
        return own
    keep = 0.5 ** (max(age, 0.0) / HALF_LIFE_S)
    return keep * own + (1 - keep) * pool


def _mean(values: Sequence[float | None]) -> float | None:
    known = [v for v in values if v is not None]
    return sum(known) / len(known) if known else None


def pool_means(pool: Sequence[Backend]) -> tuple[float | None, float | None]:
    """The pool's mean time to first token and mean decode rate (what unrefreshed estimates drift to)."""
    return _mean([p.ttft_s for p in pool]), _mean([p.decode_tps for p in pool])


def predicted_service_s(
    b: Backend,
    pool: Sequence[Backend],
    tokens: int,
    now: float,
    means: tuple[float | None, float | None] | None = None,
) -> float:
    """Time to first token plus `tokens` at the decode rate, from decayed estimates; 0 when unmeasured.
    `means`: pool_means(pool), when the caller already has it."""
    mean_ttft, mean_rate = means if means is not None else pool_means(pool)
    age = now - b.measured_at
    ttft = _decayed(b.ttft_s, mean_ttft, age)
    rate = _decayed(b.decode_tps, mean_rate, age)
    return (DEFAULT_TTFT_S if ttft is None else ttft) + (tokens / rate if rate else 0.0)


@dataclass
class Router:
    """The strategy in force and the turn of the rotating ones. `choose` is the only decision."""

    strategy: str = "round_robin"
    turn: int = 0

    def choose(
        self, backends: Sequence[Backend], model: str, now: float, tokens: int | None = None
    ) -> Backend | None:
        """The backend for one request for `model`, or None when no backend may take it."""
        pool = sorted((b for b in backends if b.eligible(model, now)), key=lambda b: b.id)
        if not pool:
            return None
        want = tokens or DEFAULT_TOKENS
        means = pool_means(pool)
        if self.strategy == "round_robin":
            pick = pool[self.turn % len(pool)]
        elif self.strategy == "least_busy":
            low = min(b.in_flight + b.queued for b in pool)
            ties = [b for b in pool if b.in_flight + b.queued == low]
            pick = ties[self.turn % len(ties)]
        elif self.strategy == "latency":
            pick = min(
                pool,
                key=lambda b: (predicted_service_s(b, pool, want, now, means), b.in_flight + b.queued, b.id),
            )
        elif self.strategy == "capability":
            total = sum(b.weight for b in pool)
            for b in pool:
                b._current += b.weight
            pick = max(pool, key=lambda b: (b._current, -pool.index(b)))
            pick._current -= total
        elif self.strategy == "adaptive":
            pick = min(
                pool,
                key=lambda b: (
                    (b.in_flight + b.queued + 1) * predicted_service_s(b, pool, want, now, means),
                    b.id,
                ),
            )
        else:
            raise ValueError(f"unknown strategy {self.strategy!r} (one of {', '.join(STRATEGIES)})")
        self.turn += 1
        return pick


def cool_down(b: Backend, now: float, base_s: float, max_s: float) -> float:
    """A failed backend rests base_s, doubled with each consecutive failure up to max_s; returns the rest."""
    b.failures += 1
    rest = min(max_s, base_s * 2 ** (b.failures - 1))
    b.cooldown_until = now + rest
    return rest


def recovered(b: Backend) -> None:
    """An answered request ends the backend's run of failures."""
    b.failures = 0
