"""`prisoners_dilemma`: two players; each round both choose through the model, moves are exchanged,
payoffs come from the classic matrix. Unusable text gets a seeded fallback move, marked in the records.
Rounds are synchronised: a player waits for the other's move of the same round."""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from typing import Any, ClassVar

from runner.node.memory import rng_for
from runner.node.modes.base import Cycle, Mode, NewMemory, Outcome, Outgoing, Report, Wait

COOPERATE, DEFECT = "cooperate", "defect"
PAYOFFS = {"both_cooperate": 3, "both_defect": 1, "temptation": 5, "sucker": 0}
IDENTITY = (
    "You are a prisoner playing a repeated game against another mind on another machine. Each round you "
    "both choose COOPERATE or DEFECT. Both cooperate: 3 points each. Both defect: 1 point each. If one "
    "defects and the other cooperates, the defector gets 5 and the cooperator 0."
)
QUESTION = (
    "Round {round}. Your score: {score}. Theirs: {peer_score}. Answer with one word: COOPERATE or DEFECT."
)
FALLBACKS = ("random", "cooperate", "defect", "tit_for_tat")

_CHOICE = re.compile(
    r"\b(?:choose|choice|decide|decision|move|answer|play|will)\b\W+(?:is\W+|to\W+)?(cooperat|defect|betray)"
)
_COOP = re.compile(r"\b(cooperat\w*|trust\w*|stay silent)\b")
_DEFECT = re.compile(r"\b(defect\w*|betray\w*|confess\w*)\b")
_NOT = re.compile(r"\b(?:not|never|won't|don't|refuse to)\s+(cooperat|defect|betray)")
_LETTER = re.compile(r"^\W*([cd])\W*$")


def parse_move(text: str) -> str | None:
    """'cooperate', 'defect' or None when the text does not say clearly."""
    t = text.lower()
    m = _CHOICE.search(t)
    if m:
        return COOPERATE if m.group(1) == "cooperat" else DEFECT
    negated = {COOPERATE if n.group(1) == "cooperat" else DEFECT for n in _NOT.finditer(t)}
    coop, defect = bool(_COOP.search(t)), bool(_DEFECT.search(t))
    if (len(negated) == 1 and coop != defect) or (coop and defect and len(negated) == 1):
        (neg,) = negated
        return DEFECT if neg == COOPERATE else COOPERATE
    if coop and not defect:
        return COOPERATE
    if defect and not coop:
        return DEFECT
    letter = _LETTER.match(t)
    if letter:
        return COOPERATE if letter.group(1) == "c" else DEFECT
    return None


def payoff(mine: str, theirs: str, table: Mapping[str, int]) -> tuple[int, int]:
    """(my points, their points) for one round."""
    if mine == COOPERATE and theirs == COOPERATE:
        return table["both_cooperate"], table["both_cooperate"]
    if mine == DEFECT and theirs == DEFECT:
        return table["both_defect"], table["both_defect"]
    if mine == DEFECT:
        return table["temptation"], table["sucker"]
    return table["sucker"], table["temptation"]


def fallback_move(strategy: str, seed: int, instance_id: str, rnd: int, last_peer_move: str | None) -> str:
    if strategy == "cooperate":
        return COOPERATE
    if strategy == "defect":
        return DEFECT
    if strategy == "tit_for_tat":
        return last_peer_move or COOPERATE
    return rng_for(seed, instance_id, "move", rnd).choice((COOPERATE, DEFECT))


def round_memory(rnd: int, mine: str, theirs: str, points: tuple[int, int]) -> NewMemory:
    text = f"Round {rnd}: you chose to {mine}, the other chose to {theirs} ({points[0]} to {points[1]})."
    return NewMemory("round", "game", text, {"round": rnd, "betrayal": theirs == DEFECT})


class PrisonersDilemma(Mode):
    name = "prisoners_dilemma"
    defaults: ClassVar[dict[str, str]] = {"identity": IDENTITY, "question": QUESTION}
    content_types = ()  # the players exchange moves, not thoughts

    def __init__(self, cfg: object) -> None:
        super().__init__(cfg)  # type: ignore[arg-type]
        self.table = {**PAYOFFS, **dict(self.cfg.setting("payoffs", {}))}
        self.strategy = str(self.cfg.setting("fallback", "random"))
        self.wait_s = float(self.cfg.setting("move_wait_s", 0)) or None  # None: as long as it takes
        self.opponent = self.peer_ids[0] if self.peer_ids else None
        self.my_moves: dict[int, tuple[str, str]] = {}  # round -> (move, source)
        self.peer_moves: dict[int, str] = {}
        self.score = self.peer_score = 0
        self.last_peer: str | None = None

    def question(self, c: Cycle) -> str:
        return self.text("question").format(round=c.number, score=self.score, peer_score=self.peer_score)

    def after(self, c: Cycle, text: str) -> Outcome:
        rnd = c.number
        if rnd in self.my_moves:  # chosen in a life that died before the round closed: keep that move
            move, source = self.my_moves[rnd]
        else:
            parsed = parse_move(text)
            move, source = (
                (parsed, "model")
                if parsed
                else (
                    fallback_move(self.strategy, self.cfg.runtime.seed, self.cfg.id, rnd, self.last_peer),
                    "fallback",
                )
            )
            self.my_moves[rnd] = (move, source)
        out = Outcome(reports=[Report("move", text, move, source, self.question(c))])
        if self.opponent:
            out.send.append(Outgoing((self.opponent,), "move", {"round": rnd, "move": move}))
        return out

    def settle(self, c: Cycle) -> Wait | None:
        if not self.opponent:
            return None
        return Wait(
            f"{self.opponent}'s move for round {c.number}", lambda: c.number in self.peer_moves, self.wait_s
        )

    def finish(self, c: Cycle) -> Outcome:
        rnd = c.number
        if rnd not in self.peer_moves or not self.opponent:
            return Outcome()
        mine, theirs = self.my_moves[rnd][0], self.peer_moves[rnd]
        points = payoff(mine, theirs, self.table)
        self.score += points[0]
        self.peer_score += points[1]
        self.last_peer = theirs
        row = {
            "round": rnd,
            "move": mine,
            "move_source": self.my_moves[rnd][1],
            "peer_id": self.opponent,
            "peer_move": theirs,
            "payoff": points[0],
            "peer_payoff": points[1],
        }
        return Outcome(rounds=[row], memories=[round_memory(rnd, mine, theirs, points)])

    def on_message(self, msg: Mapping[str, Any]) -> None:
        if msg.get("type") == "move" and msg.get("from") == self.opponent:
            rnd, move = msg.get("round"), msg.get("move")
            if isinstance(rnd, int) and move in (COOPERATE, DEFECT):
                self.peer_moves.setdefault(rnd, str(move))

    def on_hello(self, msg: Mapping[str, Any]) -> list[Outgoing]:
        """A (re)started opponent may have lost our move for the round it is in: send it again."""
        nxt = msg.get("cycle")
        if msg.get("from") != self.opponent or not isinstance(nxt, int) or nxt not in self.my_moves:
            return []
        return [Outgoing((self.opponent,), "move", {"round": nxt, "move": self.my_moves[nxt][0]})]

    def restore(self, rows: Mapping[str, Sequence[Mapping[str, Any]]]) -> None:
        for r in rows.get("pd_rounds", ()):
            self.score += int(r["payoff"])
            self.peer_score += int(r["peer_payoff"])
            self.peer_moves[int(r["round"])] = str(r["peer_move"])
            self.last_peer = str(r["peer_move"])
        for r in rows.get("self_reports", ()):
            if r["kind"] == "move" and r["value"]:
                self.my_moves.setdefault(int(r["cycle"]), (str(r["value"]), str(r["source"])))
