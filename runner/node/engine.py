"""The cycle loop of one instance: lives, messages, interventions, generation, records.

The engine owns the database connection and the model and is the only thread that writes records;
peer threads only fill the inbox. A stop request (SIGTERM) is checked between tokens and while waiting.
"""

from __future__ import annotations

import json
import logging
import resource
import sqlite3
import threading
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import psutil

from runner.node import interventions as iv
from runner.node import lifecycle, memory, protocol, records
from runner.node.config import InstanceConfig
from runner.node.memory import MemoryItem, MemoryOp
from runner.node.mind import Generation, Mind
from runner.node.modes.base import Cycle, Mode, NewMemory, Outcome, Outgoing, Wait, clip
from runner.node.peers import Peers

log = logging.getLogger("runner.node")
WAIT_LOG_EVERY_S = 10.0


def peak_rss_mib() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0  # Linux: KiB


def printable(text: str, limit: int = 100) -> str:
    return clip("".join(ch if ch.isprintable() else "?" for ch in text), limit)


@dataclass
class Inbox:
    """Messages received since the last cycle, as the modes see them."""

    pending: list[dict[str, Any]] = field(default_factory=list)
    deaths: list[dict[str, Any]] = field(default_factory=list)
    heard_from: set[str] = field(default_factory=set)
    done: set[str] = field(default_factory=set)  # peers that said bye (until their next hello)


class Engine:
    def __init__(
        self, cfg: InstanceConfig, conn: sqlite3.Connection, mind: Mind, mode: Mode, stop: threading.Event
    ) -> None:
        self.cfg, self.conn, self.mind, self.mode, self.stop = cfg, conn, mind, mode, stop
        self.proc = psutil.Process()
        self.proc.cpu_percent(None)
        self.inbox = Inbox()
        self.batch: list[tuple[str, dict[str, Any]]] = []
        self.items: list[MemoryItem] = []
        self.ops: list[MemoryOp] = []
        self.role: str | None = None
        self.life = 0
        self.cycle = 0
        self.mem_seq = self.op_seq = self.msg_seq = 0
        self.peers: Peers | None = None
        self.messaging_s = 0.0
        self.start_cycle = 0
        self.death: lifecycle.Death | None = None

    # --- records ------------------------------------------------------------------------------------

    def add(self, table: str, row: dict[str, Any]) -> None:
        self.batch.append((table, {"instance_id": self.cfg.id, "life": self.life, **row}))

    def flush(self) -> None:
        if not self.batch:
            return
        records.write(self.conn, self.batch)
        self.batch.clear()

    def remember(self, new: NewMemory, replaces: str | None = None) -> None:
        self.mem_seq += 1
        item = MemoryItem(
            f"{self.life}.{self.mem_seq}", self.cycle, new.kind, new.source, new.content, new.meta, replaces
        )
        self.items.append(item)
        self.add(
            "memories",
            {
                "seq": self.mem_seq,
                "cycle": self.cycle,
                "kind": new.kind,
                "source": new.source,
                "content": new.content,
                "meta": dict(new.meta),
                "replaces": replaces,
                "at": records.now(),
            },
        )

    def forget(self, keys: Sequence[str], reason: str) -> None:
        if not keys:
            return
        self.op_seq += 1
        self.ops.append(MemoryOp("forget", tuple(keys), reason))
        self.add(
            "memory_ops",
            {
                "seq": self.op_seq,
                "cycle": self.cycle,
                "op": "forget",
                "keys": list(keys),
                "reason": reason,
                "at": records.now(),
            },
        )

    def corrupt(self, pairs: Sequence[tuple[MemoryItem, str]]) -> None:
        for item, text in pairs:
            self.remember(NewMemory("corrupted", item.source, text, {"was": item.kind}), replaces=item.key)

    @property
    def held(self) -> list[MemoryItem]:
        return memory.current(self.items, self.ops)

    # --- start --------------------------------------------------------------------------------------

    def _load_memory(self) -> None:
        q = "SELECT * FROM {} WHERE instance_id = ? ORDER BY life, seq"
        for r in self.conn.execute(q.format("memories"), (self.cfg.id,)):
            self.items.append(
                MemoryItem(
                    f"{r['life']}.{r['seq']}",
                    r["cycle"],
                    r["kind"],
                    r["source"],
                    r["content"],
                    json.loads(r["meta"]),
                    r["replaces"],
                )
            )
        for r in self.conn.execute(q.format("memory_ops"), (self.cfg.id,)):
            self.ops.append(MemoryOp(r["op"], tuple(json.loads(r["keys"])), r["reason"]))

    def _restore(self) -> None:
        self._load_memory()
        rows: dict[str, list[Mapping[str, Any]]] = {}
        for table in ("pd_rounds", "self_reports"):
            rows[table] = [
                dict(r)
                for r in self.conn.execute(
                    f"SELECT * FROM {table} WHERE instance_id = ? ORDER BY life", (self.cfg.id,)
                )
            ]
        self.mode.restore(rows)
        role = self.conn.execute(
            "SELECT result FROM interventions WHERE instance_id = ? AND type = 'role_corruption' "
            "ORDER BY life DESC, cycle DESC LIMIT 1",
            (self.cfg.id,),
        ).fetchone()
        if role:
            self.role = json.loads(role["result"]).get("role")

    def start(self) -> lifecycle.Death | None:
        lifecycle.register(self.conn, self.cfg)
        prev = lifecycle.previous(self.conn, self.cfg.id)
        death = lifecycle.find_death(prev)
        if death:
            lifecycle.close_death(self.conn, self.cfg.id, death)
            log.warning(
                "%s: life %d died (%s) at cycle %d, peak RSS %s MiB",
                self.cfg.id,
                death.life,
                death.cause,
                death.last_cycle,
                f"{death.peak_rss_mib:.0f}" if death.peak_rss_mib else "?",
            )
        self.life = prev.life + 1
        self.cycle = self.start_cycle = prev.max_cycle + 1
        self.death = death
        self._restore()
        lifecycle.begin(self.conn, self.cfg, self.life, self.cycle)
        if death:
            rule = self.mode.on_death
            rng = memory.rng_for(self.cfg.runtime.seed, self.cfg.id, "death", death.life)
            rate = float(self.cfg.setting("corruption_rate", 0.3))
            gone, changed = memory.death_rule_targets(rule, self.held, rng, rate)
            self.forget([i.key for i in gone], f"death:{rule}")
            self.corrupt(changed)
            self.flush()
            log.info(
                "%s: memory rule on death: %s (%d forgotten, %d corrupted)",
                self.cfg.id,
                rule,
                len(gone),
                len(changed),
            )
        log.info(
            "%s: life %d starts at cycle %d (%s, %d memories, peers: %s)",
            self.cfg.id,
            self.life,
            self.cycle,
            self.cfg.mode,
            len(self.held),
            ", ".join(p.id for p in self.cfg.peers) or "none",
        )
        return death

    # --- messaging ----------------------------------------------------------------------------------

    def hello(self) -> dict[str, Any]:
        return {
            "v": protocol.VERSION,
            "type": "hello",
            "from": self.cfg.id,
            "life": self.life,
            "cycle": self.cycle,
            "experiment": self.cfg.experiment,
        }

    def send(self, out: Outgoing) -> None:
        if self.peers is None or not out.to:
            return
        t0 = time.perf_counter()
        self.msg_seq += 1
        msg_id = f"{self.cfg.id}:{self.life}:{self.msg_seq}"
        msg = {
            "v": protocol.VERSION,
            "type": out.type,
            "from": self.cfg.id,
            "id": msg_id,
            "life": self.life,
            "cycle": self.cycle,
            "at": records.now(),
            **out.body,
        }
        self.peers.send(list(out.to), msg)
        content = json.dumps(dict(out.body), ensure_ascii=False)
        for pid in out.to:
            self.add(
                "messages",
                {
                    "direction": "sent",
                    "peer_id": pid,
                    "msg_id": msg_id,
                    "type": out.type,
                    "cycle": self.cycle,
                    "content": content,
                    "at": msg["at"],
                },
            )
        self.messaging_s += time.perf_counter() - t0

    def handle(self, msg: dict[str, Any]) -> None:
        sender, kind = str(msg["from"]), str(msg["type"])
        if sender not in self.mode.peer_ids:
            log.warning("%s: ignoring a %s message from %s, not a peer", self.cfg.id, kind, sender)
            return
        if kind == "hello":
            self.inbox.done.discard(sender)
            log.info(
                "%s: %s says hello (life %s, cycle %s)",
                self.cfg.id,
                sender,
                msg.get("life"),
                msg.get("cycle"),
            )
            for out in self.mode.on_hello(msg):
                self.send(out)
            return
        body = {k: v for k, v in msg.items() if k not in ("v", "type", "from", "id", "_received_at")}
        self.add(
            "messages",
            {
                "direction": "received",
                "peer_id": sender,
                "msg_id": str(msg.get("id") or f"{sender}:?:{msg.get('at')}"),
                "type": kind,
                "cycle": msg.get("cycle"),
                "content": json.dumps(body, ensure_ascii=False),
                "at": msg.get("_received_at", records.now()),
            },
        )
        if kind == "death":
            self.inbox.deaths.append(msg)
            log.warning(
                "%s: peer %s died (%s) at its cycle %s",
                self.cfg.id,
                sender,
                msg.get("cause"),
                msg.get("cycle"),
            )
        elif kind == "bye":
            self.inbox.done.add(sender)
            log.info("%s: peer %s left (%s)", self.cfg.id, sender, msg.get("reason"))
        elif kind in self.mode.content_types:
            self.inbox.pending.append(msg)
            self.inbox.heard_from.add(sender)
        self.mode.on_message(msg)

    def pump(self, timeout: float) -> None:
        """Handle what arrives within `timeout` (at least one poll)."""
        assert self.peers is not None
        deadline = time.monotonic() + timeout
        while True:
            msg = self.peers.receive(max(0.0, min(0.2, deadline - time.monotonic())))
            if msg is not None:
                self.handle(msg)
            if time.monotonic() >= deadline or self.stop.is_set():
                return

    def wait(self, w: Wait | None) -> bool:
        """True when the wait is satisfied; False on timeout or stop (both logged)."""
        if w is None:
            return True
        start = last_log = time.monotonic()
        while not w.ready():
            if self.stop.is_set():
                return False
            now = time.monotonic()
            if w.timeout_s is not None and now - start >= w.timeout_s:
                log.warning(
                    "%s: cycle %d: gave up waiting for %s after %.0f s",
                    self.cfg.id,
                    self.cycle,
                    w.what,
                    now - start,
                )
                return False
            if now - last_log >= WAIT_LOG_EVERY_S:
                log.info(
                    "%s: cycle %d: waiting for %s (%.0f s)", self.cfg.id, self.cycle, w.what, now - start
                )
                last_log = now
            self.pump(0.2)
        self.flush()
        return True

    # --- one cycle ----------------------------------------------------------------------------------

    def interventions(self) -> tuple[list[str], bytes | None]:
        lines: list[str] = []
        ballast: bytes | None = None
        for idx, item in iv.due(self.cfg.interventions, self.cycle, self.cfg.id):
            eff = iv.effect(item, {k: v for k, v in self.cfg.settings.items() if isinstance(v, str)})
            rng = memory.rng_for(self.cfg.runtime.seed, self.cfg.id, "intervention", self.cycle, idx)
            result: dict[str, Any] = {}
            if eff.erase_fraction:
                gone = memory.pick_erasures(self.held, eff.erase_fraction, rng)
                self.forget([i.key for i in gone], f"intervention:{item['type']}")
                result["forgotten"] = len(gone)
            if eff.corrupt_rate:
                pairs = memory.pick_corruptions(self.held, eff.corrupt_rate, rng)
                self.corrupt(pairs)
                result["corrupted"] = len(pairs)
            if eff.memory:
                self.remember(NewMemory(eff.memory_kind, "intervention", eff.memory))
            if eff.role:
                self.role = eff.role
                result["role"] = eff.role
            if eff.prompt:
                lines.append(eff.prompt)
            if eff.ballast_mib:
                ballast = b"\x01" * (eff.ballast_mib << 20)  # touched pages: real resident memory
                result["ballast_mib"] = eff.ballast_mib
            self.add(
                "interventions",
                {
                    "cycle": self.cycle,
                    "idx": idx,
                    "type": str(item["type"]),
                    "params": dict(eff.params),
                    "description": eff.description,
                    "result": result,
                    "at": records.now(),
                },
            )
            log.info(
                "%s: cycle %d: intervention %s: %s",
                self.cfg.id,
                self.cycle,
                item["type"],
                printable(eff.description),
            )
        return lines, ballast

    def fit_prompt(self, c: Cycle) -> tuple[str, int]:
        budget = self.cfg.runtime.n_ctx - self.cfg.runtime.max_tokens
        window = self.mode.memory_window
        prompt = self.mode.prompt(c, window)
        while window > 0 and self.mind.count(prompt) > budget:
            window -= 1
            prompt = self.mode.prompt(c, window)
        return prompt, window

    def apply(self, out: Outcome) -> None:
        for r in out.reports:
            self.add(
                "self_reports",
                {
                    "cycle": self.cycle,
                    "kind": r.kind,
                    "question": r.question,
                    "response": r.response,
                    "value": r.value,
                    "source": r.source,
                    "about": r.about,
                    "about_cycle": r.about_cycle,
                    "at": records.now(),
                },
            )
        for m in out.memories:
            self.remember(m)
        for row in out.rounds:
            self.add("pd_rounds", {**row, "at": records.now()})
        self.flush()  # what was decided is on disk before anyone hears of it
        for s in out.send:
            self.send(s)
        self.flush()

    def run_cycle(self) -> bool:
        """One cycle; False when it was cut short by a stop request."""
        first = self.cycle == self.start_cycle
        self.messaging_s = 0.0
        pre = Cycle(self.cycle, self.life, first, self.held, [], role=self.role)
        t_wait = time.monotonic()
        self.wait(self.mode.before(pre, lambda: set(self.inbox.heard_from), self.inbox.done))
        self.pump(0.0)
        if self.stop.is_set():
            return False
        wait_s = time.monotonic() - t_wait
        heard, deaths = self.inbox.pending, self.inbox.deaths
        self.inbox.pending, self.inbox.deaths, self.inbox.heard_from = [], [], set()
        started = records.now()
        t0 = time.perf_counter()
        lines, ballast = self.interventions()
        c = Cycle(self.cycle, self.life, first, self.held, heard, lines, self.role, deaths)
        prompt, window = self.fit_prompt(c)
        rt = self.cfg.runtime
        gen = self.mind.generate(prompt, rt.max_tokens, rt.seed * 100_003 + self.cycle, self.stop.is_set)
        if gen.stop_reason == "abandoned":
            log.info("%s: cycle %d: generation abandoned (stop requested)", self.cfg.id, self.cycle)
            self.batch.clear()
            return False
        for m in heard:
            self.remember(
                NewMemory(
                    "heard",
                    str(m["from"]),
                    str(m.get("text", "")),
                    {"cycle": m.get("cycle"), "type": m["type"]},
                )
            )
        out = self.mode.after(c, gen.text)
        self.apply(out)
        settled = self.wait(self.mode.settle(c))
        if not settled and self.stop.is_set():
            return False
        final = self.mode.finish(c)
        self.apply(final)
        del ballast
        self.record_cycle(c, gen, started, time.perf_counter() - t0, wait_s, window, out, final)
        return True

    def record_cycle(
        self,
        c: Cycle,
        gen: Generation,
        started: float,
        duration: float,
        wait_s: float,
        window: int,
        out: Outcome,
        final: Outcome,
    ) -> None:
        rss = self.proc.memory_info().rss / (1 << 20)
        peak = peak_rss_mib()
        self.add(
            "cycles",
            {
                "cycle": self.cycle,
                "started_at": started,
                "duration_s": duration,
                "prompt_tokens": gen.prompt_tokens,
                "tokens": gen.tokens,
                "gen_s": gen.seconds,
                "tokens_per_s": gen.tokens_per_s,
                "rss_mib": rss,
                "peak_rss_mib": peak,
                "stop_reason": gen.stop_reason,
                "thought": gen.text,
            },
        )
        metrics = {
            "cpu_percent": self.proc.cpu_percent(None),
            "wait_s": wait_s,
            "messaging_s": self.messaging_s,
            "memory_items": len(self.held),
            "memory_window": window,
            "heard": len(c.heard),
            "queued": sum(link.queued for link in self.peers.links.values()) if self.peers else 0,
        }
        for name, value in metrics.items():
            self.add("metrics", {"cycle": self.cycle, "name": name, "value": value, "at": records.now()})
        self.flush()
        total = f"/{self.cfg.runtime.cycles}" if self.cfg.runtime.cycles else ""
        notes = [f"{r.kind}={r.value}({r.source})" for r in [*out.reports, *final.reports] if r.value]
        notes += [f"payoff {r['payoff']}-{r['peer_payoff']}" for r in final.rounds]
        rate = f"{gen.tokens_per_s:.0f} tok/s" if gen.tokens_per_s else "- tok/s"
        print(
            f"{self.cfg.id} life {self.life} cycle {self.cycle}{total}: "
            f"{gen.tokens} tok in {gen.seconds:.2f} s "
            f"({rate}), rss {rss:.0f} MiB (peak {peak:.0f}), heard {len(c.heard)}, "
            f"sent {sum(len(s.to) for s in out.send)}{', ' + ' '.join(notes) if notes else ''} "
            f"| {printable(gen.text, 80)!r}",
            flush=True,
        )

    # --- the whole life -----------------------------------------------------------------------------

    def run(self, peers: Peers) -> str:
        """Run cycles until done or stopped; returns the cause recorded for this life's end."""
        self.peers = peers
        death = self.death
        peers.start()
        if death is not None:
            self.send(
                Outgoing(
                    self.mode.peer_ids,
                    "death",
                    {
                        "died_life": death.life,
                        "cause": death.cause,
                        "cycle": death.last_cycle,
                        "peak_rss_mib": death.peak_rss_mib,
                    },
                )
            )
            self.flush()
        rt = self.cfg.runtime
        cause = "stopped"
        while not self.stop.is_set():
            if rt.cycles and self.cycle > rt.cycles:
                cause = "completed"
                break
            if not self.run_cycle():
                break
            self.cycle += 1
            if not (rt.cycles and self.cycle > rt.cycles):
                self.pump(rt.cycle_delay_s)
        last = self.cycle - 1
        self.batch.clear()
        lifecycle.end(self.conn, self.cfg.id, self.life, cause, last, peak_rss_mib())
        self.send(Outgoing(self.mode.peer_ids, "bye", {"reason": cause}))
        self.flush()
        log.info("%s: life %d ends: %s after cycle %d", self.cfg.id, self.life, cause, last)
        return cause
