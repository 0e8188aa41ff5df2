"""Peer messaging: a server on the instance's address and one sending link per peer (threads).

The server only receives; each link only sends, reconnecting with exponential backoff and jitter while
its peer is down, and keeps what it could not send queued. Every connection starts with the mutual
handshake of runner/node/auth.py (the experiment's secret, the sender's id proven, only configured peers
accepted) and then carries sealed frames. Limits: MAX_CONNECTIONS connections being served at once (more
are closed at once), a handshake timeout, protocol.MAX_FRAME per message, INBOX_LIMIT messages waiting in
the inbox (when it is full, new messages are dropped and counted: a flooding peer cannot grow memory).
"""

from __future__ import annotations

import collections
import logging
import queue
import random
import select
import socket
import threading
import time
from collections.abc import Callable, Collection
from typing import Any

from runner.node import auth, protocol
from runner.node.config import Peer

log = logging.getLogger("runner.node.peers")
QUEUE_LIMIT = 10_000
MAX_CONNECTIONS = 64
INBOX_LIMIT = 1_000
LOG_EVERY_S = 30.0


class Server:
    """Accepts peers' connections, authenticates them and puts every verified message into `inbox`."""

    def __init__(
        self,
        address: str,
        port: int,
        inbox: queue.Queue[dict[str, Any]],
        *,
        secret: bytes,
        experiment: str,
        allowed: Collection[str],
        max_connections: int = MAX_CONNECTIONS,
    ) -> None:
        self.inbox = inbox
        self.secret, self.experiment, self.allowed = secret, experiment, frozenset(allowed)
        self.max_connections = max_connections
        self.refused = 0  # connections that failed the handshake or came over the limit
        self.dropped = 0  # verified messages dropped because the inbox was full
        self._active = 0
        self._lock = threading.Lock()
        self._logged_at: dict[str, float] = {}
        self._stop = threading.Event()
        family = socket.AF_INET6 if ":" in address else socket.AF_INET
        # bound to the node's cluster address only; SO_REUSEADDR (set by create_server on POSIX) lets a
        # restarted instance listen again while the old connections are in TIME_WAIT
        self.sock = socket.create_server((address, port), family=family)
        self.sock.settimeout(0.5)
        self._threads: list[threading.Thread] = []
        self._accept = threading.Thread(target=self._serve, name="peer-server", daemon=True)

    def start(self) -> None:
        self._accept.start()

    def _warn(self, kind: str, text: str, *args: object) -> None:
        """A warning at most every LOG_EVERY_S per kind (a flood must not flood the journal)."""
        now = time.monotonic()
        if now - self._logged_at.get(kind, -1e9) >= LOG_EVERY_S:
            self._logged_at[kind] = now
            log.warning(text, *args)

    def _serve(self) -> None:
        while not self._stop.is_set():
            try:
                conn, addr = self.sock.accept()
            except TimeoutError:
                continue
            except OSError:
                return
            with self._lock:
                full = self._active >= self.max_connections
                if not full:
                    self._active += 1
            if full:
                self.refused += 1
                self._warn(
                    "limit", "closing a connection from %s: %d connections already", addr[0], self._active
                )
                conn.close()
                continue
            t = threading.Thread(target=self._read, args=(conn, addr), name=f"peer-in-{addr}", daemon=True)
            t.start()
            self._threads = [x for x in self._threads if x.is_alive()] + [t]

    def _read(self, conn: socket.socket, addr: tuple[str, int]) -> None:
        try:
            with conn:
                try:
                    sender, key, early = auth.accept(conn, self.secret, self.experiment, self.allowed)
                except (auth.AuthError, protocol.ProtocolError, OSError) as exc:
                    self.refused += 1
                    self._warn("auth", "dropped a connection from %s:%s: %s", addr[0], addr[1], exc)
                    return
                self._receive(conn, addr, sender, auth.SealedReader(key), early)
        finally:
            with self._lock:
                self._active -= 1

    def _receive(
        self, conn: socket.socket, addr: tuple[str, int], sender: str, reader: auth.SealedReader, data: bytes
    ) -> None:
        conn.settimeout(0.5)
        while not self._stop.is_set():
            try:
                for body in reader.feed(data):
                    msg = protocol.decode(body)
                    msg["from"] = sender  # the proven identity, whatever the body claims
                    msg["_received_at"] = time.time()
                    try:
                        self.inbox.put_nowait(msg)
                    except queue.Full:
                        self.dropped += 1
                        self._warn("inbox", "inbox full (%d): dropping messages from %s", INBOX_LIMIT, sender)
            except protocol.ProtocolError as exc:
                self._warn("frame", "closing the connection of %s from %s: %s", sender, addr[0], exc)
                return
            try:
                data = conn.recv(65536)
            except TimeoutError:
                data = b""
                continue
            except OSError:
                return
            if not data:
                return

    def close(self) -> None:
        self._stop.set()
        self.sock.close()
        self._accept.join(timeout=2)


class Link:
    """Sends to one peer: a queue, a connection made and remade with backoff, a hello on each connect."""

    def __init__(
        self,
        peer: Peer,
        hello: Callable[[], dict[str, Any]],
        *,
        secret: bytes,
        me: str,
        experiment: str,
        backoff_base_s: float = 0.2,
        backoff_max_s: float = 5.0,
        log_every_s: float = 30.0,
    ) -> None:
        self.peer = peer
        self._hello = hello
        self.secret, self.me, self.experiment = secret, me, experiment
        self._key = b""
        self._counter = 0
        self._queue: collections.deque[bytes] = collections.deque()
        self._cond = threading.Condition()
        self._stop = threading.Event()
        self._sock: socket.socket | None = None
        self.base, self.cap, self.log_every = backoff_base_s, backoff_max_s, log_every_s
        self.connected = threading.Event()
        self.dropped = 0
        self.attempts = 0
        self._thread = threading.Thread(target=self._run, name=f"peer-out-{peer.id}", daemon=True)

    def start(self) -> None:
        self._thread.start()

    def send(self, message: dict[str, Any]) -> None:
        frame = protocol.body(message)  # sealed when it is sent, under the connection's session key
        with self._cond:
            if len(self._queue) >= QUEUE_LIMIT:
                self._queue.popleft()
                self.dropped += 1
            self._queue.append(frame)
            self._cond.notify()

    @property
    def queued(self) -> int:
        with self._cond:
            return len(self._queue)

    def delay(self, attempt: int) -> float:
        """Exponential backoff with jitter: base * 2^attempt, capped, times a random 0.5-1.0."""
        return min(self.cap, self.base * (2 ** min(attempt, 30))) * random.uniform(0.5, 1.0)

    def _connect(self) -> bool:
        first_fail = time.monotonic()
        last_log = -1e9
        attempt = 0
        while not self._stop.is_set():
            try:
                sock = socket.create_connection((self.peer.address, self.peer.port), timeout=2.0)
                try:
                    self._key = auth.connect(sock, self.secret, self.me, self.experiment)
                    self._counter = 0
                    sock.settimeout(5.0)
                    sock.sendall(self._seal(protocol.body(self._hello())))
                except BaseException:
                    sock.close()
                    raise
            except (OSError, protocol.ProtocolError) as exc:
                attempt += 1
                self.attempts += 1
                now = time.monotonic()
                if now - last_log >= self.log_every:
                    log.info(
                        "peer %s at %s:%s not reachable (%s); waiting for it, attempt %d",
                        self.peer.id,
                        self.peer.address,
                        self.peer.port,
                        getattr(exc, "strerror", None) or exc,
                        attempt,
                    )
                    last_log = now
                self._stop.wait(self.delay(attempt))
                continue
            if attempt:
                log.info(
                    "peer %s reached after %d attempts (%.1f s)",
                    self.peer.id,
                    attempt,
                    time.monotonic() - first_fail,
                )
            else:
                log.info("peer %s connected", self.peer.id)
            self._sock = sock
            self.connected.set()
            return True
        return False

    def _seal(self, body: bytes) -> bytes:
        frame = auth.seal(self._key, self._counter, body)
        self._counter += 1
        return frame

    def _peer_closed(self) -> bool:
        """The peer never writes on this connection: readable means it closed (or reset) it."""
        assert self._sock is not None
        try:
            readable, _, _ = select.select([self._sock], [], [], 0)
            return bool(readable) and not self._sock.recv(1, socket.MSG_PEEK)
        except OSError:
            return True

    def _drop(self) -> None:
        self.connected.clear()
        if self._sock is not None:
            self._sock.close()
            self._sock = None

    def _run(self) -> None:
        while not self._stop.is_set():
            if self._sock is None and not self._connect():
                return
            with self._cond:
                while not self._queue and not self._stop.is_set():
                    self._cond.wait(0.5)
                    if self._sock is not None and self._peer_closed():
                        break
                frame = self._queue.popleft() if self._queue else None
            if self._sock is not None and self._peer_closed():
                log.info("peer %s closed the connection; reconnecting", self.peer.id)
                if frame is not None:
                    with self._cond:
                        self._queue.appendleft(frame)
                self._drop()
                continue
            if frame is None:
                continue
            try:
                assert self._sock is not None
                self._sock.sendall(self._seal(frame))
            except OSError as exc:
                log.info("sending to peer %s failed (%s); reconnecting", self.peer.id, exc)
                with self._cond:
                    self._queue.appendleft(frame)
                self._drop()

    def flush(self, timeout: float) -> bool:
        """Wait until the queue is sent (or `timeout`); True when nothing is left."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if not self.queued:
                return True
            time.sleep(0.02)
        return not self.queued

    def close(self) -> None:
        self._stop.set()
        with self._cond:
            self._cond.notify_all()
        self._thread.join(timeout=2)
        self._drop()


class Peers:
    """The server and one link per peer."""

    def __init__(
        self,
        address: str,
        port: int,
        peers: tuple[Peer, ...],
        hello: Callable[[], dict[str, Any]],
        *,
        secret: bytes,
        me: str,
        experiment: str,
        allowed: Collection[str] = (),
        backoff_max_s: float = 5.0,
    ) -> None:
        """`allowed`: the ids that may send to this instance (its experiment's other instances); by
        default its own peers."""
        self.inbox: queue.Queue[dict[str, Any]] = queue.Queue(maxsize=INBOX_LIMIT)
        senders = set(allowed or [p.id for p in peers]) - {me}
        self.server = Server(address, port, self.inbox, secret=secret, experiment=experiment, allowed=senders)
        self.links = {
            p.id: Link(p, hello, secret=secret, me=me, experiment=experiment, backoff_max_s=backoff_max_s)
            for p in peers
        }

    def start(self) -> None:
        self.server.start()
        for link in self.links.values():
            link.start()

    def send(self, to: list[str], message: dict[str, Any]) -> None:
        for pid in to:
            self.links[pid].send(message)

    def receive(self, timeout: float) -> dict[str, Any] | None:
        try:
            return self.inbox.get(timeout=timeout)
        except queue.Empty:
            return None

    def close(self, flush_s: float = 2.0) -> None:
        deadline = time.monotonic() + flush_s
        for link in self.links.values():
            link.flush(max(0.0, deadline - time.monotonic()))
        for link in self.links.values():
            link.close()
        self.server.close()
