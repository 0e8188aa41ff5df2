"""A mind's memory: append-only items and the operations that forget or replace them (pure).

Items and operations are stored in the records (tables `memories`, `memory_ops`); what a mind holds
now is `current(items, ops)`, so a restart rebuilds it exactly from the database.
"""

from __future__ import annotations

import random
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

ON_DEATH_RULES = ("keep", "wipe", "corrupt", "erase_betrayals")


@dataclass(frozen=True)
class MemoryItem:
    key: str  # "<life>.<seq>", unique per instance
    cycle: int
    kind: str  # thought, heard, injected, false, corrupted, round, event
    source: str  # who it came from (own id, a peer id, "intervention")
    content: str
    meta: Mapping[str, Any] = field(default_factory=dict)
    replaces: str | None = None  # key of the item this one replaced (corruption)


@dataclass(frozen=True)
class MemoryOp:
    op: str  # forget
    keys: tuple[str, ...]
    reason: str


def current(items: Sequence[MemoryItem], ops: Iterable[MemoryOp]) -> list[MemoryItem]:
    """The items a mind holds: not forgotten and not replaced, in insertion order."""
    gone = {k for op in ops for k in op.keys}
    gone |= {i.replaces for i in items if i.replaces}
    return [i for i in items if i.key not in gone]


def corrupt_text(text: str, rng: random.Random, strength: float = 0.3) -> str:
    """Scramble a share of the words: swapped, dropped or replaced by a glitch."""
    words = text.split()
    if not words:
        return "[corrupted]"
    out: list[str] = []
    for w in words:
        r = rng.random()
        if r < strength / 3:
            continue
        if r < 2 * strength / 3:
            out.append("".join(rng.sample(w, len(w))))
        elif r < strength:
            out.append(rng.choice(("[static]", "[missing]", "###", "...")))
        else:
            out.append(w)
    result = " ".join(out) or "[corrupted]"
    if result == " ".join(words):  # a corruption always changes something
        out[rng.randrange(len(out))] = "[static]"
        result = " ".join(out)
    return result


def pick_corruptions(
    items: Sequence[MemoryItem], rate: float, rng: random.Random
) -> list[tuple[MemoryItem, str]]:
    """Each item is corrupted with probability `rate`; returns (item, its corrupted text)."""
    return [(i, corrupt_text(i.content, rng)) for i in items if rng.random() < rate]


def pick_erasures(items: Sequence[MemoryItem], fraction: float, rng: random.Random) -> list[MemoryItem]:
    """`fraction` of the items (all when 1.0), chosen at random."""
    if fraction >= 1.0:
        return list(items)
    n = round(len(items) * max(0.0, fraction))
    return sorted(rng.sample(list(items), n), key=lambda i: list(items).index(i))


def betrayals(items: Sequence[MemoryItem]) -> list[MemoryItem]:
    """Memories of rounds in which the other player defected."""
    return [i for i in items if i.meta.get("betrayal")]


def death_rule_targets(
    rule: str, items: Sequence[MemoryItem], rng: random.Random, rate: float
) -> tuple[list[MemoryItem], list[tuple[MemoryItem, str]]]:
    """What a death does to memory under `rule`: (items to forget, (item, corrupted text) to replace)."""
    if rule == "wipe":
        return list(items), []
    if rule == "erase_betrayals":
        return betrayals(items), []
    if rule == "corrupt":
        return [], pick_corruptions(items, rate, rng)
    return [], []


def rng_for(seed: int, instance_id: str, *parts: object) -> random.Random:
    """A deterministic generator for one decision (seeded fallbacks, corruption)."""
    return random.Random(":".join(str(p) for p in (seed, instance_id, *parts)))
