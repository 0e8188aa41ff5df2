"""A training job (kind torch_distributed) on the simulated cluster, end to end from `python -m runner up`:
ranks placed on the hosts that have PyTorch (the test cluster gives it to jetson, rpi1 and host; rpi2 has
none), one gloo backend, torchrun units under systemd, the loss falling, one unit killed mid-run and the
job resuming from its checkpoint, then collect and `runner results`.

The job is experiments/training/mlp.py (real torch, installed on the nodes by provision.yml from the
controller's wheelhouse), with a short pause per step so that the kill lands mid-run.
"""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml

from tests.integration import runs
from tests.integration.conftest import ROOT, Sim, assert_provisioned
from tests.integration.conftest import runner_cli as cli
from tests.integration.runs import query

pytestmark = pytest.mark.integration

JOB = "train_it"
TORCH_HOSTS = {"jetson", "rpi1", "host"}
STEPS = 120
UNIT = "edgejar-train@{}.service"


def job_file(tmp: Path) -> Path:
    doc = {
        "name": JOB,
        "kind": "torch_distributed",
        "description": "The example MLP over every host with PyTorch, slowed down so that a kill lands mid-run.",
        "entry": str(ROOT / "experiments" / "training" / "mlp.py"),
        "args": ["--steps", STEPS, "--batch", 96, "--checkpoint-every", 10, "--step-sleep", 0.15],
        "ranks": "2:4",
        "memory_gb": 0.5,
        "weighting": "speed",
        "max_restarts": 2,
    }
    path = tmp / f"{JOB}.yml"
    path.write_text(yaml.safe_dump(doc, sort_keys=False))
    return path


def wait_for(what: str, check: Any, timeout: float) -> Any:
    deadline = time.monotonic() + timeout
    last = None
    while time.monotonic() < deadline:
        last = check()
        if last:
            return last
        time.sleep(3)
    raise AssertionError(f"timed out after {timeout} s waiting for {what}")


def units(sim: Sim) -> dict[str, dict[str, Any]]:
    """node -> its training unit entry (host_vars written by place)."""
    return {node: e for node, entries in runs.placement(sim, "edgejar_training").items() for e in entries}


@pytest.fixture(scope="module")
def started(
    sim: Sim, runner_dir: Path, provisioned_runs: dict[str, Any], tmp_path_factory: pytest.TempPathFactory
) -> Iterator[tuple[Any, dict[str, dict[str, Any]]]]:
    assert_provisioned(provisioned_runs)
    up = cli(sim, "up", "-i", str(sim.inventory), str(job_file(tmp_path_factory.mktemp("training"))))
    try:
        yield up, units(sim)
    finally:
        down = cli(sim, "down", "-i", str(sim.inventory))
        assert down.returncode == 0, down.stderr[-3000:]


@pytest.fixture(scope="module")
def finished(sim: Sim, runner_dir: Path, started: tuple[Any, dict[str, dict[str, Any]]]) -> dict[str, Any]:
    """Wait until every rank is past step 30, kill one unit that does not host the rendezvous, wait until
    the job ends. Returns what was killed and the node records."""
    up, placed = started
    assert up.returncode == 0, up.stderr[-4000:]
    progress = "SELECT COALESCE(MAX(step), -1) FROM train_steps"

    def past(step: int) -> bool:
        rows = query(sim, runner_dir, "train-progress", progress)
        return all(rows[h][0][0] >= step for h in placed)

    wait_for("every rank past step 30", lambda: past(30), 240)
    victim = next(n for n, e in placed.items() if e["unit_index"] == 1)
    runs.shell(
        sim, runner_dir, "train-kill", f"systemctl kill -s KILL {UNIT.format(placed[victim]['id'])}", victim
    )
    # Each node reports its own unit (the one whose config it has): finished units may be unloaded, and
    # systemctl shows any unknown unit as inactive/success.
    ids = " ".join(e["id"] for e in placed.values())
    states = (
        f"for id in {ids}; do test -e /etc/edgejar/instances/$id.json && "
        f"systemctl show -p ActiveState,Result --value edgejar-train@$id.service; done; true"
    )

    def ended() -> bool:
        out = runs.shell(sim, runner_dir, "train-state", states)
        return all(sorted(out[h].split()) == ["inactive", "success"] for h in placed)  # systemd's order

    wait_for("every unit completed", ended, 420)
    events = query(
        sim,
        runner_dir,
        "train-events",
        "SELECT launch, restart, local_rank, event, step, detail FROM train_events",
    )
    steps = query(sim, runner_dir, "train-steps", "SELECT step, loss FROM train_steps ORDER BY at")
    return {"victim": victim, "events": events, "steps": steps}


def test_ranks_go_to_the_hosts_with_pytorch_with_one_backend(
    started: tuple[Any, dict[str, dict[str, Any]]],
) -> None:
    up, placed = started
    assert up.returncode == 0, up.stderr[-4000:]
    assert set(placed) == TORCH_HOSTS  # rpi2 has no PyTorch: most nodes that can take a unit
    assert {e["backend"] for e in placed.values()} == {"gloo"}
    assert {e["rdzv_endpoint"] for e in placed.values()} == {
        placed[next(n for n, e in placed.items() if e["unit_index"] == 0)]["address"] + ":29500"
    }
    for e in placed.values():
        assert f"started: {e['id']} on " in up.stderr, up.stderr[-3000:]


def test_units_are_hardened_and_limited(
    sim: Sim, runner_dir: Path, started: tuple[Any, dict[str, dict[str, Any]]]
) -> None:
    _, placed = started
    props = "User,MemoryMax,NoNewPrivileges,ProtectSystem,RestrictAddressFamilies"
    for node, e in placed.items():
        out = runs.shell(
            sim, runner_dir, f"train-props-{node}", f"systemctl show -p {props} {UNIT.format(e['id'])}", node
        )[node]
        shown = dict(line.split("=", 1) for line in out.splitlines())
        assert shown["User"] == "edgejar-run" and shown["NoNewPrivileges"] == "yes"
        assert shown["ProtectSystem"] == "strict" and int(shown["MemoryMax"]) == e["memory_mib"] * 1024 * 1024


def test_the_loss_falls_and_every_rank_ends(
    finished: dict[str, Any], started: tuple[Any, dict[str, dict[str, Any]]]
) -> None:
    _, placed = started
    for node in placed:
        losses = [loss for step, loss in finished["steps"][node]]
        assert losses[-1] < losses[0] / 2, (node, losses[0], losses[-1])
        ends = [r for r in finished["events"][node] if r[3] == "end"]
        assert ends and all(r[4] == STEPS for r in ends), finished["events"][node]
        backends = {
            json.loads(r[5])["backend"] for r in finished["events"][node] if r[3] in ("start", "resume")
        }
        assert backends == {"gloo"}


def test_a_killed_unit_is_restarted_and_the_job_resumes_from_its_checkpoint(finished: dict[str, Any]) -> None:
    victim = finished["victim"]
    launches = {r[0] for r in finished["events"][victim] if r[3] == "launch"}
    assert launches >= {1, 2}, finished["events"][victim]  # systemd started it again
    resumed = [r for node in finished["events"] for r in finished["events"][node] if r[3] == "resume"]
    assert resumed and all(r[4] >= 30 for r in resumed), resumed  # from a checkpoint, not from step 0


def test_collect_and_results_print_the_run(sim: Sim, finished: dict[str, Any], tmp_path: Path) -> None:
    results = tmp_path / "results"
    got = cli(sim, "collect", "-i", str(sim.inventory), "--results", str(results))
    assert got.returncode == 0, got.stderr[-3000:]
    shown = cli(sim, "results", "--results", str(results), "--json", JOB)
    assert shown.returncode == 0, shown.stderr[-3000:]
    (exp,) = json.loads(shown.stdout)["experiments"]
    o = exp["outcome"]
    assert exp["mode"] == "torch_distributed" and o["ended"] and o["backends"] == ["gloo"]
    assert o["final_loss"] < o["first_loss"] / 2 and o["last_step"] == STEPS - 1
    assert {r["node"] for r in o["ranks"]} == TORCH_HOSTS and o["unit_restarts"] >= 1
    assert (results / JOB / "logs" / f"{JOB}-0.log").is_file()


def test_the_firewall_guards_the_rendezvous_port_on_unit_0s_node(
    sim: Sim, runner_dir: Path, started: tuple[Any, dict[str, dict[str, Any]]], finished: dict[str, Any]
) -> None:
    """playbooks/firewall.yml with the job placed: the rendezvous (c10d store) port is in the guarded set
    of the node that hosts it and of no other (test_launch.py shows that a guarded port refuses hosts
    outside the cluster); state=absent takes the table away again."""
    _, placed = started
    store = next(n for n, e in placed.items() if e["unit_index"] == 0)
    try:
        run, _ = runs.playbook(sim, runner_dir, "train-fw", "firewall.yml")
        assert run.status == "successful", (run.stats, run.errors())
        sets = runs.shell(sim, runner_dir, "train-fw-set", "nft -j list set inet edgejar peer_ports")
        for node in placed:
            (elements,) = [x["set"].get("elem", []) for x in json.loads(sets[node])["nftables"] if "set" in x]
            assert (29500 in elements) is (node == store), (node, elements)
    finally:
        gone, _ = runs.playbook(
            sim, runner_dir, "train-fw-absent", "firewall.yml", {"edgejar_firewall_state": "absent"}
        )
    assert gone.status == "successful", (gone.stats, gone.errors())


GONE_JOB = "train_gone"
GONE = "rpi1"
JOIN_TIMEOUT_S = 20


def test_a_node_unreachable_at_the_start_is_named_and_the_others_give_up(
    sim: Sim, runner_dir: Path, finished: dict[str, Any], tmp_path: Path
) -> None:
    """rpi1's sshd stopped and its sessions ended, then `runner up` of a job over the three PyTorch hosts:
    up exits 1 naming rpi1; the units it did start wait `join_timeout_s` at the rendezvous for the missing
    node (or c10d's read timeout when rpi1 hosts the store, or are told the rendezvous a peer gave up on
    is closed), record `gave_up` with the reason and end failed
    with status 3, which systemd does not restart (at most one restart before: see below): the job is
    reported, not waited on without end."""
    down = cli(sim, "down", "-i", str(sim.inventory))
    assert down.returncode == 0, down.stderr[-3000:]
    doc = {
        "name": GONE_JOB,
        "kind": "torch_distributed",
        "description": "A job over three hosts, one of them unreachable when it starts.",
        "entry": str(ROOT / "experiments" / "training" / "mlp.py"),
        "args": ["--steps", 20],
        "ranks": 3,
        "memory_gb": 0.5,
        "join_timeout_s": JOIN_TIMEOUT_S,
    }
    path = tmp_path / f"{GONE_JOB}.yml"
    path.write_text(yaml.safe_dump(doc, sort_keys=False))
    runs.sshd(sim, GONE, "stop", end_sessions=True)
    try:
        up = cli(sim, "up", "-i", str(sim.inventory), "--skip-deploy", str(path))
        assert up.returncode == 1, up.stderr[-4000:]
        assert f"{GONE}: unreachable" in up.stderr, up.stderr[-4000:]
        placed = units(sim)
        others = {n: e for n, e in placed.items() if n != GONE}
        assert set(placed) == TORCH_HOSTS and len(others) == 2, placed
        hosts = ":".join(others)
        show = "ActiveState,Result,ExecMainStatus,NRestarts"
        states = " ".join(
            f"test -e /etc/edgejar/instances/{e['id']}.json && "
            f"systemctl show -p {show} {UNIT.format(e['id'])};"
            for e in others.values()
        )

        def given_up() -> dict[str, str] | None:
            out = runs.shell(sim, runner_dir, "gone-state", f"{states} true", hosts)
            return out if all("ActiveState=failed" in out[n] for n in others) else None

        shown = wait_for("the units elsewhere to give up", given_up, 60 + JOIN_TIMEOUT_S + 180)
        for node in others:
            props = dict(line.split("=", 1) for line in shown[node].splitlines())
            # A peer that gave up closes the rendezvous; the store's node, told so, gives up too
            # (RendezvousClosedError). At most one restart: a failure torchrun reports otherwise.
            assert int(props.pop("NRestarts")) <= 1, (node, shown[node])
            assert props == {"ActiveState": "failed", "Result": "exit-code", "ExecMainStatus": "3"}, (
                node,
                props,
            )
        sql = f"SELECT detail FROM train_events WHERE event = 'gave_up' AND instance_id LIKE '{GONE_JOB}-%'"
        gave_up = query(sim, runner_dir, "gone-events", sql, hosts)
        for node in others:
            assert len(gave_up[node]) == 1, gave_up
            reason = json.loads(gave_up[node][0][0])["reason"]
            assert f"did not form at the rendezvous {placed['host']['rdzv_endpoint']}" in reason, reason
            errors = ("RendezvousTimeoutError", "RendezvousConnectionError", "RendezvousClosedError")
            assert any(e in reason for e in errors), reason
    finally:
        runs.sshd(sim, GONE, "start")
    down = cli(sim, "down", "-i", str(sim.inventory))
    assert down.returncode == 0, down.stderr[-3000:]


def test_a_relaunch_skips_an_unchanged_deploy_and_deploys_where_a_node_lost_it(
    sim: Sim, runner_dir: Path, finished: dict[str, Any], tmp_path: Path
) -> None:
    """`runner up` of a new job with the checkout unchanged launches without deploying (docs/e2e.md,
    "Relaunching"); a node whose deploy stamp no longer holds what was deployed there is named, launch
    changes nothing there, and `runner up` deploys and launches after all: every job starts."""

    def job(n: int) -> Path:
        doc = {
            "name": f"train_again{n}",
            "kind": "torch_distributed",
            "entry": str(ROOT / "experiments" / "training" / "mlp.py"),
            "args": ["--steps", 5, "--checkpoint-every", 0],
            "ranks": 3,
            "memory_gb": 0.5,
            "max_restarts": 0,
        }
        path = tmp_path / f"again{n}.yml"
        path.write_text(yaml.safe_dump(doc, sort_keys=False))
        return path

    stamp = "cat /opt/edgejar/app.deployed"
    hosts = ":".join(sorted(TORCH_HOSTS))
    try:
        first = cli(sim, "up", "-i", str(sim.inventory), "--deploy", str(job(1)))
        assert first.returncode == 0 and "==> up.yml (deploy + launch)" in first.stderr, first.stderr[-3000:]
        deployed = runs.shell(sim, runner_dir, "stamp-1", stamp, hosts)
        assert len(set(deployed.values())) == 1 and len(deployed["rpi1"].strip()) == 64, deployed
        again = cli(sim, "up", "-i", str(sim.inventory), str(job(2)))
        assert again.returncode == 0, again.stderr[-3000:]
        assert "==> launch.yml (launch; nothing changed since the last deploy)" in again.stderr, again.stderr
        assert "up.yml" not in again.stderr and "3 unit(s) started" in again.stderr, again.stderr
        runs.shell(sim, runner_dir, "stamp-break", "echo stale > /opt/edgejar/app.deployed", "rpi1")
        third = cli(sim, "up", "-i", str(sim.inventory), str(job(3)))
        assert third.returncode == 0, third.stderr[-3000:]
        assert "up: rpi1: not what was last deployed" in third.stderr and "holds stale" in third.stderr, (
            third.stderr
        )
        # the nodes that held the deploy started their units in the first try; they wait at the rendezvous
        assert "==> up.yml (deploy + launch)" in third.stderr, third.stderr
        assert "1 unit(s) started or restarted, 2 left running as they were" in third.stderr, third.stderr
        assert runs.shell(sim, runner_dir, "stamp-3", stamp, hosts) == deployed
    finally:
        down = cli(sim, "down", "-i", str(sim.inventory))
        assert down.returncode == 0, down.stderr[-3000:]


DATA = "/var/lib/edgejar/datasets/train_it.pt"


def test_a_job_learns_from_a_data_file_on_the_nodes_and_a_missing_one_is_named(
    sim: Sim, runner_dir: Path, finished: dict[str, Any], tmp_path: Path
) -> None:
    """`data: <path>`: every rank reads its own rows of each step's global batch from the file on its
    node, and the loss falls; a path a node does not have fails that node's unit with exit 2, named,
    and `runner up` reports it."""
    hosts = ":".join(sorted(TORCH_HOSTS))
    make = (
        f'mkdir -p {Path(DATA).parent} && /opt/edgejar/venv/bin/python -c "import torch; '
        "g = torch.Generator().manual_seed(7); x = torch.randn(600, 8, generator=g); "
        f"torch.save({{'x': x, 'y': x @ torch.linspace(-1, 1, 8)}}, '{DATA}')\" && chmod 644 {DATA}"
    )
    runs.shell(sim, runner_dir, "data-make", make, hosts)

    def job(name: str, data: str) -> Path:
        doc = {
            "name": name,
            "kind": "torch_distributed",
            "entry": str(ROOT / "experiments" / "training" / "mlp.py"),
            "args": ["--steps", 40, "--batch", 96, "--checkpoint-every", 0],
            "ranks": 3,
            "memory_gb": 0.5,
            "max_restarts": 0,
            "data": data,
        }
        path = tmp_path / f"{name}.yml"
        path.write_text(yaml.safe_dump(doc, sort_keys=False))
        return path

    try:
        up = cli(sim, "up", "-i", str(sim.inventory), str(job("train_data", DATA)))
        assert up.returncode == 0, up.stderr[-3000:]
        ids = " ".join(e["id"] for e in units(sim).values())
        states = (
            f"for id in {ids}; do test -e /etc/edgejar/instances/$id.json && "
            f"systemctl show -p ActiveState,Result --value edgejar-train@$id.service; done; true"
        )

        def ended() -> bool:
            out = runs.shell(sim, runner_dir, "data-state", states, hosts)
            return all(sorted(out[h].split()) == ["inactive", "success"] for h in TORCH_HOSTS)

        wait_for("the data job to end", ended, 300)
        sql = "SELECT detail FROM train_events WHERE event = 'start' AND instance_id LIKE 'train_data-%'"
        started = query(sim, runner_dir, "data-events", sql, hosts)
        for node in TORCH_HOSTS:
            assert [json.loads(d)["data"] for (d,) in started[node]] == [f"{DATA} (600 rows)"], started
        sql = "SELECT step, loss FROM train_steps WHERE instance_id LIKE 'train_data-%' ORDER BY step"
        losses = [loss for _, loss in query(sim, runner_dir, "data-steps", sql, "host")["host"]]
        assert len(losses) == 40 and losses[-1] < losses[0] / 2, losses
        missing = cli(
            sim, "up", "-i", str(sim.inventory), str(job("train_nodata", "/var/lib/edgejar/none.pt"))
        )
        assert missing.returncode == 1, missing.stderr[-3000:]
        assert "data /var/lib/edgejar/none.pt does not exist on this node" in missing.stderr, missing.stderr[
            -4000:
        ]
    finally:
        down = cli(sim, "down", "-i", str(sim.inventory))
        assert down.returncode == 0, down.stderr[-3000:]
