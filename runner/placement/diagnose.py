"""Why nothing fits: the message a user gets instead of "pending"."""

from __future__ import annotations

import numpy as np

from runner.placement import constraints
from runner.placement.exact import ExactResult, Outcome
from runner.placement.greedy import Stuck
from runner.placement.model import Instance, fmt_gb
from runner.placement.state import ClusterState


def describe(inst: Instance) -> str:
    needs = [f"{fmt_gb(inst.ram_mib)} memory"]
    if inst.gpu:
        needs.append(f"a GPU with {fmt_gb(inst.gpu_claim())}")
    if inst.tags:
        needs.append("tags " + ", ".join(sorted(inst.tags)))
    if inst.pin:
        needs.append(f"pinned to {inst.pin}")
    return ", ".join(needs)


def _node_lines(state: ClusterState, inst: Instance, reasons: list[tuple[str, str | None]]) -> list[str]:
    return [f"  - {node}: {reason or 'fits'}" for node, reason in reasons]


def _static_failures(state: ClusterState) -> list[str]:
    lines: list[str] = []
    empty = ClusterState(state.problem)
    for inst in state.problem.instances:
        if not constraints.static_mask(empty, inst).any():
            lines.append(f"instance {inst.id} ({describe(inst)}) fits no node even on an empty cluster:")
            lines += _node_lines(
                empty,
                inst,
                [(n.name, constraints.rejection(empty, inst, k)) for k, n in enumerate(empty.nodes)],
            )
    return lines


def _totals(state: ClusterState) -> list[str]:
    insts = state.problem.instances
    usable = state.usable
    slots = int(np.minimum(state.max_inst, 1 << 30)[usable].sum())
    out = []
    if len(insts) > slots:
        out.append(
            f"{len(insts)} instances but only {slots} instance slots on usable nodes (node_max_instances)"
        )
    need_gpu = sum(i.gpu_claim() for i in insts)
    have_gpu = int(state.gpu_cap[usable].sum())
    if need_gpu > have_gpu:
        out.append(f"the instances need {fmt_gb(need_gpu)} GPU memory; usable nodes have {fmt_gb(have_gpu)}")
    need_ram = sum(i.ram_mib for i in insts)
    have_ram = int(state.ram_cap[usable].sum())
    if need_ram > have_ram:
        out.append(f"the instances need {fmt_gb(need_ram)} memory; usable nodes have {fmt_gb(have_ram)}")
    return out


def message(state: ClusterState, stuck: Stuck, exact: ExactResult, timeout_s: float) -> str:
    n = len(state.problem.instances)
    static = _static_failures(state)
    if static:
        return "no feasible placement: " + "\n".join(static)
    if exact.outcome is Outcome.INFEASIBLE:
        head = f"no feasible placement exists for these {n} instances (proven by exact search)"
    elif exact.outcome is Outcome.TIMEOUT:
        head = (
            f"no placement found: the greedy pass failed and the exact search found none within "
            f"{timeout_s:g} s (not proven impossible; raise --timeout to search longer)"
        )
    else:
        head = (
            f"no placement found: the greedy pass failed and the problem is too large for the exact "
            f"search ({exact.variables} variables)"
        )
    lines = [head]
    lines += [f"  {t}" for t in _totals(state)]
    inst = stuck.instance
    lines.append(f"the greedy pass got stuck at instance {inst.id} ({describe(inst)}):")
    lines += _node_lines(state, inst, [(v.node, v.rejected) for v in stuck.verdicts])
    return "\n".join(lines)
