"""Properties of placement over random clusters, and an oracle: brute force must agree on feasibility."""

import itertools

import numpy as np
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from runner.errors import NoPlacementError
from runner.placement import Instance, Node, Problem, place
from runner.placement import constraints as C
from runner.placement.policies import POLICIES
from runner.placement.state import ClusterState

NAMES = ["n0", "n1", "n2", "n3"]


@st.composite
def nodes(draw, max_nodes=4):
    count = draw(st.integers(1, max_nodes))
    out = []
    for k in range(count):
        gpu = draw(st.booleans())
        ram = draw(st.integers(2, 16)) * 1024
        out.append(
            Node(
                name=NAMES[k],
                ram_mib=ram,
                reserved_mib=draw(st.integers(0, 2)) * 512,
                gpu=gpu,
                gpu_mib=draw(st.integers(1, 12)) * 1024 if gpu else 0,
                unified=gpu and draw(st.booleans()),
                max_instances=draw(st.integers(0, 3)),
                tags=frozenset(draw(st.sets(st.sampled_from(["a", "b"]), max_size=2))),
                priority=draw(st.integers(0, 2)),
                maintenance=draw(st.booleans()) and draw(st.booleans()),
            )
        )
    return tuple(out)


@st.composite
def problems(draw, max_instances=6, max_nodes=4):
    ns = draw(nodes(max_nodes))
    count = draw(st.integers(1, max_instances))
    ids = [f"i{k}" for k in range(count)]
    insts = []
    for iid in ids:
        gpu = draw(st.booleans()) and draw(st.booleans())
        others = [o for o in ids if o != iid]
        insts.append(
            Instance(
                id=iid,
                ram_mib=draw(st.integers(1, 8)) * 512,
                gpu=gpu,
                gpu_mib=draw(st.integers(1, 6)) * 512 if gpu else 0,
                pin=draw(st.none() | st.sampled_from([n.name for n in ns])) if draw(st.booleans()) else None,
                prefer=draw(st.none() | st.sampled_from([n.name for n in ns])),
                affinity=tuple(draw(st.lists(st.sampled_from(others), max_size=1, unique=True)))
                if others
                else (),
                anti_affinity=tuple(draw(st.lists(st.sampled_from(others), max_size=2, unique=True)))
                if others
                else (),
                tags=frozenset(draw(st.sets(st.sampled_from(["a", "b"]), max_size=1))),
                avoid=frozenset(draw(st.sets(st.sampled_from([n.name for n in ns]), max_size=1))),
            )
        )
    policy = draw(st.sampled_from(sorted(POLICIES)))
    return Problem(nodes=ns, instances=tuple(insts), policy=policy)


def valid(problem: Problem, assignment: dict[str, str]) -> bool:
    """Independent check of every hard constraint (no engine code)."""
    by_node = {n.name: n for n in problem.nodes}
    for n in problem.nodes:
        here = [i for i in problem.instances if assignment[i.id] == n.name]
        if here and (n.maintenance or n.unavailable or n.name in problem.excluded):
            return False
        if len(here) > n.max_instances:
            return False
        ram = sum(i.ram_mib + (i.gpu_mib if (i.gpu and n.unified) else 0) for i in here)
        if ram > n.ram_mib - n.reserved_mib:
            return False
        if sum(i.gpu_mib for i in here if i.gpu) > (n.gpu_mib if n.gpu else 0):
            return False
    for i in problem.instances:
        node = by_node[assignment[i.id]]
        if i.gpu and not node.gpu:
            return False
        if i.pin is not None and i.pin != node.name:
            return False
        if not i.tags <= node.tags:
            return False
        if node.name in i.avoid:
            return False
        for other in i.anti_affinity:
            if assignment[other] == node.name:
                return False
    return True


def brute_force_feasible(problem: Problem) -> bool:
    names = [n.name for n in problem.nodes]
    ids = [i.id for i in problem.instances]
    return any(
        valid(problem, dict(zip(ids, combo, strict=True)))
        for combo in itertools.product(names, repeat=len(ids))
    )


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(problems())
def test_oracle_feasibility_agrees_with_brute_force_and_result_is_valid(problem):
    feasible = brute_force_feasible(problem)
    try:
        result = place(problem)
    except NoPlacementError:
        assert not feasible, "place() gave up on a feasible set"
        return
    assert feasible
    assert set(result.assignment) == {i.id for i in problem.instances}
    assert valid(problem, dict(result.assignment)), "placement breaks a hard constraint"


@settings(max_examples=150, deadline=None)
@given(problems(max_instances=8))
def test_deterministic(problem):
    def outcome(p):
        try:
            return dict(place(p).assignment)
        except NoPlacementError as exc:
            return str(exc)

    assert outcome(problem) == outcome(problem)
    reordered = Problem(
        nodes=problem.nodes, instances=tuple(reversed(problem.instances)), policy=problem.policy
    )
    first, second = outcome(problem), outcome(reordered)
    assert isinstance(first, dict) == isinstance(second, dict)


@settings(max_examples=200, deadline=None)
@given(problems(max_instances=6), st.data())
def test_fast_mask_and_explained_reasons_agree(problem, data):
    state = ClusterState(problem)
    for inst in problem.instances:  # put some instances down anywhere they fit
        mask = C.feasible_mask(state, inst)
        if mask.any() and data.draw(st.booleans()):
            state.assign(inst, int(np.flatnonzero(mask)[0]))
    for inst in problem.instances:
        if inst.id in state.where:
            continue
        mask = C.feasible_mask(state, inst)
        for k in range(len(problem.nodes)):
            assert mask[k] == (C.rejection(state, inst, k) is None)


@settings(max_examples=100, deadline=None)
@given(problems(max_instances=6))
def test_pins_and_symmetric_anti_affinity_always_hold(problem):
    try:
        result = place(problem)
    except NoPlacementError:
        return
    for inst in problem.instances:
        if inst.pin:
            assert result.assignment[inst.id] == inst.pin
        for other in inst.anti_affinity:
            assert result.assignment[inst.id] != result.assignment[other]
