"""The front door's Prometheus metrics (prometheus_client, one registry per front door)."""

from __future__ import annotations

import contextlib

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram

LATENCY_BUCKETS = (0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 120.0)


class Metrics:
    def __init__(self) -> None:
        r = self.registry = CollectorRegistry()
        self.requests = Counter(
            "edgejar_frontdoor_requests", "Requests answered, by model, backend and HTTP status.",
            ["model", "backend", "status"], registry=r,
        )  # fmt: skip
        self.errors = Counter(
            "edgejar_frontdoor_errors", "Requests refused or failed at the front door, by kind.",
            ["kind"], registry=r,
        )  # fmt: skip
        self.retries = Counter(
            "edgejar_frontdoor_retries", "Requests sent again to another backend after a failure.",
            ["model"], registry=r,
        )  # fmt: skip
        self.latency = Histogram(
            "edgejar_frontdoor_request_seconds", "Time from the request to the end of its answer.",
            ["model"], buckets=LATENCY_BUCKETS, registry=r,
        )  # fmt: skip
        self.ttft = Histogram(
            "edgejar_frontdoor_time_to_first_token_seconds",
            "Time from the request to the first token (streaming answers).",
            ["model"], buckets=LATENCY_BUCKETS, registry=r,
        )  # fmt: skip
        self.tokens = Counter(
            "edgejar_frontdoor_completion_tokens", "Tokens generated, by backend.", ["backend"], registry=r
        )
        self.decode_rate = Gauge(
            "edgejar_frontdoor_backend_decode_tokens_per_second",
            "The backend's decode rate, moving average (what latency and adaptive routing use).",
            ["backend"], registry=r,
        )  # fmt: skip
        self.in_flight = Gauge(
            "edgejar_frontdoor_in_flight", "Requests in flight, by backend.", ["backend"], registry=r
        )
        self.queued = Gauge(
            "edgejar_frontdoor_queued", "Requests waiting, by priority.", ["priority"], registry=r
        )
        self.up = Gauge(
            "edgejar_frontdoor_backend_up", "1 when the backend takes requests (not drained, not resting).",
            ["backend"], registry=r,
        )  # fmt: skip
        self.cooldown = Gauge(
            "edgejar_frontdoor_backend_cooldown_seconds", "Seconds left of the backend's cool-down.",
            ["backend"], registry=r,
        )  # fmt: skip
        self.strategy = Gauge(
            "edgejar_frontdoor_strategy", "1 for the routing strategy in force.", ["strategy"], registry=r
        )

    def forget(self, backend: str) -> None:
        """Drop a removed backend's gauges (its counters stay: what it served still happened)."""
        for gauge in (self.decode_rate, self.in_flight, self.up, self.cooldown):
            with contextlib.suppress(KeyError):
                gauge.remove(backend)
