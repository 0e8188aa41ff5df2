"""Fail over: move the instances of nodes that are gone onto the remaining nodes.

`plan()` re-places the current placement (every experiment file the host_vars placement entries name) with
the dead nodes excluded, through the planner's stable mode: only the dead nodes' instances move, plus what
the planner must displace to fit them (it reports every move). It reads the experiment files and writes
nothing. `apply()` writes the new placement files (all or none) and runs deploy.yml and launch.yml on the
live nodes only (the dead ones cannot be reached); their stale units are removed by launch.yml the next
time they are reachable (launch prunes instances a node's placement no longer lists).
"""

from __future__ import annotations

import dataclasses
import sys
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TextIO

from runner import ansible_bridge, inventory
from runner.errors import EdgejarError, InputError, NoPlacementError
from runner.experiment import load_files
from runner.files import atomic
from runner.placement import Placement, Problem, place
from runner.placement.model import Move
from runner.planning import elastic, hostvars, requirements
from runner.serving.spec import MODE as SERVE_MODE
from runner.training import plan as training_plan

PLAYBOOKS = ("deploy.yml", "launch.yml")
FRONTDOOR_PLAYBOOK = "frontdoor.yml"  # state replicas, when serving replicas moved

RunPlaybook = Callable[..., ansible_bridge.PlaybookResult]


class FailoverInfeasible(NoPlacementError):
    """The dead nodes' instances fit nowhere else (exit 2, nothing written). `unplaced` counts them."""

    def __init__(self, message: str, unplaced: Sequence[str]) -> None:
        super().__init__(message)
        self.unplaced = tuple(unplaced)


@dataclass(frozen=True)
class Plan:
    dead: tuple[str, ...]
    live: tuple[str, ...]  # the nodes deploy and launch run on
    affected: tuple[str, ...]  # instances that were on the dead nodes
    experiment_files: tuple[str, ...]  # as the placement entries name them (relative to the project root)
    placement: Placement | None  # None when nothing was on the dead nodes
    ports: Mapping[str, int] = field(default_factory=dict)
    files: Mapping[Path, str] = field(default_factory=dict)  # the placement files to write
    replicas: tuple[str, ...] = ()  # serving replicas among the moved: the front door's list must follow
    left_out: tuple[str, ...] = ()  # serving replicas beyond their MIN that fit nowhere else: removed

    @property
    def moves(self) -> tuple[Move, ...]:
        return self.placement.moves if self.placement else ()

    @property
    def needed(self) -> bool:
        """Whether anything has to move (a dead node without instances needs nothing)."""
        return bool(self.affected)

    def describe(self) -> list[str]:
        """One line per move, plus the moves the planner had to make on live nodes, named as such."""
        if not self.needed:
            return [f"no instances on {', '.join(self.dead)}: nothing to move"]
        out = []
        for m in self.moves:
            why = "" if m.source in self.dead else " (displaced to make room)"
            out.append(f"move {m.instance}: {m.source} -> {m.target} port {self.ports[m.instance]}{why}")
        for iid in self.left_out:
            out.append(f"remove {iid}: no room elsewhere (a serving replica beyond its experiment's MIN)")
        return out

    def to_json(self) -> dict[str, Any]:
        return {
            "dead": list(self.dead),
            "live": list(self.live),
            "affected": list(self.affected),
            "experiment_files": list(self.experiment_files),
            "moves": [dataclasses.asdict(m) for m in self.moves],
            "serving_replicas_moved": list(self.replicas),
            "serving_replicas_removed": list(self.left_out),
            "placements": dict(self.placement.assignment) if self.placement else {},
            "ports": dict(self.ports),
            "method": self.placement.method if self.placement else None,
        }


def limit_excluding(nodes: Sequence[str]) -> str:
    """An Ansible --limit that leaves these hosts out."""
    return ":".join(["all", *(f"!{n}" for n in nodes)])


def experiment_files(cluster: inventory.Cluster) -> list[str]:
    """The experiment files the current placement came from (each entry's experiment_file)."""
    out: set[str] = set()
    for cn in cluster.nodes:
        for entry in cn.placed:
            name = entry.get("experiment_file")
            if not isinstance(name, str) or not name:
                where = cluster.host_vars_dir / cn.node.name / "placement.yml"
                raise InputError(
                    f"{where}: instance {entry.get('id', '?')}: experiment_file: missing; "
                    "re-run `python -m runner place` to rewrite the placement"
                )
            out.add(name)
    return sorted(out)


def check_nodes(cluster: inventory.Cluster, nodes: Sequence[str]) -> None:
    known = [cn.node.name for cn in cluster.nodes]
    unknown = [n for n in nodes if n not in known]
    if unknown:
        raise InputError(
            f"failover: {', '.join(unknown)}: not a node of {cluster.inventory} (nodes: {', '.join(known)})"
        )
    if not nodes:
        raise InputError("failover: no node to fail over")


def plan(
    cluster: inventory.Cluster,
    dead: Sequence[str],
    root: Path,
    *,
    policy: str = "score",
    timeout_s: float = 10.0,
) -> Plan:
    """Re-place the current placement without the dead nodes. Writes nothing.

    Raises InputError (unknown node, experiment files that no longer match the placement) and
    FailoverInfeasible (the planner's verdict, when the instances fit nowhere else)."""
    check_nodes(cluster, dead)
    dead = tuple(sorted(set(dead)))
    names = [cn.node.name for cn in cluster.nodes]
    live = tuple(n for n in names if n not in dead)
    current = cluster.current()
    affected = tuple(sorted(i for i, n in current.items() if n in dead))
    files = experiment_files(cluster)
    if not affected:
        return Plan(dead, live, (), tuple(files), None)
    experiments = load_files([root / f for f in files])
    specs = [s for e in experiments for s in e.instances]
    defined = {s.id for s in specs}
    gone = sorted(set(current) - defined)
    spare = elastic.unplaced_allowed(experiments, current)
    added = sorted(defined - set(current) - spare)  # MIN:MAX replicas that had no room stay out
    experiments = [
        dataclasses.replace(e, instances=tuple(s for s in e.instances if s.id in current))
        for e in experiments
    ]
    specs = [s for e in experiments for s in e.instances]
    if gone or added:
        what = []
        if gone:
            what.append(f"placed but no longer defined: {', '.join(gone)}")
        if added:
            what.append(f"defined but not placed: {', '.join(added)}")
        raise InputError(
            f"failover: the experiment files ({', '.join(files)}, under {root}) no longer match the current "
            f"placement ({'; '.join(what)}); fail over re-places what is placed: run "
            "`python -m runner place` with the files you want instead"
        )
    instances = {s.id: requirements.instance(s, cluster.models, root) for s in specs}
    nodes = tuple(
        dataclasses.replace(cn.node, max_instances=min(cn.node.max_instances, len(cluster.peer_ports)))
        for cn in cluster.nodes
    )
    problem = Problem(
        nodes=nodes,
        # the training units stay where they are, and their memory counts
        instances=(*(instances[s.id] for s in specs), *training_plan.placed_claims(cluster, dead)),
        current=current,
        policy=policy,
        excluded=frozenset(dead),
        exact_timeout_s=timeout_s,
    )
    try:  # serving replicas beyond their MIN that no longer fit are left out (the others move)
        result, left_out = elastic.place_replicas(
            experiments,
            problem.instances,
            len(live),
            lambda chosen: place(dataclasses.replace(problem, instances=tuple(chosen))),
            first=affected,  # leave out the dead nodes' replicas rather than move them and drop others
        )
    except NoPlacementError as exc:
        raise FailoverInfeasible(
            f"failover of {', '.join(dead)}: {', '.join(affected)} cannot be placed on the remaining nodes "
            f"({', '.join(live) or 'none'}); nothing written. The planner's verdict: {exc}",
            affected,
        ) from None
    if left_out:
        experiments = [
            dataclasses.replace(e, instances=tuple(s for s in e.instances if s.id not in left_out))
            for e in experiments
        ]
        specs = [s for s in specs if s.id not in left_out]
    assignment = {s.id: result.assignment[s.id] for s in specs}
    modes = {s.id: s.mode for s in specs}
    result = dataclasses.replace(result, assignment=assignment)  # the instances; the units stayed put
    ports = hostvars.assign_ports(assignment, cluster.peer_ports, cluster.current_ports(), current)
    per_node = hostvars.entries(cluster, experiments, instances, assignment, ports, root)
    return Plan(
        dead,
        live,
        affected,
        tuple(files),
        result,
        ports,
        # Training units stay as placed (moving them is a training job's own restart, not an instance move).
        hostvars.files(cluster, per_node, {cn.node.name: list(cn.training) for cn in cluster.nodes}),
        tuple(sorted(m.instance for m in result.moves if modes[m.instance] == SERVE_MODE)),
        tuple(left_out),
    )


@dataclass(frozen=True)
class Outcome:
    written: tuple[Path, ...]
    results: tuple[ansible_bridge.PlaybookResult, ...]
    failed_hosts: Mapping[str, str]  # host -> "playbook: reason"

    @property
    def ok(self) -> bool:
        return not self.failed_hosts

    def to_json(self) -> dict[str, Any]:
        return {
            "written": [str(p) for p in self.written],
            "playbooks": {
                r.playbook: {"status": r.status, "failed_hosts": r.failed_hosts} for r in self.results
            },
            "failed_hosts": dict(self.failed_hosts),
        }


def apply(
    the_plan: Plan,
    inventory_path: Path,
    *,
    extravars: Mapping[str, Any] | None = None,
    run_playbook: RunPlaybook | None = None,
    out: TextIO | None = None,
) -> Outcome:
    """Write the placement files, then deploy.yml and launch.yml on the live nodes, with per-host progress
    on `out`. A host that fails deploy is left out of launch; every failed host is in the outcome.
    When serving replicas moved or were removed, frontdoor.yml then rewrites the front door's replicas'
    file (state replicas: where a front door is in place; it re-reads the file, no restart).
    Raises EdgejarError when a playbook could not run at all."""
    if not the_plan.needed:
        return Outcome((), (), {})
    for name in (*PLAYBOOKS, FRONTDOOR_PLAYBOOK):
        ansible_bridge.playbook_path(name)  # before anything is written
    run_playbook = run_playbook or ansible_bridge.run_playbook
    written = tuple(atomic.write_all(the_plan.files))
    failed: dict[str, str] = {}
    results = []
    for name in PLAYBOOKS:
        skip = [*the_plan.dead, *sorted(failed)]
        if all(n in skip for n in the_plan.live):
            break
        progress = ansible_bridge.Progress(out=out or sys.stderr, tty=False if out is not None else None)
        result = run_playbook(
            name,
            inventory_path,
            extravars=dict(extravars or {}),
            limit=limit_excluding(skip),
            progress=progress,
        )
        results.append(result)
        if not result.ok and not result.failed_hosts:
            result.raise_for_failures()  # the playbook did not run (syntax, inventory): no host to name
        for host, reason in result.failed_hosts.items():
            failed.setdefault(host, f"{name}: {reason}")
    if the_plan.replicas or the_plan.left_out:  # the front door (where there is one) follows the replicas
        result = run_playbook(
            FRONTDOOR_PLAYBOOK,
            inventory_path,
            extravars={**(extravars or {}), "edgejar_frontdoor_state": "replicas"},
            limit=limit_excluding(list(the_plan.dead)),
            progress=ansible_bridge.Progress(out=out or sys.stderr, tty=False if out is not None else None),
        )
        results.append(result)
        for host, reason in result.failed_hosts.items():
            failed.setdefault(host, f"{FRONTDOOR_PLAYBOOK}: {reason}")
    return Outcome(written, tuple(results), failed)


def failure_message(outcome: Outcome) -> str:
    lines = "\n".join(f"  {h}: {r}" for h, r in sorted(outcome.failed_hosts.items()))
    return f"failover: deploy/launch failed on {', '.join(sorted(outcome.failed_hosts))}\n{lines}"


@dataclass
class Failover:
    """What the monitor calls: plan from a fresh read of the inventory, then apply. `run_playbook` is
    ansible-runner's by default (tests pass a stand-in)."""

    inventory_path: Path
    root: Path = field(default_factory=requirements.project_root)
    extravars: Mapping[str, Any] = field(default_factory=dict)
    policy: str = "score"
    run_playbook: RunPlaybook | None = None  # None: ansible_bridge.run_playbook

    def plan(self, dead: Sequence[str]) -> Plan:
        return plan(inventory.load(self.inventory_path), dead, self.root, policy=self.policy)

    def apply(self, the_plan: Plan, out: TextIO | None = None) -> Outcome:
        return apply(
            the_plan, self.inventory_path, extravars=self.extravars, run_playbook=self.run_playbook, out=out
        )


def raise_for(outcome: Outcome) -> None:
    if not outcome.ok:
        raise EdgejarError(failure_message(outcome))
