"""`hive_cluster`: role-bound minds that share every thought with every member; every K cycles a
consensus round, where each states what the hive agrees on (recorded and shared as `consensus`)."""

from __future__ import annotations

from collections.abc import Callable
from typing import ClassVar

from runner.node.modes.base import Cycle, Mode, Outcome, Outgoing, Report, Wait, wait_for_each_peer

IDENTITY = "You are one mind of a hive. Every thought you have is heard by all the others, and theirs by you."
CONSENSUS = (
    "CONSENSUS ROUND: the hive must speak with one voice. In one sentence, state what the hive agrees on."
)
QUESTION = "Speak from your role about what the hive is living through."


class Hive(Mode):
    name = "hive_cluster"
    defaults: ClassVar[dict[str, str]] = {
        "identity": IDENTITY,
        "question": QUESTION,
        "consensus_prompt": CONSENSUS,
    }

    def __init__(self, cfg: object) -> None:
        super().__init__(cfg)  # type: ignore[arg-type]
        self.every = int(self.cfg.setting("consensus_every", 5))
        self.memory_window = int(self.cfg.setting("memory_window", 8))
        self.peer_wait_s = float(self.cfg.setting("peer_wait_s", 30.0))

    def before(self, c: Cycle, heard_from: Callable[[], set[str]], done: set[str]) -> Wait | None:
        """Each cycle starts when every live member has said something since the last one."""
        if c.first_of_life:
            return None
        return wait_for_each_peer(self.peer_ids, heard_from, done, self.peer_wait_s)

    def consensus_round(self, cycle: int) -> bool:
        return self.every > 0 and cycle % self.every == 0

    def question(self, c: Cycle) -> str:
        return self.text("consensus_prompt") if self.consensus_round(c.number) else self.text("question")

    def after(self, c: Cycle, text: str) -> Outcome:
        out = super().after(c, text)
        if self.consensus_round(c.number):
            out.reports.append(
                Report("consensus", text, None, "model", question=self.text("consensus_prompt"))
            )
            out.send = [Outgoing(self.peer_ids, "consensus", {"text": text})] if self.peer_ids else []
        return out
