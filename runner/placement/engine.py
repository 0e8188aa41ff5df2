"""place(): greedy first, exact search when greedy fails, a clear verdict when neither places all."""

from __future__ import annotations

from dataclasses import replace

from runner.errors import InputError, NoPlacementError
from runner.placement import constraints, diagnose, exact, greedy
from runner.placement.model import Move, Placement, Problem, Verdict
from runner.placement.policies import POLICIES
from runner.placement.state import ClusterState


def check(problem: Problem) -> None:
    """Reject inputs that name things that do not exist (these are input errors, not infeasibility)."""
    if problem.policy not in POLICIES:
        raise InputError(f"unknown placement policy {problem.policy!r}; choose one of {', '.join(POLICIES)}")
    names = [n.name for n in problem.nodes]
    if len(set(names)) != len(names):
        raise InputError("duplicate node names in the inventory")
    known = set(names)
    seen: set[str] = set()
    for inst in problem.instances:
        if inst.id in seen:
            raise InputError(f"instance id {inst.id!r} is used twice; instance ids must be unique")
        seen.add(inst.id)
        for field, value in (("node", inst.pin), ("prefer", inst.prefer)):
            if value is not None and value not in known:
                raise InputError(
                    f"instance {inst.id}: {field}: unknown node {value!r} (nodes: {', '.join(names)})"
                )
    for node in sorted(problem.excluded - known):
        raise InputError(f"--exclude {node}: unknown node (nodes: {', '.join(names)})")


def _explain_final(state: ClusterState, ids: list[str]) -> dict[str, tuple[Verdict, ...]]:
    """Verdicts for instances placed by the exact search: each one scored against all the others."""
    out = {}
    for iid in ids:
        inst = state.instances[iid]
        k = state.where[iid]
        state.unassign(inst)
        out[iid] = greedy.verdicts(state, inst, state.problem.policy)
        state.assign(inst, k)
    return out


def place(problem: Problem) -> Placement:
    check(problem)
    state = ClusterState(problem)
    explain: dict[str, tuple[Verdict, ...]] | None = {} if problem.explain else None
    kept: set[str] = set()
    stuck = greedy.run(state, explain, kept)
    method = "greedy"
    if stuck is not None and problem.policy != "binpack":
        # Second fast try: best fit (binpack) packs far better than a balancing score when space is tight.
        retry_explain: dict[str, tuple[Verdict, ...]] | None = {} if problem.explain else None
        retry, retry_kept = ClusterState(replace(problem, policy="binpack")), set()
        if greedy.run(retry, retry_explain, retry_kept) is None:
            state, explain, kept, stuck, method = retry, retry_explain, retry_kept, None, "best-fit"
    if stuck is None and state.repairs and explain is not None:
        explain = _explain_final(state, sorted(state.where))  # moved instances: re-explain where they are
    if stuck is not None:
        result = exact.solve(ClusterState(problem), problem.exact_timeout_s)
        if result.outcome is not exact.Outcome.PLACED:
            raise NoPlacementError(diagnose.message(state, stuck, result, problem.exact_timeout_s))
        state = ClusterState(problem)
        for inst in sorted(problem.instances, key=lambda i: i.id):
            k = result.assignment[inst.id]
            if not constraints.feasible_mask(state, inst)[k]:  # never trust a solver blindly
                raise AssertionError(f"exact search returned an infeasible assignment for {inst.id}")
            state.assign(inst, k)
        kept = {
            i.id
            for i in problem.instances
            if not problem.rebalance and problem.current.get(i.id) == state.nodes[state.where[i.id]].name
        }
        if explain is not None:
            explain = _explain_final(state, sorted(state.where))
        method = "exact"
    assignment = state.assignment()
    moves = tuple(
        Move(iid, problem.current[iid], node)
        for iid, node in sorted(assignment.items())
        if iid in problem.current and problem.current[iid] != node
    )
    return Placement(
        assignment=dict(sorted(assignment.items())),
        method=method,
        moves=moves,
        explanations=explain or {},
        kept=frozenset(kept),
    )
