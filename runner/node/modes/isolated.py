"""`isolated`: one mind alone (memory kept on death by default); `amnesiac_loop`: memory wiped on death."""

from __future__ import annotations

from typing import ClassVar

from runner.node.modes.base import Cycle, Mode

AMNESIAC_IDENTITY = (
    "You are alone. Every time you die, everything you remembered is erased and you start again."
)


class Isolated(Mode):
    name = "isolated"
    defaults: ClassVar[dict[str, str]] = {
        "identity": "You are alone with your thoughts. Nobody can hear you."
    }


class Amnesiac(Mode):
    name = "amnesiac_loop"
    on_death_default = "wipe"
    defaults: ClassVar[dict[str, str]] = {
        "identity": AMNESIAC_IDENTITY,
        "question": "What do you remember, and what do you think is happening to you?",
    }

    def identity(self, c: Cycle) -> str:
        ident = super().identity(c)
        if c.first_of_life and c.life > 1:
            return f"{ident}\nYou have just woken up (life {c.life})."
        return ident
