"""Peer messaging: a server on the instance's address and one sending link per peer (threads).

The server only receives (every frame goes to `inbox`); each link only sends, reconnecting with
exponential backoff and jitter while its peer is down, and keeps what it could not send queued.
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
from collections.abc import Callable
from typing import Any

from runner.node import protocol
from runner.node.config import Peer

log = logging.getLogger("runner.node.peers")
QUEUE_LIMIT = 10_000


class Server:
    """Accepts peers' connections and puts every valid message into `inbox`."""

    def __init__(self, address: str, port: int, inbox: queue.Queue[dict[str, Any]]) -> None:
        self.inbox = inbox
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

    def _serve(self) -> None:
        while not self._stop.is_set():
            try:
                conn, addr = self.sock.accept()
            except TimeoutError:
                continue
            except OSError:
                return
            t = threading.Thread(target=self._read, args=(conn, addr), name=f"peer-in-{addr}", daemon=True)
            t.start()
            self._threads.append(t)

    def _read(self, conn: socket.socket, addr: tuple[str, int]) -> None:
        reader = protocol.FrameReader()
        conn.settimeout(0.5)
        with conn:
            while not self._stop.is_set():
                try:
                    data = conn.recv(65536)
                except TimeoutError:
                    continue
                except OSError:
                    return
                if not data:
                    return
                try:
                    for msg in reader.feed(data):
                        msg["_received_at"] = time.time()
                        self.inbox.put(msg)
                except protocol.ProtocolError as exc:
                    log.warning("closing connection from %s:%s: %s", addr[0], addr[1], exc)
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
        backoff_base_s: float = 0.2,
        backoff_max_s: float = 5.0,
        log_every_s: float = 30.0,
    ) -> None:
        self.peer = peer
        self._hello = hello
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
        frame = protocol.encode(message)
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
                sock.settimeout(5.0)
                sock.sendall(protocol.encode(self._hello()))
            except OSError as exc:
                attempt += 1
                self.attempts += 1
                now = time.monotonic()
                if now - last_log >= self.log_every:
                    log.info(
                        "peer %s at %s:%s not reachable (%s); waiting for it, attempt %d",
                        self.peer.id,
                        self.peer.address,
                        self.peer.port,
                        exc.strerror or exc,
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
                self._sock.sendall(frame)
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
        backoff_max_s: float = 5.0,
    ) -> None:
        self.inbox: queue.Queue[dict[str, Any]] = queue.Queue()
        self.server = Server(address, port, self.inbox)
        self.links = {p.id: Link(p, hello, backoff_max_s=backoff_max_s) for p in peers}

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
