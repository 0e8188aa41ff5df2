"""The complete pass: the placement as a 0/1 integer program, solved by HiGHS within a time bound.

Variables x[i,n] = 1 when instance i runs on node n, only for pairs that pass the static checks.
Rows: each instance exactly once; per node the instance slots, the RAM pool (GPU claims included on
unified-memory nodes) and the GPU pool; per node and anti-affine pair x[i,n] + x[j,n] <= 1.
The objective keeps running instances where they are, then honours preferred nodes, affinity (one
continuous variable per related pair and node) and GPU match.
"""

from __future__ import annotations

import os
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from enum import Enum
from typing import TYPE_CHECKING

import numpy as np

from runner.placement import constraints
from runner.placement.state import ClusterState

if TYPE_CHECKING:  # imported where it solves: the gateway places kernels with the engine, without HiGHS
    import highspy

# Above this many variables the integer program is not attempted (the verdict says so).
MAX_VARIABLES = 200_000


def _silent_highs() -> highspy.Highs:
    """A solver that prints nothing. HiGHS writes its banner to file descriptor 1 while it is being
    constructed, before any option can turn output off; `--json` promises one JSON document on stdout,
    so for that moment descriptor 1 points at stderr."""
    import highspy

    sys.stdout.flush()
    saved = os.dup(1)
    try:
        os.dup2(2, 1)
        h = highspy.Highs()
    finally:
        os.dup2(saved, 1)
        os.close(saved)
    h.setOptionValue("output_flag", False)
    return h


class Outcome(Enum):
    PLACED = "placed"
    INFEASIBLE = "infeasible"  # proven: no assignment exists
    TIMEOUT = "timeout"  # nothing found within the bound, not proven impossible
    TOO_LARGE = "too_large"


@dataclass(frozen=True)
class ExactResult:
    outcome: Outcome
    assignment: dict[str, int]
    variables: int


def _shared_nodes(
    relation: dict[str, frozenset[str]], pos: dict[str, int], var_of: dict[tuple[int, int], int], n_nodes: int
) -> Iterator[tuple[int, int]]:
    """For each related pair (once) and each node both may use: their two variables on that node."""
    for iid, others in sorted(relation.items()):
        for other in sorted(others):
            if other <= iid:
                continue
            a, b = pos[iid], pos[other]
            for k in range(n_nodes):
                va, vb = var_of.get((a, k)), var_of.get((b, k))
                if va is not None and vb is not None:
                    yield va, vb


def solve(state: ClusterState, timeout_s: float) -> ExactResult:
    import highspy

    problem = state.problem
    insts = list(problem.instances)
    allowed = [np.flatnonzero(constraints.static_mask(state, inst)) for inst in insts]
    variables = sum(len(a) for a in allowed)
    if any(len(a) == 0 for a in allowed):
        return ExactResult(Outcome.INFEASIBLE, {}, variables)
    if variables > MAX_VARIABLES:
        return ExactResult(Outcome.TOO_LARGE, {}, variables)
    pairs = [(i, int(k)) for i, ks in enumerate(allowed) for k in ks]

    n_nodes = len(state.nodes)
    n_inst = len(insts)
    # Row layout: [instances][slots per node][ram per node][gpu per node][anti-affinity rows...]
    slot_row, ram_row, gpu_row = n_inst, n_inst + n_nodes, n_inst + 2 * n_nodes
    row_lo = [1.0] * n_inst + [0.0] * (3 * n_nodes)
    row_hi = (
        [1.0] * n_inst
        + [float(m) for m in state.max_inst]
        + [float(c) for c in state.ram_cap]
        + [float(c) for c in state.gpu_cap]
    )
    var_of = {pair: v for v, pair in enumerate(pairs)}
    entries: list[tuple[int, int, float]] = []  # (row, col, value)
    costs = np.zeros(len(pairs))
    pos = {inst.id: i for i, inst in enumerate(insts)}
    for v, (i, k) in enumerate(pairs):
        inst, node = insts[i], state.nodes[k]
        entries.append((i, v, 1.0))
        entries.append((slot_row + k, v, 1.0))
        entries.append((ram_row + k, v, float(inst.ram_claim(node))))
        if inst.gpu_claim():
            entries.append((gpu_row + k, v, float(inst.gpu_claim())))
        stay = not problem.rebalance and problem.current.get(inst.id) == node.name
        gpu_fit = 15.0 if (inst.gpu and node.gpu) else 5.0 if not (inst.gpu or node.gpu) else 0.0
        costs[v] = -(100.0 * stay + 10.0 * (inst.prefer == node.name) + gpu_fit + 0.01 * node.priority)
    row = len(row_lo)
    for va, vb in _shared_nodes(state.anti_affinity, pos, var_of, n_nodes):
        entries += [(row, va, 1.0), (row, vb, 1.0)]
        row_lo.append(0.0)
        row_hi.append(1.0)
        row += 1
    # Affinity: y[i,j,n] <= x[i,n] and y[i,j,n] <= x[j,n], worth 10 (the seed's weight per related peer).
    # y is continuous; maximising drives it to min(x[i,n], x[j,n]), i.e. 1 exactly when both share node n.
    together = 0
    for va, vb in _shared_nodes(state.affinity, pos, var_of, n_nodes):
        y = len(pairs) + together
        together += 1
        entries += [(row, y, 1.0), (row, va, -1.0), (row + 1, y, 1.0), (row + 1, vb, -1.0)]
        row_lo += [-np.inf, -np.inf]
        row_hi += [0.0, 0.0]
        row += 2
    n_col = len(pairs) + together
    costs = np.concatenate([costs, np.full(together, -10.0)])

    lp = highspy.HighsLp()
    lp.num_col_ = n_col
    lp.num_row_ = len(row_lo)
    lp.col_cost_ = costs
    lp.col_lower_ = np.zeros(n_col)
    lp.col_upper_ = np.ones(n_col)
    lp.row_lower_ = np.array(row_lo)
    lp.row_upper_ = np.array(row_hi)
    entries.sort(key=lambda e: (e[1], e[0]))
    starts = np.zeros(n_col + 1, dtype=np.int32)
    for _, col, _ in entries:
        starts[col + 1] += 1
    lp.a_matrix_.format_ = highspy.MatrixFormat.kColwise
    lp.a_matrix_.start_ = np.cumsum(starts).astype(np.int32)
    lp.a_matrix_.index_ = np.array([e[0] for e in entries], dtype=np.int32)
    lp.a_matrix_.value_ = np.array([e[2] for e in entries])
    lp.integrality_ = [highspy.HighsVarType.kInteger] * len(pairs) + [
        highspy.HighsVarType.kContinuous
    ] * together

    h = _silent_highs()
    h.setOptionValue("time_limit", float(timeout_s))
    h.setOptionValue("threads", 1)
    h.setOptionValue("random_seed", 0)
    h.passModel(lp)
    h.run()
    status = h.getModelStatus()
    has_solution = h.getInfo().primal_solution_status == 2  # kSolutionStatusFeasible
    if status == highspy.HighsModelStatus.kInfeasible:
        return ExactResult(Outcome.INFEASIBLE, {}, len(pairs))
    if not has_solution:
        return ExactResult(Outcome.TIMEOUT, {}, len(pairs))
    values = h.getSolution().col_value
    assignment = {insts[i].id: k for v, (i, k) in enumerate(pairs) if values[v] > 0.5}
    return ExactResult(Outcome.PLACED, assignment, len(pairs))
