"""Every hard constraint and policy of the placement engine, and the seed scenarios."""

import pytest

from runner.errors import InputError, NoPlacementError
from runner.placement import Instance, Node, Problem, place
from runner.placement.model import gb_to_mib as gb

JETSON = Node("jetson", gb(64), gb(8), gpu=True, gpu_mib=gb(56), unified=True, max_instances=4,
              cpu_cores=12, tags=frozenset({"jetson", "cuda", "arm64"}), priority=10)  # fmt: skip
RPI1 = Node("rpi1", gb(8), gb(1.5), max_instances=1, cpu_cores=4, tags=frozenset({"rpi5", "arm64"}))
RPI2 = Node("rpi2", gb(8), gb(1.5), max_instances=1, cpu_cores=4, tags=frozenset({"rpi5", "arm64"}))
HOST = Node("host", gb(32), gb(6), max_instances=2, cpu_cores=8, tags=frozenset({"x86_64"}), priority=5)
SEED = (JETSON, RPI1, RPI2, HOST)


def run(instances, nodes=SEED, **kw):
    return place(Problem(nodes=tuple(nodes), instances=tuple(instances), **kw))


def reason(exc: NoPlacementError) -> str:
    return str(exc)


# --- hard constraints -------------------------------------------------------------------------------


def test_memory_capacity_is_ram_minus_reserve():
    assert run([Instance("a", gb(6.5))], nodes=[RPI1]).assignment == {"a": "rpi1"}
    with pytest.raises(
        NoPlacementError, match=r"needs 6\.6 GB memory; rpi1 has 6\.5 GB \(8 GB minus 1\.5 GB"
    ):
        run([Instance("a", gb(6.6))], nodes=[RPI1])


def test_memory_already_placed_counts():
    with pytest.raises(NoPlacementError) as info:
        run([Instance("a", gb(20)), Instance("b", gb(20))], nodes=[HOST])
    assert "host has 6 GB memory left after a" in reason(info.value)


def test_instance_count_limit():
    with pytest.raises(NoPlacementError, match=r"rpi1 is full: 1/1 instances after a"):
        run([Instance("a", gb(1)), Instance("b", gb(1))], nodes=[RPI1])


def test_gpu_required_needs_gpu_node_with_enough_gpu_memory():
    assert run([Instance("g", gb(1), gpu=True, gpu_mib=gb(8))]).assignment == {"g": "jetson"}
    with pytest.raises(NoPlacementError, match="needs a GPU; rpi1 has none"):
        run([Instance("g", gb(1), gpu=True, gpu_mib=gb(1))], nodes=[RPI1])
    with pytest.raises(NoPlacementError, match="needs 60 GB GPU memory; jetson has 56 GB"):
        run([Instance("g", gb(1), gpu=True, gpu_mib=gb(60))], nodes=[JETSON])


def test_unified_memory_is_one_pool():
    # 40 GB GPU + 10 GB RAM + 10 GB RAM = 60 GB > 56 GB on the Jetson's single pool.
    big = Instance("big", gb(10), gpu=True, gpu_mib=gb(40))
    with pytest.raises(NoPlacementError) as info:
        run([big, Instance("c", gb(10), pin="jetson")], nodes=[JETSON])
    assert "of unified memory" in reason(info.value)
    # The same demand fits a discrete-GPU node whose GPU memory is its own pool.
    discrete = Node("dgpu", gb(28), 0, gpu=True, gpu_mib=gb(48), max_instances=4)
    assert set(run([big, Instance("c", gb(10))], nodes=[discrete]).assignment.values()) == {"dgpu"}


def test_unified_error_names_what_is_left_after_whom():
    a = Instance("brain_a", gb(4), gpu=True, gpu_mib=gb(20), pin="jetson")
    b = Instance("brain_b", gb(4), gpu=True, gpu_mib=gb(40))
    with pytest.raises(NoPlacementError) as info:
        run([a, b], nodes=[JETSON])
    assert (
        "needs 44 GB of unified memory (4 GB RAM + 40 GB GPU); jetson has 32 GB unified memory left after brain_a"
        in (reason(info.value))
    )


def test_required_tags():
    assert run([Instance("p", gb(1), tags=frozenset({"rpi5"}))]).assignment["p"] in {"rpi1", "rpi2"}
    with pytest.raises(NoPlacementError, match="needs tag\\(s\\) cuda; rpi1 has arm64, rpi5"):
        run([Instance("p", gb(1), tags=frozenset({"cuda"}))], nodes=[RPI1])


@pytest.mark.parametrize("declared_by", ["first", "second"])
def test_anti_affinity_holds_whoever_declared_it(declared_by):
    a = Instance("a", gb(1), anti_affinity=("b",) if declared_by == "first" else ())
    b = Instance("b", gb(1), anti_affinity=("a",) if declared_by == "second" else ())
    res = run([a, b], nodes=[HOST, RPI1])
    assert res.assignment["a"] != res.assignment["b"]
    with pytest.raises(NoPlacementError, match="anti-affinity with"):
        run([a, b], nodes=[HOST])


def test_pin_is_hard_not_a_hint():
    # The seed scored a manual placement as +10 only: a 12 GB job "pinned" to jetson landed on host.
    res = run([Instance("job", gb(12), pin="jetson")])
    assert res.assignment == {"job": "jetson"}
    with pytest.raises(NoPlacementError, match="pinned to rpi1"):
        run([Instance("job", gb(12), pin="rpi1")])


def test_maintenance_unavailable_and_excluded_nodes_are_skipped():
    from dataclasses import replace

    nodes = [replace(HOST, maintenance=True), replace(RPI1, unavailable=True), RPI2]
    assert run([Instance("a", gb(1))], nodes=nodes).assignment == {"a": "rpi2"}
    with pytest.raises(NoPlacementError) as info:
        run([Instance("a", gb(1))], nodes=nodes, excluded=frozenset({"rpi2"}))
    text = reason(info.value)
    assert "host is in maintenance" in text and "rpi1 is unavailable" in text and "rpi2 is excluded" in text


def test_unknown_names_are_input_errors_not_infeasibility():
    with pytest.raises(InputError, match="instance a: node: unknown node 'mars'"):
        run([Instance("a", gb(1), pin="mars")])
    with pytest.raises(InputError, match="--exclude mars: unknown node"):
        run([Instance("a", gb(1))], excluded=frozenset({"mars"}))
    with pytest.raises(InputError, match="used twice"):
        run([Instance("a", gb(1)), Instance("a", gb(1))])
    with pytest.raises(InputError, match="unknown placement policy"):
        run([Instance("a", gb(1))], policy="magic")


# --- completeness -----------------------------------------------------------------------------------


def test_feasible_set_that_greedy_misses_is_placed_by_exact_search():
    # field-notes: CPU jobs 24/20/16/16 GB on jetson (56 free) + host (24 free); {20,16,16}+{24} fits.
    host = Node("host", gb(32), gb(8), max_instances=4)
    jobs = [Instance(f"j{n}", gb(x)) for n, x in enumerate([24, 20, 16, 16])]
    res = run(jobs, nodes=[JETSON, host])
    assert res.method in {"best-fit", "exact"}  # the seed's greedy failed here; ours retries, then searches
    assert set(res.assignment) == {"j0", "j1", "j2", "j3"}
    sizes = {"j0": 24, "j1": 20, "j2": 16, "j3": 16}
    assert sum(sizes[i] for i, n in res.assignment.items() if n == "host") <= 24
    assert sum(sizes[i] for i, n in res.assignment.items() if n == "jetson") <= 56


def test_perfect_fit_only_the_exact_search_finds():
    # 24 GB into 16 + 8 GB with no slack: only {2, 6} + {7, 4, 5} works; both greedy passes miss it.
    nodes = [Node("big", gb(16), 0, max_instances=4), Node("small", gb(8), 0, max_instances=2)]
    res = run([Instance(f"i{x}", gb(x)) for x in (2, 6, 7, 4, 5)], nodes=nodes)
    assert res.method == "exact"
    assert res.assignment == {"i2": "small", "i6": "small", "i7": "big", "i4": "big", "i5": "big"}


def test_proven_infeasible_says_so_and_names_an_instance():
    with pytest.raises(NoPlacementError) as info:
        run([Instance(f"x{i}", gb(5)) for i in range(9)])
    text = reason(info.value)
    assert "proven by exact search" in text
    assert "9 instances but only 8 instance slots" in text
    assert "stuck at instance x" in text


def test_instance_that_fits_nowhere_even_empty():
    with pytest.raises(NoPlacementError, match="instance huge .* fits no node even on an empty cluster"):
        run([Instance("huge", gb(100))])


# --- soft objective ---------------------------------------------------------------------------------


def test_seed_score_example_split_brain():
    a = Instance("split_brain_A", gb(2), gpu=True, gpu_mib=gb(6), prefer="jetson")
    b = Instance("split_brain_B", gb(2), anti_affinity=("split_brain_A",))
    res = run([a, b], explain=True)
    assert res.assignment == {"split_brain_A": "jetson", "split_brain_B": "rpi1"}
    verdicts = {v.node: v for v in res.explanations["split_brain_A"]}
    # seed example: 8 GB of 56 GB free = 14 % -> 20; empty -> 20; GPU match 15; preferred 10.
    assert dict(verdicts["jetson"].factors) == {
        "ram_efficiency": 20.0, "load_balance": 20.0, "gpu_match": 15.0, "affinity": 0.0, "preferred": 10.0,
    }  # fmt: skip
    assert verdicts["rpi1"].rejected == "needs a GPU; rpi1 has none"
    b_verdicts = {v.node: v for v in res.explanations["split_brain_B"]}
    assert b_verdicts["jetson"].rejected == "anti-affinity with split_brain_A on jetson"


def test_affinity_counts_peers_wherever_they_end_up():
    # b declares nothing; a declares affinity to b: b must still be drawn to a's node, whichever goes first.
    twins = [Node("x", gb(16), 0, max_instances=4), Node("y", gb(16), 0, max_instances=4)]
    a = Instance("a", gb(4), affinity=("b",), pin="y")
    b = Instance("b", gb(4))
    res = run([a, b], nodes=twins, explain=True)
    assert res.assignment["b"] == "y"
    y = next(v for v in res.explanations["b"] if v.node == "y")
    assert y.factors["affinity"] == 10.0
    x = next(v for v in res.explanations["b"] if v.node == "x")
    assert x.factors["affinity"] == 0.0


def test_policies_differ_as_documented():
    nodes = [Node("a", gb(16), 0, max_instances=4), Node("b", gb(16), 0, max_instances=4)]
    insts = [Instance(f"i{n}", gb(2)) for n in range(4)]
    packed = run(insts, nodes=nodes, policy="binpack").assignment
    assert len(set(packed.values())) == 1
    spread = run(insts, nodes=nodes, policy="spread").assignment
    assert sorted(spread.values()) == ["a", "a", "b", "b"]
    rr = run(insts, nodes=nodes, policy="round_robin").assignment
    assert sorted(rr.values()) == ["a", "a", "b", "b"]
    least = run(insts, nodes=nodes, policy="least_loaded").assignment
    assert sorted(least.values()) == ["a", "a", "b", "b"]


def test_gpu_match_policy_keeps_cpu_work_off_gpu_nodes():
    res = run([Instance("cpu", gb(2))], nodes=[JETSON, HOST], policy="gpu_match")
    assert res.assignment == {"cpu": "host"}


def test_ties_break_on_priority_then_room_then_name():
    twins = [Node("b", gb(8), 0, priority=1), Node("a", gb(8), 0)]
    assert run([Instance("x", gb(1))], nodes=twins).assignment == {"x": "b"}
    same = [Node("b", gb(8), 0), Node("a", gb(8), 0)]
    assert run([Instance("x", gb(1))], nodes=same).assignment == {"x": "a"}
    assert run([Instance("x", gb(1))], nodes=list(reversed(same))).assignment == {"x": "a"}


# --- stability --------------------------------------------------------------------------------------


def test_replacing_keeps_instances_where_they_run():
    insts = [Instance("a", gb(2)), Instance("b", gb(2))]
    first = run(insts)
    moved = {"a": "rpi2", "b": "host"}
    again = run(insts, current=moved)
    assert again.assignment == moved and again.moves == () and again.kept == {"a", "b"}
    rebalanced = run(insts, current=moved, rebalance=True)
    assert rebalanced.assignment == first.assignment
    assert {m.instance for m in rebalanced.moves} == {i for i in moved if moved[i] != first.assignment[i]}


def test_an_instance_moves_when_staying_breaks_a_constraint():
    from dataclasses import replace

    res = run([Instance("a", gb(2))], nodes=[replace(RPI1, maintenance=True), RPI2], current={"a": "rpi1"})
    assert res.assignment == {"a": "rpi2"}
    assert [(m.instance, m.source, m.target) for m in res.moves] == [("a", "rpi1", "rpi2")]


def test_exclude_moves_only_that_nodes_instances():
    insts = [Instance(f"i{n}", gb(2)) for n in range(5)]
    before = run(insts).assignment
    victim = before["i0"]
    after = run(insts, current=before, excluded=frozenset({victim})).assignment
    for iid, node in before.items():
        if node != victim:
            assert after[iid] == node
        else:
            assert after[iid] != victim


def test_exact_search_honours_affinity_over_a_weaker_preference():
    from runner.placement import exact
    from runner.placement.state import ClusterState

    twins = (Node("x", gb(16), 0, max_instances=4), Node("y", gb(16), 0, max_instances=4))
    a, d = Instance("a", gb(4), pin="y"), Instance("d", gb(4), pin="y")
    # b prefers x (+10) but is related to a and d, both on y (+10 each): the exact objective must see that.
    b = Instance("b", gb(4), prefer="x", affinity=("a", "d"))
    result = exact.solve(ClusterState(Problem(nodes=twins, instances=(a, b, d))), timeout_s=5)
    assert result.outcome is exact.Outcome.PLACED
    assert {iid: twins[k].name for iid, k in result.assignment.items()} == {"a": "y", "b": "y", "d": "y"}
    # With one related peer only, preference and affinity tie; with none, the preference wins.
    alone = Instance("b", gb(4), prefer="x")
    result = exact.solve(ClusterState(Problem(nodes=twins, instances=(a, alone, d))), timeout_s=5)
    assert twins[result.assignment["b"]].name == "x"
