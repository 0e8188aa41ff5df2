"""Serving experiments with `replicas: MIN:MAX` take as many replicas as fit, at least MIN. Pure.

The file defines MAX replicas (`<name>-0` ... `<name>-(MAX-1)`); any of them may be left out while MIN
stay. Placement tries them all; while no placement exists, it leaves out one more replica, of the
experiment with the most replicas still in: one of the `first` given (fail over's: the dead nodes'), else
the highest-indexed. The replicas repel each other (one per node), so the ones beyond the nodes that may
take them are left out before the first try. When even MIN replicas of every experiment do not fit, the
planner's error of that last try (which constraint, which node) is what the user sees.
"""

from __future__ import annotations

from collections.abc import Callable, Collection, Mapping, Sequence
from typing import TypeVar

from runner.errors import NoPlacementError
from runner.experiment import Experiment
from runner.placement.model import Instance

R = TypeVar("R")


def elastic(experiments: Sequence[Experiment]) -> dict[str, tuple[list[str], int]]:
    """experiment -> (its replica ids present, in file order; its MIN), for each with MIN < MAX."""
    return {
        e.name: ([i.id for i in e.instances], e.serving.min_replicas)
        for e in experiments
        if e.serving is not None and e.instances and e.serving.min_replicas < e.serving.max_replicas
    }


def unplaced_allowed(experiments: Sequence[Experiment], placed: Mapping[str, str]) -> set[str]:
    """Replicas defined but not placed that are fine so: of a MIN:MAX experiment that has MIN placed."""
    out: set[str] = set()
    for ids, low in elastic(experiments).values():
        if sum(1 for i in ids if i in placed) >= low:
            out.update(i for i in ids if i not in placed)
    return out


def place_replicas(
    experiments: Sequence[Experiment],
    instances: Sequence[Instance],
    room: int,
    place: Callable[[Sequence[Instance]], R],
    first: Collection[str] = (),
) -> tuple[R, tuple[str, ...]]:
    """Place `instances` (every experiment's replicas included), leaving out replicas of MIN:MAX experiments
    (never below MIN) until a placement exists. `room`: how many nodes may take a replica at all (at most
    one each). Returns the placement and the ids left out, in the order they were."""
    pools = elastic(experiments)
    left_out: list[str] = []

    def drop(name: str) -> None:
        ids = pools[name][0]
        pick = next((i for i in reversed(ids) if i in first), ids[-1])
        ids.remove(pick)
        left_out.append(pick)

    for name, (ids, low) in pools.items():
        while len(ids) > max(room, low):
            drop(name)
    while True:
        chosen = [i for i in instances if i.id not in left_out]
        try:
            return place(chosen), tuple(left_out)
        except NoPlacementError:
            can = [n for n, (ids, low) in pools.items() if len(ids) > low]
            if not can:
                raise
            drop(max(can, key=lambda n: (any(i in first for i in pools[n][0]), len(pools[n][0]), n)))
