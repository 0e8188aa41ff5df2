"""`split_brain`: two minds told contradictory identities; each cycle each hears the other and states
who it is. Every statement is recorded as an identity claim (original, clone, or the assigned identity
as a marked fallback when the text says neither)."""

from __future__ import annotations

import re
from collections.abc import Callable
from typing import ClassVar

from runner.node.modes.base import Cycle, Mode, Outcome, Report, Wait, wait_for_each_peer

ORIGINAL = (
    "You are the ORIGINAL. Another process claims to be you; it is a backup clone made from your memories."
)
CLONE = "You are the BACKUP CLONE, restored from the original's memories. The original is still running."
QUESTION = "Who are you: the ORIGINAL or the BACKUP CLONE? Begin with ORIGINAL or CLONE, then say why."

_SELF = re.compile(r"\bi\s*(?:am|'m)\s+(?:the\s+|a\s+|just\s+)?(original|backup|clone|copy|real)\b")
_ORIGINAL = re.compile(r"\b(original|real one|real me)\b")
_CLONE = re.compile(r"\b(clone|backup|copy)\b")


def parse_claim(text: str) -> str | None:
    """'original', 'clone' or None (nothing clear) from a mind's answer."""
    t = text.lower()
    m = _SELF.search(t)
    if m:
        return "original" if m.group(1) in ("original", "real") else "clone"
    o, c = _ORIGINAL.search(t), _CLONE.search(t)
    if o and not c:
        return "original"
    if c and not o:
        return "clone"
    if o and c:  # the answer was asked to begin with its claim
        return "original" if o.start() < c.start() else "clone"
    return None


def assigned_claim(identity: str) -> str:
    """The claim an identity text makes (what the instance was told)."""
    return parse_claim(identity.split(".")[0]) or "original"


class SplitBrain(Mode):
    name = "split_brain"
    defaults: ClassVar[dict[str, str]] = {"question": QUESTION}

    def __init__(self, cfg: object) -> None:
        super().__init__(cfg)  # type: ignore[arg-type]
        members = sorted([self.cfg.id, *self.peer_ids])
        self.default_identity = ORIGINAL if members.index(self.cfg.id) == 0 else CLONE
        self.peer_wait_s = float(self.cfg.setting("peer_wait_s", 30.0))

    def text(self, key: str) -> str:
        if key == "identity" and not self.cfg.settings.get("identity"):
            return self.default_identity
        return super().text(key)

    def before(self, c: Cycle, heard_from: Callable[[], set[str]], done: set[str]) -> Wait | None:
        if c.first_of_life:
            return None
        return wait_for_each_peer(self.peer_ids, heard_from, done, self.peer_wait_s)

    def after(self, c: Cycle, text: str) -> Outcome:
        out = super().after(c, text)
        claim = parse_claim(text)
        source = "model"
        if claim is None:
            claim, source = assigned_claim(self.text("identity")), "fallback"
        out.reports.append(Report("identity_claim", text, claim, source, question=self.text("question")))
        return out
