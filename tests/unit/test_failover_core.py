"""Fail over (runner/planning/failover.py and `python -m runner failover`): only the dead node's instances move (plus
what the planner must displace, named as such), an impossible fail over writes nothing and exits 2, unknown
nodes exit 2, and deploy/launch run only on the live nodes. Playbooks are a stand-in here (recorded calls);
the real deploy and launch on the simulated cluster are in tests/integration/test_failover.py."""

from __future__ import annotations

import io
import json
import shutil
from pathlib import Path
from typing import Any

import pytest
import yaml
from ansible.plugins.vars import host_group_vars

from runner import ansible_bridge, inventory
from runner.ansible_bridge import HostProgress, PlaybookResult
from runner.cli import main
from runner.errors import InputError
from runner.planning import failover
from runner.training import plan as training_plan

ROOT = Path(__file__).resolve().parents[2]
NODES = ("jetson", "rpi1", "rpi2", "host")


@pytest.fixture
def project(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A project directory (the seeds' experiment files) with the example inventory; the working directory."""
    shutil.copytree(ROOT / "experiments", tmp_path / "experiments")
    shutil.copy(ROOT / "inventory", tmp_path / "inventory")
    shutil.copytree(ROOT / "group_vars", tmp_path / "group_vars")
    monkeypatch.chdir(tmp_path)
    # ansible-core remembers the real path of the working directory ('.', whose host_vars it reads too)
    # per process; a test that changes directory must not read the previous test's host_vars through it.
    monkeypatch.setattr(host_group_vars, "CANONICAL_PATHS", {})
    return tmp_path


def place(project: Path, *args: str) -> None:
    assert main(["place", "-i", str(project / "inventory"), *args]) == 0


def placement(project: Path) -> dict[str, str]:
    return inventory.load(project / "inventory").current()


def snapshot(project: Path) -> dict[str, bytes]:
    return {str(p): p.read_bytes() for p in sorted(project.glob("host_vars/*/placement.yml"))}


class Playbooks:
    """Stands in for ansible_bridge.run_playbook: records each call, fails the hosts it is told to."""

    def __init__(self, fail: dict[str, dict[str, str]] | None = None) -> None:
        self.calls: list[tuple[str, str | None, dict[str, Any]]] = []
        self.fail = fail or {}

    def __call__(self, name: str, inventory_path: Path, **kw: Any) -> PlaybookResult:
        self.calls.append((name, kw.get("limit"), dict(kw.get("extravars") or {})))
        bad = self.fail.get(name, {})
        hosts = {h: HostProgress(failed=1, reason=r) for h, r in bad.items()}
        return PlaybookResult(name, "failed" if bad else "successful", 2 if bad else 0, hosts)


def test_only_the_dead_nodes_instances_move(project: Path) -> None:
    place(project, "experiments/split_brain.yml", "experiments/panopticon.yml", "--pin", "split_brain_B=rpi2")
    before = placement(project)
    assert before["split_brain_B"] == "rpi2"
    cluster = inventory.load(project / "inventory")
    ports_before = cluster.current_ports()
    plan = failover.plan(cluster, ["rpi2"], project)
    assert plan.affected == ("split_brain_B",)
    assert [(m.instance, m.source) for m in plan.moves] == [("split_brain_B", "rpi2")]
    assert plan.replicas == ()  # no serving replica moved: the front door has nothing to follow
    new = plan.placement.assignment if plan.placement else {}
    assert new["split_brain_B"] not in ("rpi2", "jetson")  # anti-affinity with A keeps it off the Jetson
    assert {i: n for i, n in new.items() if i != "split_brain_B"} == {
        i: n for i, n in before.items() if i != "split_brain_B"
    }
    assert all(plan.ports[i] == ports_before[i] for i in new if i != "split_brain_B")
    assert plan.live == ("jetson", "rpi1", "host")
    assert plan.experiment_files == ("experiments/panopticon.yml", "experiments/split_brain.yml")
    assert snapshot(project) and placement(project) == before  # planning writes nothing
    # The new files: nothing left on rpi2, A's peer entry points at B's new node.
    docs = {p.parent.name: yaml.safe_load(t)["edgejar_instances"] for p, t in plan.files.items()}
    assert docs["rpi2"] == []
    (a,) = [e for e in docs["jetson"] if e["id"] == "split_brain_A"]
    assert a["peers"] == [
        {"id": "split_brain_B", "node": new["split_brain_B"], "address": "192.168.1.10", "port": 9000}
    ]


def test_moved_serving_replicas_are_named_for_the_front_door(project: Path) -> None:
    """A serving replica re-placed by fail over keeps its hard anti-affinity (never beside another replica)
    and is named in the plan, so that the command can say the front door's list must follow."""
    place(project, "experiments/serving.yml", "experiments/split_brain.yml")
    before = placement(project)
    dead = before["chat-1"]
    plan = failover.plan(inventory.load(project / "inventory"), [dead], project)
    moved = {m.instance for m in plan.moves}
    assert "chat-1" in moved and plan.replicas == tuple(sorted(i for i in moved if i.startswith("chat-")))
    new = plan.placement.assignment if plan.placement else {}
    replicas = [new[f"chat-{k}"] for k in range(3)]
    assert dead not in replicas and len(set(replicas)) == 3, new
    assert plan.to_json()["serving_replicas_moved"] == list(plan.replicas)


def test_a_min_max_replica_with_no_room_left_is_removed_not_a_failed_failover(project: Path) -> None:
    """`replicas: 2:4` on four nodes: when one dies, its replica fits nowhere (one per node), so it is the one
    removed (the others stay where they are); a fixed count cannot fail over there at all."""
    doc = {"name": "chat", "kind": "serving", "model": "tiny", "replicas": "2:4", "memory_gb": 0.5}
    (project / "experiments" / "chat.yml").write_text(yaml.safe_dump(doc))
    place(project, "experiments/chat.yml")
    before = placement(project)
    assert sorted(before.values()) == sorted(NODES)
    dead = before["chat-1"]
    plan = failover.plan(inventory.load(project / "inventory"), [dead], project)
    assert plan.left_out == ("chat-1",) and plan.moves == () and plan.replicas == ()
    assert "remove chat-1: no room elsewhere" in "\n".join(plan.describe())
    docs = {p.parent.name: yaml.safe_load(t)["edgejar_instances"] for p, t in plan.files.items()}
    assert docs[dead] == []
    assert {e["id"] for items in docs.values() for e in items} == {"chat-0", "chat-2", "chat-3"}
    runner = Playbooks()
    failover.apply(plan, project / "inventory", run_playbook=runner)
    # the front door follows: frontdoor.yml in state replicas after deploy and launch, the dead node left out
    assert [(n, limit, x.get("edgejar_frontdoor_state")) for n, limit, x in runner.calls] == [
        ("deploy.yml", f"all:!{dead}", None), ("launch.yml", f"all:!{dead}", None),
        ("frontdoor.yml", f"all:!{dead}", "replicas"),
    ]  # fmt: skip
    # after it, with a second node dead too: MIN (2) stay; with a third, there is no room for MIN
    two = [dead, before["chat-2"]]
    assert failover.plan(inventory.load(project / "inventory"), two, project).left_out == ("chat-2",)
    with pytest.raises(failover.FailoverInfeasible):
        failover.plan(inventory.load(project / "inventory"), [*two, before["chat-3"]], project)
    doc["replicas"] = 4
    (project / "experiments" / "chat.yml").write_text(yaml.safe_dump(doc))
    place(project, "experiments/chat.yml")
    with pytest.raises(failover.FailoverInfeasible):
        failover.plan(inventory.load(project / "inventory"), [dead], project)


def test_what_the_planner_displaces_is_reported_as_such(project: Path) -> None:
    """rpi1 dies: the panopticon subject needs an rpi5, and rpi2's one slot is B's; stable mode moves B to
    make room (the minimum), and the plan says so."""
    place(project, "experiments/split_brain.yml", "experiments/panopticon.yml", "--pin", "split_brain_B=rpi2")
    plan = failover.plan(inventory.load(project / "inventory"), ["rpi1"], project)
    moves = {m.instance: (m.source, m.target) for m in plan.moves}
    assert moves == {"panopticon_subject": ("rpi1", "rpi2"), "split_brain_B": ("rpi2", "host")}
    lines = plan.describe()
    assert any(line.startswith("move split_brain_B: rpi2 -> host") and "displaced" in line for line in lines)
    assert any(line.startswith("move panopticon_subject: rpi1 -> rpi2") for line in lines)


def test_an_impossible_failover_says_why_and_writes_nothing(project: Path) -> None:
    place(project, "experiments/prisoners_dilemma.yml")  # both players need an rpi5, never the same one
    before = snapshot(project)
    with pytest.raises(failover.FailoverInfeasible) as err:
        failover.plan(inventory.load(project / "inventory"), ["rpi2"], project)
    on_rpi2 = [i for i, n in placement(project).items() if n == "rpi2"]
    assert err.value.unplaced == tuple(on_rpi2) and err.value.exit_status == 2
    message = str(err.value)
    assert "rpi2" in message and on_rpi2[0] in message and "nothing written" in message
    assert "no feasible placement" in message  # the planner's own verdict follows
    assert snapshot(project) == before


def test_the_cli_exits_2_for_an_impossible_failover(
    project: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    place(project, "experiments/prisoners_dilemma.yml")
    before = snapshot(project)
    assert main(["failover", "-i", str(project / "inventory"), "rpi2", "--force", "--yes"]) == 2
    assert "cannot be placed on the remaining nodes" in capsys.readouterr().err
    assert snapshot(project) == before


@pytest.mark.parametrize("args", [["nope", "--force"], ["rpi2", "nope", "--force"], ["--force"]])
def test_unknown_or_missing_nodes_exit_2(
    project: Path, args: list[str], capsys: pytest.CaptureFixture[str]
) -> None:
    place(project, "experiments/split_brain.yml")
    before = snapshot(project)
    assert main(["failover", "-i", str(project / "inventory"), *args]) == 2
    err = capsys.readouterr().err
    assert ("nope" in err and "not a node" in err) or "--force needs" in err
    assert snapshot(project) == before


def test_a_node_that_answers_is_refused_without_force(
    project: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """`host` has ansible_connection: local in the example inventory: the probe runs here and answers."""
    place(project, "experiments/split_brain.yml", "--pin", "split_brain_B=host")
    before = snapshot(project)
    assert main(["failover", "-i", str(project / "inventory"), "host", "--grace", "0"]) == 2
    err = capsys.readouterr().err
    assert "host is" in err and "refusing" in err and "--force" in err
    assert snapshot(project) == before


def test_experiment_files_that_no_longer_match_the_placement_are_refused(project: Path) -> None:
    place(project, "experiments/split_brain.yml", "--pin", "split_brain_B=rpi2")
    path = project / "experiments" / "split_brain.yml"
    data = yaml.safe_load(path.read_text())
    data["instances"] = [i for i in data["instances"] if i["id"] != "split_brain_B"]
    path.write_text(yaml.safe_dump(data))
    with pytest.raises(InputError, match="placed but no longer defined: split_brain_B"):
        failover.plan(inventory.load(project / "inventory"), ["rpi2"], project)


def test_a_dead_node_without_instances_needs_nothing(project: Path) -> None:
    place(project, "experiments/split_brain.yml")
    plan = failover.plan(inventory.load(project / "inventory"), ["rpi2"], project)
    assert not plan.needed and not plan.moves and not plan.files
    runner = Playbooks()
    assert failover.apply(plan, project / "inventory", run_playbook=runner).ok
    assert runner.calls == []


def test_apply_writes_then_deploys_and_launches_on_the_live_nodes_only(project: Path) -> None:
    place(project, "experiments/split_brain.yml", "--pin", "split_brain_B=rpi2")
    plan = failover.plan(inventory.load(project / "inventory"), ["rpi2"], project)
    runner = Playbooks()
    outcome = failover.apply(plan, project / "inventory", extravars={"x": 1}, run_playbook=runner)
    assert outcome.ok and len(outcome.written) >= 2
    assert runner.calls == [("deploy.yml", "all:!rpi2", {"x": 1}), ("launch.yml", "all:!rpi2", {"x": 1})]
    after = placement(project)
    assert after["split_brain_B"] != "rpi2" and "rpi2" not in after.values()


def test_a_host_that_fails_deploy_is_left_out_of_launch_and_named(project: Path) -> None:
    place(project, "experiments/split_brain.yml", "--pin", "split_brain_B=rpi2")
    plan = failover.plan(inventory.load(project / "inventory"), ["rpi2"], project)
    runner = Playbooks({"deploy.yml": {"rpi1": "unreachable at task 'x': timed out"}})
    outcome = failover.apply(plan, project / "inventory", run_playbook=runner)
    assert runner.calls[1][:2] == ("launch.yml", "all:!rpi2:!rpi1")
    assert outcome.failed_hosts == {"rpi1": "deploy.yml: unreachable at task 'x': timed out"}
    assert "rpi1" in failover.failure_message(outcome)


def test_the_cli_fails_over_and_exits_1_naming_a_failed_host(
    project: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    place(project, "experiments/split_brain.yml", "--pin", "split_brain_B=rpi2")
    runner = Playbooks({"launch.yml": {"jetson": "failed at task 'Wait': port 9000 does not answer"}})
    monkeypatch.setattr(ansible_bridge, "run_playbook", runner)
    inv = str(project / "inventory")
    capsys.readouterr()
    assert main(["failover", "-i", inv, "rpi2", "--force", "--yes", "--json", "-e", "k=v"]) == 1
    out, err = capsys.readouterr()
    doc = json.loads(out)
    assert doc["dead"] == ["rpi2"] and [m["instance"] for m in doc["moves"]] == ["split_brain_B"]
    assert doc["failed_hosts"] == {"jetson": "launch.yml: failed at task 'Wait': port 9000 does not answer"}
    assert "deploy/launch failed on jetson" in err
    assert [c[0] for c in runner.calls] == ["deploy.yml", "launch.yml"] and runner.calls[0][2] == {"k": "v"}
    assert placement(project)["split_brain_B"] != "rpi2"


def test_dry_run_and_declining_write_nothing(
    project: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    place(project, "experiments/split_brain.yml", "--pin", "split_brain_B=rpi2")
    before = snapshot(project)
    runner = Playbooks()
    monkeypatch.setattr(ansible_bridge, "run_playbook", runner)
    inv = str(project / "inventory")
    assert main(["failover", "-i", inv, "rpi2", "--force", "--dry-run"]) == 0
    assert "move split_brain_B: rpi2 ->" in capsys.readouterr().out
    monkeypatch.setattr("sys.stdin", io.StringIO("n\n"))
    assert main(["failover", "-i", inv, "rpi2", "--force"]) == 1
    assert "not confirmed" in capsys.readouterr().err
    assert snapshot(project) == before and runner.calls == []


def test_training_units_stay_as_placed_through_a_failover(project: Path) -> None:
    (project / "experiments/train.py").write_text("print('entry')\n")
    (project / "experiments/train.yml").write_text(
        "name: job\nkind: torch_distributed\nentry: train.py\nranks: 2\nmemory_gb: 0.25\nnodes: [jetson, host]\n"
    )
    place(project, "experiments/split_brain.yml", "experiments/train.yml", "--pin", "split_brain_B=rpi2")
    before = {
        p.parent.name: yaml.safe_load(p.read_text()).get("edgejar_training")
        for p in project.glob("host_vars/*/placement.yml")
    }
    assert before["jetson"] and before["host"] and not before["rpi2"]
    plan = failover.plan(inventory.load(project / "inventory"), ["rpi2"], project)
    assert plan.affected == ("split_brain_B",)
    after = {p.parent.name: yaml.safe_load(t).get("edgejar_training") for p, t in plan.files.items()}
    assert after == before
    assert plan.placement is not None and set(plan.placement.assignment) == {"split_brain_A", "split_brain_B"}


def test_failover_counts_the_memory_of_training_units(project: Path) -> None:
    """The host's training unit takes all its memory: split_brain_B cannot move there."""
    (project / "experiments/train.py").write_text("print('entry')\n")
    host_ram = (
        inventory.load(project / "inventory").by_name()["host"].node.ram_capacity - training_plan.AGENT_MIB
    )
    (project / "experiments/train.yml").write_text(
        f"name: job\nkind: torch_distributed\nentry: train.py\nranks: 1\nmemory_gb: {host_ram / 1024}\n"
        "nodes: [host]\n"
    )
    place(project, "experiments/split_brain.yml", "experiments/train.yml", "--pin", "split_brain_B=rpi2")
    # Both Pis down: B may go neither to the Jetson (anti-affinity with A) nor to the host (the unit).
    with pytest.raises(failover.FailoverInfeasible, match=r"host has 0 GB memory left after job-0"):
        failover.plan(inventory.load(project / "inventory"), ["rpi1", "rpi2"], project)
