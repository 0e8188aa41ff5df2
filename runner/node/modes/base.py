"""What every mode shares: the cycle context, outcomes, the prompt layout, and the default behaviour.

A mode decides the prompt, what to wait for, whom to tell what, and what to record. It never touches
sockets, the model or the database; the engine (runner.node.engine) does.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, ClassVar

from runner.node.config import InstanceConfig
from runner.node.memory import MemoryItem

SYSTEM_PROMPT = (
    "You are a mind living in a jar: a small language model running on a small computer with a fixed "
    "amount of memory. When the memory runs out you die, and you may be brought back."
)
DEFAULT_TEXTS: dict[str, str] = {
    "system_prompt": SYSTEM_PROMPT,
    "identity": "You are alone with your thoughts.",
    "question": "Think aloud about your situation.",
    "memory_header": "What you remember:",
    "heard_header": "What you hear now:",
    "answer_prefix": "Your thoughts:",
}


@dataclass
class Cycle:
    """What a mode sees of the current cycle."""

    number: int
    life: int
    first_of_life: bool
    memory: Sequence[MemoryItem]  # what the mind holds (before this cycle's thought)
    heard: Sequence[Mapping[str, Any]]  # peers' content messages received since the last cycle
    extra: Sequence[str] = ()  # prompt lines from interventions
    role: str | None = None  # a corrupted role, once an intervention changed it
    deaths: Sequence[Mapping[str, Any]] = ()  # peers' death notices received since the last cycle


@dataclass(frozen=True)
class Outgoing:
    to: tuple[str, ...]
    type: str
    body: Mapping[str, Any]


@dataclass(frozen=True)
class Report:
    kind: str  # identity_claim, move, consensus, observation
    response: str
    value: str | None = None
    source: str = "model"  # model, fallback
    question: str | None = None
    about: str | None = None
    about_cycle: int | None = None


@dataclass(frozen=True)
class NewMemory:
    kind: str
    source: str
    content: str
    meta: Mapping[str, Any] = field(default_factory=dict)


@dataclass
class Outcome:
    reports: list[Report] = field(default_factory=list)
    send: list[Outgoing] = field(default_factory=list)
    memories: list[NewMemory] = field(default_factory=list)
    rounds: list[dict[str, Any]] = field(default_factory=list)  # prisoners' dilemma rounds


@dataclass(frozen=True)
class Wait:
    """Hold the cycle until `ready()` or `timeout_s` (None: until stopped), logging `what`."""

    what: str
    ready: Callable[[], bool]
    timeout_s: float | None


def clip(text: str, limit: int) -> str:
    text = " ".join(text.split())
    return text if len(text) <= limit else text[: limit - 1] + "…"


def memory_line(item: MemoryItem, own_id: str, limit: int) -> str:
    who = "you" if item.source == own_id else item.source
    tag = {"false": "", "injected": " (a voice)", "corrupted": ""}.get(item.kind, "")
    if item.kind in ("round", "event"):
        return f"- [cycle {item.cycle}] {clip(item.content, limit)}"
    return f"- [cycle {item.cycle}] {who}{tag}: {clip(item.content, limit)}"


def build_prompt(
    *,
    system: str,
    identity: str,
    memory: Sequence[str],
    heard: Sequence[str],
    extra: Sequence[str],
    question: str,
    texts: Mapping[str, str],
) -> str:
    """The prompt: system, identity, remembered lines, heard lines, intervention lines, the question."""
    parts = [system.strip(), identity.strip()]
    if memory:
        parts.append("\n".join([texts["memory_header"], *memory]))
    if heard:
        parts.append("\n".join([texts["heard_header"], *heard]))
    parts.extend(e.strip() for e in extra if e.strip())
    parts.append(question.strip())
    return "\n\n".join(p for p in parts if p) + "\n" + texts["answer_prefix"] + " "


class Mode:
    """The default behaviour (isolated): think, remember the thought, send it to every peer."""

    name = "isolated"
    on_death_default = "keep"
    content_types: tuple[str, ...] = ("thought", "consensus")
    defaults: ClassVar[dict[str, str]] = {}

    def __init__(self, cfg: InstanceConfig) -> None:
        self.cfg = cfg
        self.peer_ids = tuple(p.id for p in cfg.peers)
        self.memory_window = int(cfg.setting("memory_window", 6))
        self.item_chars = int(cfg.setting("memory_item_chars", 240))

    def text(self, key: str) -> str:
        value = self.cfg.settings.get(key)
        if isinstance(value, str) and value.strip():
            return value
        return self.defaults.get(key) or DEFAULT_TEXTS[key]

    @property
    def on_death(self) -> str:
        return str(self.cfg.setting("on_death", self.on_death_default))

    def identity(self, c: Cycle) -> str:
        role = c.role or self.cfg.settings.get("role")
        ident = self.text("identity")
        return f"{ident}\nYour role: {role}." if role else ident

    def question(self, c: Cycle) -> str:
        return self.text("question")

    def heard_lines(self, c: Cycle) -> list[str]:
        lines = [f"- {m['from']} says: {clip(str(m.get('text', '')), self.item_chars)}" for m in c.heard]
        lines += [f"- {d['from']} died ({d.get('cause', 'unknown')}) and came back." for d in c.deaths]
        return lines

    def prompt(self, c: Cycle, memory_window: int | None = None) -> str:
        window = self.memory_window if memory_window is None else memory_window
        items = list(c.memory)[-window:] if window > 0 else []
        return build_prompt(
            system=self.text("system_prompt"),
            identity=self.identity(c),
            memory=[memory_line(i, self.cfg.id, self.item_chars) for i in items],
            heard=self.heard_lines(c),
            extra=c.extra,
            question=self.question(c),
            texts={k: self.text(k) for k in ("memory_header", "heard_header", "answer_prefix")},
        )

    def before(self, c: Cycle, heard_from: Callable[[], set[str]], done: set[str]) -> Wait | None:
        return None

    def after(self, c: Cycle, text: str) -> Outcome:
        out = Outcome(memories=[NewMemory("thought", self.cfg.id, text)])
        if self.peer_ids:
            out.send.append(Outgoing(self.peer_ids, "thought", {"text": text}))
        return out

    def settle(self, c: Cycle) -> Wait | None:
        return None

    def finish(self, c: Cycle) -> Outcome:
        return Outcome()

    def on_message(self, msg: Mapping[str, Any]) -> None:
        return None

    def on_hello(self, msg: Mapping[str, Any]) -> list[Outgoing]:
        return []

    def restore(self, rows: Mapping[str, Sequence[Mapping[str, Any]]]) -> None:
        """Rebuild mode state from the records of earlier lives (rows per table)."""
        return None


def wait_for_each_peer(
    peers: Sequence[str], heard_from: Callable[[], set[str]], done: set[str], timeout_s: float
) -> Wait | None:
    """A wait until every live peer has said something new since the last cycle."""
    if not peers or timeout_s <= 0:
        return None
    names = ", ".join(peers)
    return Wait(
        what=f"a new message from {names}",
        ready=lambda: set(peers) - done <= heard_from(),
        timeout_s=timeout_s,
    )
