"""The front door: one OpenAI-compatible endpoint over the serving replicas (docs/serving.md).

An ASGI app (starlette, served by uvicorn: both already in the node venv for the replicas) that checks
the caller's key and role, picks a replica with the strategy in force (routing.py), queues the request
on that replica by priority (queueing.py), forwards it with aiohttp (the replica's own key added), streams
the answer back, measures time to first token and decode rate, retries a failed replica's request on
another within a bounded budget and cools the failed one down, and exports Prometheus metrics.

Endpoints: POST /v1/chat/completions, /v1/completions, /v1/embeddings (role user or admin); GET
/v1/models (any role); GET /metrics and /admin/status (readonly or admin); PUT /admin/strategy and POST
/admin/backends/{id}/drain|ready (admin). Errors are in the OpenAI error format.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import time
from collections.abc import AsyncIterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import aiohttp
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response, StreamingResponse
from starlette.routing import Route

from runner.errors import InputError
from runner.node.frontdoor import routing
from runner.node.frontdoor.backends import BackendConf, BackendsFile
from runner.node.frontdoor.backends import parse as parse_backends
from runner.node.frontdoor.keys import Identity, KeyStore
from runner.node.frontdoor.metrics import Metrics
from runner.node.frontdoor.queueing import DEFAULT_PRIORITY, PRIORITIES, Slots
from runner.node.jsonfile import read_object

log = logging.getLogger(__name__)

PRIORITY_HEADER = "x-edgejar-priority"
MAX_BODY = 1 << 20  # a request body larger than 1 MiB is refused (413)
RETRYABLE = frozenset({500, 502, 503, 504})


def error(
    status: int, message: str, kind: str = "invalid_request_error", code: str | None = None
) -> JSONResponse:
    """An error in the OpenAI format."""
    return JSONResponse({"error": {"message": message, "type": kind, "param": None, "code": code}}, status)


@dataclass
class Door:
    """The front door's state: backends, their queues, the router, keys, metrics, the HTTP client."""

    backends: dict[str, routing.Backend]
    confs: dict[str, BackendConf]
    slots: dict[str, Slots]
    router: routing.Router
    keys: KeyStore
    retries: int = 2
    cooldown_s: tuple[float, float] = (2.0, 60.0)
    metrics: Metrics = field(default_factory=Metrics)
    client: aiohttp.ClientSession | None = None
    started: float = field(default_factory=time.time)
    poll_s: float = 5.0  # how often each replica's port is tried (0: never)
    max_in_flight: int = 1  # requests a replica serves at once (the others wait in its queue)
    backends_file: BackendsFile | None = None  # re-read when it changes (None: the config's list)

    def set_backends(self, confs: Sequence[BackendConf]) -> None:
        """Route to `confs` from now on. A replica that kept its id, node and address keeps its queue and
        measurements; a new or moved one starts afresh; a gone one takes no new request (those it
        serves finish, on the queue they hold)."""
        new = {c.id: c for c in confs}
        for bid in [b for b in self.backends if b not in new]:
            del self.backends[bid], self.confs[bid], self.slots[bid]
            self.metrics.forget(bid)
        for bid, c in new.items():
            old = self.confs.get(bid)
            if old is None or (old.url, old.node) != (c.url, c.node):
                b = routing.Backend(id=bid, model=c.model, node=c.node, weight=c.weight)
                self.backends[bid], self.slots[bid] = b, Slots(b, self.max_in_flight)
            else:
                b = self.backends[bid]
                b.model, b.weight = c.model, c.weight
            self.confs[bid] = c

    def refuse(
        self,
        kind: str,
        status: int,
        message: str,
        err_type: str = "invalid_request_error",
        code: str | None = None,
    ) -> JSONResponse:
        """A refused or failed request: counted by kind in the metrics, answered in the OpenAI format."""
        self.metrics.errors.labels(kind).inc()
        return error(status, message, err_type, code)

    def models(self) -> list[str]:
        return sorted({b.model for b in self.backends.values()})

    def update_gauges(self, now: float) -> None:
        m = self.metrics
        for bid, b in self.backends.items():
            m.in_flight.labels(bid).set(b.in_flight)
            m.up.labels(bid).set(0 if b.drained or b.unreachable or now < b.cooldown_until else 1)
            m.cooldown.labels(bid).set(max(0.0, b.cooldown_until - now))
            if b.decode_tps is not None:
                m.decode_rate.labels(bid).set(b.decode_tps)
        for p in PRIORITIES:
            m.queued.labels(p).set(sum(s.queued_by_priority[p] for s in self.slots.values()))
        for s in routing.STRATEGIES:
            m.strategy.labels(s).set(1 if s == self.router.strategy else 0)


def build(config: Mapping[str, Any], key_file: Path) -> Door:
    """The door from its config (the role writes it; docs/serving.md): its replicas from `backends_file`
    (re-read when it changes) or, without one, from the config's own `backends` list."""
    door = Door(
        backends={},
        confs={},
        slots={},
        router=routing.Router(str(config.get("strategy", "round_robin"))),
        keys=KeyStore(key_file),
        retries=int(config.get("retries", 2)),
        cooldown_s=(float(config.get("cooldown_base_s", 2.0)), float(config.get("cooldown_max_s", 60.0))),
        poll_s=float(config.get("poll_s", 5.0)),
        max_in_flight=int(config.get("max_in_flight", 1)),
    )
    if config.get("backends_file"):
        door.backends_file = BackendsFile(Path(config["backends_file"]))
        door.set_backends(door.backends_file.load())
    else:
        door.set_backends(parse_backends("config", config.get("backends")))
    return door


RELOAD_S = 1.0  # how often the replicas' file is looked at


async def follow_backends(door: Door) -> None:
    """Route to the replicas the file lists whenever it changes (a failover moved one, a new placement)."""
    while door.backends_file is not None:
        await asyncio.sleep(RELOAD_S)
        confs = door.backends_file.changed()
        if confs is not None:
            before = set(door.confs)
            door.set_backends(confs)
            added, removed = sorted(set(door.confs) - before), sorted(before - set(door.confs))
            log.info("replicas re-read: %d (added %s; removed %s)", len(confs), added, removed)


async def _reachable(url: str, timeout_s: float) -> bool:
    host, _, port = url.split("://", 1)[1].rpartition(":")
    try:
        _reader, writer = await asyncio.wait_for(asyncio.open_connection(host, int(port)), timeout_s)
    except (TimeoutError, OSError):
        return False
    writer.close()
    return True


async def poll(door: Door) -> None:
    """Mark each replica unreachable while its port does not answer (a node down, a unit stopped): it is
    left out of routing until it answers again, without a request having to fail on it first."""
    while door.poll_s > 0:
        for bid, conf in list(door.confs.items()):
            ok = await _reachable(conf.url, min(2.0, door.poll_s))
            b = door.backends.get(bid)
            if b is None or door.confs.get(bid) is not conf:  # replaced while it was tried
                continue
            if ok == b.unreachable:
                log.warning("%s: %s", bid, "reachable again" if ok else f"unreachable ({conf.url})")
            b.unreachable = not ok
        await asyncio.sleep(door.poll_s)


def _who(door: Door, request: Request, action: str) -> Identity | JSONResponse:
    who = door.keys.identify(request.headers.get("authorization"))
    if who is None:
        return door.refuse(
            "unauthorized",
            401,
            "a valid API key is required (Authorization: Bearer <key>)",
            "invalid_request_error",
            "invalid_api_key",
        )
    if not who.may(action):
        return door.refuse(
            "forbidden", 403, f"role {who.role} may not do this ({action})", "permission_error", "forbidden"
        )
    return who


async def _body(door: Door, request: Request) -> dict[str, Any] | JSONResponse:
    declared = request.headers.get("content-length", "0")
    if not declared.isdigit() or int(declared) > MAX_BODY:  # refused before it is read
        return door.refuse("too_large", 413, f"the request body is larger than {MAX_BODY} bytes")
    raw = await request.body()
    if len(raw) > MAX_BODY:
        return door.refuse("too_large", 413, f"the request body is larger than {MAX_BODY} bytes")
    try:
        doc = json.loads(raw)
    except ValueError as exc:
        return door.refuse("malformed", 400, f"the request body is not JSON: {exc}")
    if not isinstance(doc, dict):
        return door.refuse("malformed", 400, "the request body must be a JSON object")
    return doc


def _tokens_of(doc: Mapping[str, Any]) -> int:
    usage = doc.get("usage") or {}
    return int(usage.get("completion_tokens") or 0)


async def _forward(door: Door, request: Request, path: str) -> Response:
    who = _who(door, request, "inference")
    if isinstance(who, Response):
        return who
    doc = await _body(door, request)
    if isinstance(doc, Response):
        return doc
    model = doc.get("model")
    if not isinstance(model, str) or not model:
        return door.refuse(
            "malformed",
            400,
            "`model` is required: one of " + ", ".join(door.models()),
            code="model_not_found",
        )
    if model not in door.models():
        served = ", ".join(door.models()) or "none"
        message = f"no replica serves model {model!r}; served: {served}"
        return door.refuse("unknown_model", 404, message, code="model_not_found")
    priority = request.headers.get(PRIORITY_HEADER, DEFAULT_PRIORITY)
    if priority not in PRIORITIES:
        return door.refuse(
            "malformed", 400, f"{PRIORITY_HEADER}: must be one of {', '.join(PRIORITIES)}, got {priority!r}"
        )
    want = doc.get("max_tokens")
    if want is not None and (isinstance(want, bool) or not isinstance(want, int) or want < 1):
        return door.refuse("malformed", 400, f"max_tokens must be a positive whole number, got {want!r}")
    caps = [c.max_tokens_cap for c in door.confs.values() if c.model == model and c.max_tokens_cap]
    if want is not None and caps and want > min(caps):
        return door.refuse(
            "malformed", 400, f"max_tokens {want} is above what model {model!r} allows ({min(caps)})"
        )
    if want is None and caps:
        doc["max_tokens"] = want = min(caps)  # an unbounded request gets the model's bound
    stream = bool(doc.get("stream"))
    body = json.dumps(doc).encode()
    start = time.monotonic()
    tried: set[str] = set()
    last = "no replica of the model is available (all drained or cooling down)"
    for attempt in range(door.retries + 1):
        now = time.monotonic()
        pool = [b for b in door.backends.values() if b.id not in tried]
        b = door.router.choose(pool, model, now, want)
        if b is None:
            break
        tried.add(b.id)
        if attempt:
            door.metrics.retries.labels(model).inc()
        slots, conf = door.slots[b.id], door.confs[b.id]  # kept even if the replicas change meanwhile
        await slots.acquire(priority)
        served_from = time.monotonic()  # the replica's own time starts here (not the wait in its queue)
        live = stream
        content = b""
        try:
            upstream = await _post(door, conf, path, body)
            live = stream and upstream.status == 200
            if not live:  # a whole answer: read it here, so that a replica dying mid-answer is retried
                try:
                    content = await upstream.read()
                finally:
                    upstream.release()
        except (aiohttp.ClientError, TimeoutError) as exc:
            slots.release()
            rest = routing.cool_down(b, time.monotonic(), *door.cooldown_s)
            last = f"{b.id}: {type(exc).__name__}: {exc}"
            log.warning("%s failed (%s): cooling down %.0f s", b.id, last, rest)
            continue
        if upstream.status in RETRYABLE:
            slots.release()
            rest = routing.cool_down(b, time.monotonic(), *door.cooldown_s)
            last = f"{b.id}: HTTP {upstream.status}: {content[:300].decode('utf-8', 'replace')}"
            log.warning("%s answered %d: cooling down %.0f s", b.id, upstream.status, rest)
            continue
        b.served += 1
        if live:
            return StreamingResponse(
                await _started(_relay(door, b, slots, model, upstream, start, served_from)),
                status_code=200,
                media_type=upstream.headers.get("content-type", "text/event-stream"),
            )
        slots.release()
        elapsed = time.monotonic() - start
        door.metrics.requests.labels(model, b.id, str(upstream.status)).inc()
        door.metrics.latency.labels(model).observe(elapsed)
        if upstream.status == 200:
            routing.recovered(b)
            try:
                tokens = _tokens_of(json.loads(content))
            except ValueError:
                tokens = 0
            door.metrics.tokens.labels(b.id).inc(tokens)
            # a whole answer: the replica's time for it counts as decode time (no first token seen apart)
            now = time.monotonic()
            routing.observe(b, b.ttft_s if b.ttft_s is not None else 0.0, tokens + 1, now - served_from, now)
        return Response(content, upstream.status, media_type=upstream.headers.get("content-type"))
    return door.refuse(
        "unavailable", 503, f"model {model!r}: no replica answered ({last})", "server_error", "unavailable"
    )


async def _post(door: Door, conf: BackendConf, path: str, body: bytes) -> aiohttp.ClientResponse:
    """POST to a replica on a kept-alive connection (its headers and a small body leave in one packet:
    aiohttp coalesces them). A connection the replica closed (it restarted) is dropped from the pool when
    the close arrives, so it is not used again."""
    assert door.client is not None
    headers = {"Authorization": f"Bearer {conf.key}", "Content-Type": "application/json"}
    return await door.client.post(conf.url + path, data=body, headers=headers)


async def _started(relay: AsyncIterator[bytes]) -> AsyncIterator[bytes]:
    """The relay, already inside its try block: were the client to leave before the response starts,
    starlette would never iterate it, and an async generator that never started never runs its finally
    (the replica's slot would stay taken). A started one is closed by asyncio when it is dropped."""
    try:
        first = await anext(relay)
    except StopAsyncIteration:
        first = b""

    async def body() -> AsyncIterator[bytes]:
        if first:
            yield first
        async for part in relay:
            yield part

    return body()


async def _relay(
    door: Door,
    b: routing.Backend,
    slots: Slots,
    model: str,
    upstream: aiohttp.ClientResponse,
    start: float,
    served_from: float,
) -> AsyncIterator[bytes]:
    """Pass a streamed answer through, measuring the first token and the chunks (one token each): for the
    metrics from the request's arrival, for routing from when the replica took it (its queue wait is
    load, which the strategies count apart)."""
    first: float | None = None
    chunks = 0
    try:
        async for part in upstream.content.iter_any():
            if first is None and b"data:" in part:
                first = time.monotonic()
            chunks += part.count(b"data: {")
            yield part
    finally:
        if upstream.content.at_eof():
            upstream.release()  # the connection goes back to the pool
        else:
            upstream.close()  # the client left mid-answer: this connection is not reused
        slots.release()
        end = time.monotonic()
        door.metrics.requests.labels(model, b.id, "200").inc()
        door.metrics.latency.labels(model).observe(end - start)
        if first is not None:
            door.metrics.ttft.labels(model).observe(first - start)
            door.metrics.tokens.labels(b.id).inc(chunks)
            routing.recovered(b)
            routing.observe(b, first - served_from, chunks, end - first, end)


def _status(door: Door) -> dict[str, Any]:
    now = time.monotonic()
    return {
        "strategy": door.router.strategy,
        "strategies": list(routing.STRATEGIES),
        "models": door.models(),
        "keys": len(door.keys),
        "keys_error": door.keys.error,
        "backends_error": door.backends_file.error if door.backends_file else None,
        "backends": [
            {
                "id": b.id,
                "model": b.model,
                "node": b.node,
                "in_flight": b.in_flight,
                "queued": b.queued,
                "served": b.served,
                "drained": b.drained,
                "unreachable": b.unreachable,
                "cooldown_s": round(max(0.0, b.cooldown_until - now), 1),
                "failures": b.failures,
                "ttft_s": b.ttft_s,
                "decode_tokens_per_s": b.decode_tps,
                "weight": b.weight,
            }
            for b in sorted(door.backends.values(), key=lambda x: x.id)
        ],
    }


def create(door: Door) -> Starlette:
    """The ASGI app over `door`."""

    async def chat(request: Request) -> Response:
        return await _forward(door, request, "/v1/chat/completions")

    async def completions(request: Request) -> Response:
        return await _forward(door, request, "/v1/completions")

    async def embeddings(request: Request) -> Response:
        return await _forward(door, request, "/v1/embeddings")

    async def models(request: Request) -> Response:
        who = _who(door, request, "models")
        if isinstance(who, Response):
            return who
        data = [
            {"id": m, "object": "model", "created": int(door.started), "owned_by": "edgejar"}
            for m in door.models()
        ]
        return JSONResponse({"object": "list", "data": data})

    async def metrics(request: Request) -> Response:
        who = _who(door, request, "read")
        if isinstance(who, Response):
            return who
        door.update_gauges(time.monotonic())
        return Response(generate_latest(door.metrics.registry), media_type=CONTENT_TYPE_LATEST)

    async def status(request: Request) -> Response:
        who = _who(door, request, "read")
        if isinstance(who, Response):
            return who
        return JSONResponse(_status(door))

    async def strategy(request: Request) -> Response:
        who = _who(door, request, "admin")
        if isinstance(who, Response):
            return who
        doc = await _body(door, request)
        if isinstance(doc, Response):
            return doc
        name = doc.get("strategy")
        if name not in routing.STRATEGIES:
            return error(400, f"strategy: must be one of {', '.join(routing.STRATEGIES)}, got {name!r}")
        old, door.router.strategy = door.router.strategy, str(name)  # in-flight requests keep their backend
        log.info("strategy %s -> %s (by %s)", old, name, who.name)
        return JSONResponse({"strategy": name, "was": old})

    async def backend_state(request: Request) -> Response:
        who = _who(door, request, "admin")
        if isinstance(who, Response):
            return who
        bid, action = request.path_params["bid"], request.path_params["action"]
        b = door.backends.get(bid)
        if b is None:
            return error(404, f"no backend {bid!r}; backends: {', '.join(sorted(door.backends))}")
        if action not in ("drain", "ready"):
            return error(400, f"action: must be drain or ready, got {action!r}")
        b.drained = action == "drain"
        if not b.drained:
            b.cooldown_until, b.failures = 0.0, 0
        log.info("backend %s: %s (by %s)", bid, action, who.name)
        return JSONResponse({"backend": bid, "drained": b.drained})

    @contextlib.asynccontextmanager
    async def lifespan(_app: Starlette) -> AsyncIterator[None]:
        # Kept-alive connections to the replicas, no cap on their number (each replica's queue bounds
        # them); the answers passed on as they are (no decompression, no added Accept-Encoding).
        connector = aiohttp.TCPConnector(limit=0, keepalive_timeout=60)
        timeout = aiohttp.ClientTimeout(total=600.0, connect=5.0)
        async with aiohttp.ClientSession(
            connector=connector, timeout=timeout, auto_decompress=False,
            skip_auto_headers=("Accept-Encoding", "User-Agent"),
        ) as client:  # fmt: skip
            door.client = client
            tasks = [asyncio.create_task(poll(door)), asyncio.create_task(follow_backends(door))]
            try:
                yield
            finally:
                for task in tasks:
                    task.cancel()

    routes = [
        Route("/v1/chat/completions", chat, methods=["POST"]),
        Route("/v1/completions", completions, methods=["POST"]),
        Route("/v1/embeddings", embeddings, methods=["POST"]),
        Route("/v1/models", models, methods=["GET"]),
        Route("/metrics", metrics, methods=["GET"]),
        Route("/admin/status", status, methods=["GET"]),
        Route("/admin/strategy", strategy, methods=["PUT"]),
        Route("/admin/backends/{bid}/{action}", backend_state, methods=["POST"]),
    ]
    return Starlette(routes=routes, lifespan=lifespan)


def load_config(path: Path) -> dict[str, Any]:
    """The front door's config (the role writes it), checked: InputError (exit 2) names the field."""
    doc = read_object(path, "the front door's config")
    listen = doc.get("listen")
    if not isinstance(listen, dict) or not listen.get("address") or not isinstance(listen.get("port"), int):
        raise InputError(f"{path}: listen: needs address and port")
    if not isinstance(doc.get("keys_file"), str):
        raise InputError(f"{path}: keys_file: missing")
    if doc.get("strategy", "round_robin") not in routing.STRATEGIES:
        raise InputError(
            f"{path}: strategy: must be one of {', '.join(routing.STRATEGIES)}, got {doc['strategy']!r}"
        )
    if doc.get("backends_file"):
        if not isinstance(doc["backends_file"], str):
            raise InputError(f"{path}: backends_file: must be a path")
    else:
        parse_backends(str(path), doc.get("backends"))
    return doc


def serve(config_path: Path) -> int:
    """Run the front door from its config until SIGTERM (`python -m runner.node frontdoor --config FILE`)."""
    import uvicorn

    config = load_config(config_path)
    door = build(config, Path(config["keys_file"]))
    if door.keys.error:
        log.warning("keys: %s", door.keys.error)
    listen = config["listen"]
    tls = config.get("tls") or {}
    log.info("front door on %s:%s (%s), %d backend(s), strategy %s", listen["address"], listen["port"],
             "TLS" if tls else "plain HTTP", len(door.backends), door.router.strategy)  # fmt: skip
    uvicorn.run(
        create(door), host=listen["address"], port=int(listen["port"]), log_level="warning",
        ssl_certfile=tls.get("cert"), ssl_keyfile=tls.get("key"), timeout_graceful_shutdown=10,
    )  # fmt: skip
    return 0
