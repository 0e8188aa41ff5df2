"""runner.node peers on loopback (no model needed): the authenticated protocol (runner/node/auth.py), a
late peer reached, sends queued, and everything a stranger or a forger tries refused."""

from __future__ import annotations

import os
import queue
import socket
import time
from typing import Any

import pytest

from runner.node import auth, protocol
from runner.node.config import Peer
from runner.node.peers import INBOX_LIMIT, Link, Peers, Server

SECRET = b"s" * 32
EXP = "exp"


def _port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _hello(who: str) -> Any:
    return lambda: {"v": protocol.VERSION, "type": "hello", "from": who, "life": 1, "cycle": 1}


def peers(me: str, port: int, to: tuple[Peer, ...] = (), *, secret: bytes = SECRET, **kw: Any) -> Peers:
    allowed = kw.pop("allowed", ("a", "b", "c"))
    p = Peers("127.0.0.1", port, to, _hello(me), secret=secret, me=me, experiment=EXP, allowed=allowed, **kw)
    p.start()
    return p


def _collect(p: Peers, n: int, bound: float = 20.0) -> list[dict[str, Any]]:
    out: list[dict[str, Any]] = []
    deadline = time.monotonic() + bound
    while len(out) < n and time.monotonic() < deadline:
        msg = p.receive(0.1)
        if msg:
            out.append(msg)
    return out


def _wait(predicate: Any, bound: float = 10.0) -> bool:
    deadline = time.monotonic() + bound
    while time.monotonic() < deadline:
        if predicate():
            return True
        time.sleep(0.05)
    return False


def test_messages_sent_before_the_peer_exists_arrive_once_it_starts() -> None:
    pa, pb = _port(), _port()
    a = peers("a", pa, (Peer("b", "n", "127.0.0.1", pb),), backoff_max_s=0.3)
    try:
        for i in range(3):
            a.send(["b"], {"v": 2, "type": "thought", "from": "a", "text": f"t{i}"})
        time.sleep(0.5)
        assert a.links["b"].queued == 3 and a.links["b"].attempts >= 1  # b is down: queued, retrying
        b = peers("b", pb, (Peer("a", "n", "127.0.0.1", pa),))
        try:
            got = _collect(b, 4)
            assert [m["type"] for m in got] == ["hello", "thought", "thought", "thought"]
            assert [m.get("text") for m in got[1:]] == ["t0", "t1", "t2"]
            assert _collect(a, 1)[0]["from"] == "b"
        finally:
            b.close(flush_s=0.5)
    finally:
        a.close(flush_s=0.5)


def test_a_peer_restart_is_reconnected() -> None:
    pa, pb = _port(), _port()
    a = peers("a", pa, (Peer("b", "n", "127.0.0.1", pb),), backoff_max_s=0.3)
    try:
        for round_ in range(2):
            b = peers("b", pb)
            got: list[dict[str, Any]] = []
            deadline = time.monotonic() + 20
            while not got and time.monotonic() < deadline:
                a.send(["b"], {"v": 2, "type": "thought", "from": "a", "text": f"r{round_}"})
                got = [m for m in _collect(b, 1, bound=1.0) if m["type"] == "thought"]
            assert got and {m["text"] for m in got} == {f"r{round_}"}
            b.close(flush_s=0)
    finally:
        a.close(flush_s=0)


def test_backoff_grows_and_is_capped() -> None:
    link = Link(
        Peer("b", "n", "127.0.0.1", 1), _hello("a"), secret=SECRET, me="a", experiment=EXP, backoff_max_s=5.0
    )
    delays = [link.delay(n) for n in range(12)]
    assert all(0.1 <= d <= 5.0 for d in delays)
    assert max(delays[8:]) > min(delays[:2])


def test_a_sender_with_the_wrong_secret_gets_nothing_in() -> None:
    pa, pb = _port(), _port()
    b = peers("b", pb)
    a = peers("a", pa, (Peer("b", "n", "127.0.0.1", pb),), secret=b"w" * 32, backoff_max_s=0.3)
    try:
        a.send(["b"], {"v": 2, "type": "thought", "from": "a", "text": "let me in"})
        assert _wait(lambda: b.server.refused >= 1)
        assert _collect(b, 1, bound=1.0) == [] and not a.links["b"].connected.is_set()
    finally:
        a.close(flush_s=0)
        b.close(flush_s=0)


def test_an_unknown_sender_is_refused_even_with_the_secret() -> None:
    pa, pb = _port(), _port()
    b = peers("b", pb, allowed=("a",))
    c = peers("c", pa, (Peer("b", "n", "127.0.0.1", pb),), backoff_max_s=0.3)
    try:
        c.send(["b"], {"v": 2, "type": "thought", "from": "c", "text": "hi"})
        assert _wait(lambda: b.server.refused >= 1)
        assert _collect(b, 1, bound=1.0) == []
    finally:
        c.close(flush_s=0)
        b.close(flush_s=0)


def test_the_sender_is_who_the_handshake_proved_not_what_the_body_says() -> None:
    pa, pb = _port(), _port()
    b = peers("b", pb)
    a = peers("a", pa, (Peer("b", "n", "127.0.0.1", pb),))
    try:
        a.send(["b"], {"v": 2, "type": "thought", "from": "c", "text": "I am c"})
        got = [m for m in _collect(b, 2) if m["type"] == "thought"]
        assert got and got[0]["from"] == "a"
    finally:
        a.close(flush_s=0)
        b.close(flush_s=0)


def _handshaken(port: int, me: str = "a") -> tuple[socket.socket, bytes]:
    sock = socket.create_connection(("127.0.0.1", port))
    return sock, auth.connect(sock, SECRET, me, EXP)


def test_a_tampered_or_replayed_frame_closes_the_connection() -> None:
    pb = _port()
    b = peers("b", pb)
    try:
        body = protocol.body({"v": 2, "type": "thought", "from": "a", "text": "one"})
        sock, key = _handshaken(pb)
        with sock:
            sock.sendall(auth.seal(key, 0, body))
            assert [m["text"] for m in _collect(b, 1)] == ["one"]
            sock.sendall(auth.seal(key, 0, body))  # the same frame again: a replay
            assert _wait(lambda: sock.recv(1, socket.MSG_PEEK | socket.MSG_DONTWAIT) == b"")
        sock, key = _handshaken(pb)
        with sock:
            frame = bytearray(auth.seal(key, 0, body))
            frame[-3] ^= 0x01  # one bit of the body
            sock.sendall(bytes(frame))
            assert _collect(b, 1, bound=1.0) == []
    finally:
        b.close(flush_s=0)


def test_garbage_and_a_silent_connection_do_not_block_a_real_peer() -> None:
    pb = _port()
    b = peers("b", pb)
    try:
        silent = socket.create_connection(("127.0.0.1", pb))  # holds a slot until the handshake timeout
        with socket.create_connection(("127.0.0.1", pb)) as bad:
            bad.sendall(b"\x00\x00\x00\x05{bad}")
        sock, key = _handshaken(pb)
        with sock, silent:
            sock.sendall(
                auth.seal(key, 0, protocol.body({"v": 2, "type": "thought", "from": "a", "text": "ok"}))
            )
            assert [m["text"] for m in _collect(b, 1)] == ["ok"]
    finally:
        b.close(flush_s=0)


def test_connections_over_the_cap_are_closed_at_once() -> None:
    pb = _port()
    server = Server(
        "127.0.0.1", pb, queue.Queue(), secret=SECRET, experiment=EXP, allowed={"a"}, max_connections=2
    )
    server.start()
    try:
        held = [socket.create_connection(("127.0.0.1", pb)) for _ in range(2)]
        time.sleep(0.3)
        extra = socket.create_connection(("127.0.0.1", pb))
        extra.settimeout(5)
        assert extra.recv(1) == b""  # closed by the server without a word
        assert server.refused >= 1
        for s in [*held, extra]:
            s.close()
    finally:
        server.close()


def test_a_full_inbox_drops_new_messages_instead_of_growing() -> None:
    pb = _port()
    b = peers("b", pb)
    try:
        sock, key = _handshaken(pb)
        with sock:
            for n in range(INBOX_LIMIT + 50):
                sock.sendall(
                    auth.seal(key, n, protocol.body({"v": 2, "type": "thought", "from": "a", "n": n}))
                )
            assert _wait(lambda: b.server.dropped >= 50)
        assert b.inbox.qsize() == INBOX_LIMIT
    finally:
        b.close(flush_s=0)


def test_a_short_secret_file_is_refused(tmp_path: Any) -> None:
    path = tmp_path / "k"
    path.write_bytes(b"short\n")
    with pytest.raises(ValueError, match="at least 16 bytes"):
        auth.read_secret(path)
    path.write_bytes(os.urandom(8).hex().encode() + b"\n")
    assert len(auth.read_secret(path)) == 16
