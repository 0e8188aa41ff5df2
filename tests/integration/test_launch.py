"""playbooks/launch.yml and stop.yml on the simulated cluster: units where placement put them, peers
talking across hosts, an OOM kill restarted by systemd and recorded, re-placement, stop, reruns.

The seed experiments run as copies in a project directory the test owns (deploy's
edgejar_deploy_src_dir), with `cycles: 0` (until stopped), few tokens and a short delay, so that the
units stay active while the test looks at them and the shared machine is not loaded more than needed.
Split brain + panopticon fit the sim inventory together (prisoners' dilemma would need both Pis and
could not leave rpi1); split_brain_B is pinned to `host` so that `--exclude rpi1` has to move only
rpi1's instance (the panopticon subject).
"""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest
import yaml

from runner.sim import network
from runner.sim.state import StateDir
from tests.integration import runs
from tests.integration.conftest import ROOT, Sim, assert_provisioned
from tests.integration.runs import Run, query

pytestmark = pytest.mark.integration

HOSTS = {"jetson", "rpi1", "rpi2", "host"}
EXPERIMENTS = ("split_brain", "panopticon")
PINS = ("--pin", "split_brain_B=host")
UNIT = "edgejar-instance@{}.service"
OOM_EXPERIMENT = {
    "name": "oom_probe",
    "mode": "isolated",
    "description": "One instance whose ballast exceeds its memory ceiling at cycle 5: OOM-killed, restarted.",
    "model": "tiny",
    "n_ctx": 256,
    "max_tokens": 8,
    "cycles": 0,
    "cycle_delay_s": 3.0,
    "interventions": [{"type": "resource_pressure", "at": 5, "ballast_mib": 512}],
    "instances": [{"id": "oom_probe", "memory_gb": 0.25, "node": "host"}],
}


def quick(path: Path) -> None:
    """Make a seed experiment run until stopped, lightly."""
    data = yaml.safe_load(path.read_text())
    data.update({"cycles": 0, "max_tokens": 16, "n_ctx": 512, "cycle_delay_s": 2.0})
    path.write_text(yaml.safe_dump(data, sort_keys=False))


@pytest.fixture(scope="module")
def project(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The deployable paths (runner/, experiments/) with light copies of the seeds and the OOM probe."""
    src = tmp_path_factory.mktemp("launch-project")
    for name in ("runner", "experiments"):
        shutil.copytree(ROOT / name, src / name, ignore=shutil.ignore_patterns("__pycache__", "*.pyc"))
    for name in EXPERIMENTS:
        quick(src / "experiments" / f"{name}.yml")
    (src / "experiments" / "oom_probe.yml").write_text(yaml.safe_dump(OOM_EXPERIMENT, sort_keys=False))
    return src


def place(sim: Sim, project: Path, *args: str) -> dict[str, Any]:
    out = subprocess.run(
        [sys.executable, "-m", "runner", "place", "-i", str(sim.inventory), "--json", *args],
        cwd=project,
        capture_output=True,
        text=True,
        check=False,
    )
    assert out.returncode == 0, out.stderr
    result: dict[str, Any] = json.loads(out.stdout)
    return result


def files(*names: str) -> list[str]:
    return [f"experiments/{n}.yml" for n in names]


def deploy(sim: Sim, runner_dir: Path, project: Path, name: str) -> None:
    run, _ = runs.playbook(sim, runner_dir, name, "deploy.yml", {"edgejar_deploy_src_dir": str(project)})
    assert run.status == "successful", (run.stats, run.errors())


def launch(sim: Sim, runner_dir: Path, name: str, cmdline: str | None = None) -> tuple[Run, str]:
    kwargs = {"cmdline": cmdline} if cmdline else {}
    return runs.playbook(sim, runner_dir, name, "launch.yml", **kwargs)


def reports(run: Run) -> dict[str, str]:
    """instance id -> its report line (the launch's per-instance summary)."""
    out: dict[str, str] = {}
    for e in run.events:
        if e["event"] == "runner_on_ok" and e["event_data"].get("task", "").startswith(
            "Report each instance"
        ):
            for msg in e["event_data"]["res"]["msg"]:
                if not msg.startswith("removed: "):  # the stale instances launch pruned
                    out[msg.split()[0]] = msg
    return out


def active_units(sim: Sim, runner_dir: Path, name: str) -> dict[str, set[str]]:
    """host -> ids of the running instance units."""
    out = runs.shell(
        sim,
        runner_dir,
        name,
        "systemctl list-units --plain --no-legend --state=active 'edgejar-instance@*.service' | cut -d' ' -f1",
    )
    return {
        host: {line.split("@", 1)[1].removesuffix(".service") for line in text.split() if "@" in line}
        for host, text in out.items()
    }


@pytest.fixture(scope="module")
def placed(sim: Sim, runner_dir: Path, project: Path, provisioned_runs: dict[str, Any]) -> dict[str, Any]:
    """Provision, tiny model, place the light seeds, deploy: `place --json` of the first placement."""
    assert_provisioned(provisioned_runs)
    subprocess.run(
        [sys.executable, "-m", "runner", "model", "tiny"], cwd=ROOT, capture_output=True, check=True
    )
    result = place(sim, project, *files(*EXPERIMENTS), *PINS)
    deploy(sim, runner_dir, project, "launch-deploy")
    return result


@pytest.fixture(scope="module")
def launched(sim: Sim, runner_dir: Path, placed: dict[str, Any]) -> tuple[Run, Run, Run, Run]:
    """launch.yml --check on unlaunched nodes, twice for real, then --check on the launched nodes."""
    check_fresh, _ = launch(sim, runner_dir, "launch-check-fresh", "--check")
    first, _ = launch(sim, runner_dir, "launch-1")
    second, _ = launch(sim, runner_dir, "launch-2")
    check_launched, _ = launch(sim, runner_dir, "launch-check-launched", "--check")
    return check_fresh, first, second, check_launched


def test_check_mode_before_and_after_launch(launched: tuple[Run, Run, Run, Run]) -> None:
    check_fresh, _, _, check_launched = launched
    assert check_fresh.status == "successful", (check_fresh.stats, check_fresh.errors())
    assert check_launched.status == "successful", (check_launched.stats, check_launched.errors())
    assert not check_launched.stats.get("changed"), check_launched.stats


def test_launch_starts_every_instance_and_a_rerun_changes_nothing(
    launched: tuple[Run, Run, Run, Run], placed: dict[str, Any]
) -> None:
    _, first, second, _ = launched
    assert first.status == "successful", (first.stats, first.errors())
    lines = reports(first)
    assert set(lines) == set(placed["placements"]), lines
    for iid, line in lines.items():
        assert (
            f"on {placed['placements'][iid]} port {placed['ports'][iid]}: active/running, port answers"
            in line
        )
    assert second.status == "successful", (second.stats, second.errors())
    assert not second.stats.get("changed"), second.stats


def test_units_run_where_placement_put_them(
    sim: Sim, runner_dir: Path, placed: dict[str, Any], launched: tuple[Run, Run, Run, Run]
) -> None:
    expected = {host: {i for i, n in placed["placements"].items() if n == host} for host in HOSTS}
    assert active_units(sim, runner_dir, "launch-units") == expected


def test_units_are_hardened_and_limited(
    sim: Sim, runner_dir: Path, placed: dict[str, Any], launched: tuple[Run, Run, Run, Run]
) -> None:
    iid = "split_brain_B"
    out = runs.shell(
        sim,
        runner_dir,
        "launch-props",
        f"systemctl show -p User,MemoryLimit,MemoryMax,NoNewPrivileges,ProtectSystem,PrivateTmp,ReadWritePaths,"
        f"RestartUSec,StartLimitBurst,RestartPreventExitStatus {UNIT.format(iid)}; "
        f"stat -c %U /proc/$(systemctl show -p MainPID --value {UNIT.format(iid)})",
        hosts="host",
    )["host"]
    props = dict(line.split("=", 1) for line in out.splitlines() if "=" in line)
    assert props["User"] == "edgejar-run"
    assert props["MemoryMax"] == str(2048 << 20)
    assert props["NoNewPrivileges"] == "yes"
    assert props["ProtectSystem"] == "strict"
    assert props["PrivateTmp"] == "yes"
    assert props["ReadWritePaths"] == "/var/lib/edgejar/data"
    assert props["RestartUSec"] == "5s"
    assert props["RestartPreventExitStatus"] == "2"
    assert out.splitlines()[-1].strip() == "edgejar-run"


def test_peers_exchange_messages_across_hosts(
    sim: Sim, runner_dir: Path, placed: dict[str, Any], launched: tuple[Run, Run, Run, Run]
) -> None:
    sql = "SELECT instance_id, peer_id, COUNT(*) FROM messages WHERE direction = 'received' GROUP BY 1, 2"
    where = placed["placements"]
    wanted = {("split_brain_A", "split_brain_B"), ("split_brain_B", "split_brain_A")}
    wanted.add(("panopticon_observer", "panopticon_subject"))
    got: set[tuple[str, str]] = set()
    for _ in range(30):
        rows = query(sim, runner_dir, "launch-messages", sql)
        got = {(iid, peer) for host, rs in rows.items() for iid, peer, _n in rs if where.get(iid) == host}
        if wanted <= got:
            break
        time.sleep(3)
    assert wanted <= got, got
    assert all(where[a] != where[b] for a, b in wanted if a.startswith("split")), where


def test_a_peer_without_the_secret_cannot_get_a_message_in(
    sim: Sim, runner_dir: Path, placed: dict[str, Any], launched: tuple[Run, Run, Run, Run]
) -> None:
    """From the controller (not an instance): an old-protocol frame and a handshake with a wrong secret,
    both claiming to be split_brain_A, at split_brain_B's port. Neither reaches B's records; A's real
    messages do (protocol v2, runner/node/auth.py)."""
    import socket as sk

    from runner.node import auth, protocol

    target = "split_brain_B"
    entry = next(e for e in placed_entries(sim, target) if e["id"] == target)
    marker = f"INJECTED-{time.time_ns()}"
    fake = {"v": 1, "type": "thought", "from": "split_brain_A", "id": "x:1:1", "text": marker, "cycle": 1}
    with sk.create_connection((entry["address"], entry["port"]), timeout=10) as s:
        s.sendall(protocol.encode(fake))
        s.settimeout(10)
        assert s.recv(1) == b""  # the receiver closes the connection
    with (
        sk.create_connection((entry["address"], entry["port"]), timeout=10) as s,
        pytest.raises(auth.AuthError),
    ):
        auth.connect(s, b"not-the-experiment-secret", "split_brain_A", "split_brain")
    time.sleep(2)
    sql = f"SELECT COUNT(*) FROM messages WHERE instance_id = '{target}' AND content LIKE '%{marker}%'"
    node = placed["placements"][target]
    assert query(sim, runner_dir, "inject-none", sql, hosts=node)[node] == [[0]]
    real = "SELECT COUNT(*) FROM messages WHERE instance_id = 'split_brain_B' AND direction = 'received'"
    assert query(sim, runner_dir, "inject-real", real, hosts=node)[node][0][0] > 0


SCAN = """
import json, socket, sys
out = {}
for host, port in json.loads(sys.argv[1]):
    try:
        socket.create_connection((host, port), timeout=5).close()
        out[f"{host}:{port}"] = "open"
    except ConnectionRefusedError:
        out[f"{host}:{port}"] = "closed"
    except OSError as exc:
        out[f"{host}:{port}"] = f"error {exc}"
print(json.dumps(out))
"""


def received(sim: Sim, runner_dir: Path, name: str) -> int:
    rows = query(sim, runner_dir, name, "SELECT COUNT(*) FROM messages WHERE direction = 'received'")
    return sum(r[0][0] for r in rows.values() if r)


def test_the_firewall_closes_the_peer_ports_to_a_host_outside_the_cluster(
    sim: Sim, runner_dir: Path, placed: dict[str, Any], launched: tuple[Run, Run, Run, Run]
) -> None:
    """playbooks/firewall.yml on the launched sim (nftables, CAP_NET_ADMIN in each host's own network
    namespace): --check first, then twice (the second changes nothing). A namespace on the sim's bridge
    with an address no node has scans every peer port: all closed, SSH still open. The instances keep
    exchanging messages. state=absent takes it all away again (the later tests connect from here)."""
    cfg = StateDir(sim.state_dir).config()
    assert cfg is not None
    targets = sorted({(e["address"], int(e["port"])) for e in placed_entries(sim, "")})
    nodes = sorted({a for a, _ in targets})
    outsider, veth = f"{cfg.prefix}-outsider", f"{cfg.prefix}-out0"[:15]
    try:
        check, _ = runs.playbook(sim, runner_dir, "fw-check", "firewall.yml", cmdline="--check")
        assert check.status == "successful", (check.stats, check.errors())
        first, _ = runs.playbook(sim, runner_dir, "fw-1", "firewall.yml")
        assert first.status == "successful", (first.stats, first.errors())
        second, _ = runs.playbook(sim, runner_dir, "fw-2", "firewall.yml")
        assert second.status == "successful", (second.stats, second.errors())
        assert not second.stats.get("changed"), second.stats
        network.host_net_up(outsider, veth, cfg.bridge, str(cfg.network.network_address + 250), cfg.prefixlen)
        probe = [*targets, *((a, 22) for a in nodes)]
        out = subprocess.run(
            ["ip", "netns", "exec", outsider, sys.executable, "-c", SCAN, json.dumps(probe)],
            capture_output=True,
            text=True,
            check=True,
            timeout=120,
        )
        scan = json.loads(out.stdout)
        assert {k: v for k, v in scan.items() if not k.endswith(":22")} == {
            f"{a}:{p}": "closed" for a, p in targets
        }, scan
        assert all(scan[f"{a}:22"] == "open" for a in nodes), scan
        before = received(sim, runner_dir, "fw-received-1")
        time.sleep(10)
        assert received(sim, runner_dir, "fw-received-2") > before
    finally:
        network.host_net_down(outsider, veth)
        gone, _ = runs.playbook(
            sim, runner_dir, "fw-absent", "firewall.yml", {"edgejar_firewall_state": "absent"}
        )
    assert gone.status == "successful", (gone.stats, gone.errors())
    tables = runs.shell(sim, runner_dir, "fw-tables", "nft list tables")
    assert all("edgejar" not in t for t in tables.values()), tables


def placed_entries(sim: Sim, iid: str) -> list[dict[str, Any]]:
    """Every node's placement entries (host_vars next to the sim inventory)."""
    out: list[dict[str, Any]] = []
    for f in sorted((sim.inventory.parent / "host_vars").glob("*/placement.yml")):
        out += yaml.safe_load(f.read_text())["edgejar_instances"]
    return out


def test_exclude_rpi1_moves_only_its_instances(
    sim: Sim, runner_dir: Path, project: Path, placed: dict[str, Any], launched: tuple[Run, Run, Run, Run]
) -> None:
    before = placed["placements"]
    on_rpi1 = {i for i, n in before.items() if n == "rpi1"}
    assert on_rpi1, before
    moved = place(sim, project, *files(*EXPERIMENTS), *PINS, "--exclude", "rpi1")
    after = moved["placements"]
    assert {m["instance"] for m in moved["moves"]} == on_rpi1, moved["moves"]
    assert all(
        after[i] == before[i] and moved["ports"][i] == placed["ports"][i] for i in before if i not in on_rpi1
    )
    deploy(sim, runner_dir, project, "launch-deploy-moved")
    run, _ = launch(sim, runner_dir, "launch-moved")
    assert run.status == "successful", (run.stats, run.errors())
    assert set(run.stats.get("changed", {})) >= {"rpi1"} | {after[i] for i in on_rpi1}, run.stats
    expected = {host: {i for i, n in after.items() if n == host} for host in HOSTS}
    assert active_units(sim, runner_dir, "launch-units-moved") == expected
    leftovers = runs.shell(
        sim,
        runner_dir,
        "launch-rpi1-files",
        "ls /etc/edgejar/instances /etc/systemd/system | grep -c -e '.json$' -e '@.*\\.service\\.d$' || true",
        hosts="rpi1",
    )
    assert leftovers["rpi1"].strip() == "0", leftovers


def test_an_instance_over_its_memory_ceiling_is_oom_killed_restarted_and_recorded(
    sim: Sim, runner_dir: Path, project: Path, launched: tuple[Run, Run, Run, Run]
) -> None:
    place(sim, project, *files(*EXPERIMENTS, "oom_probe"), *PINS, "--exclude", "rpi1")
    deploy(sim, runner_dir, project, "launch-deploy-oom")
    run, _ = launch(sim, runner_dir, "launch-oom")
    assert run.status == "successful", (run.stats, run.errors())
    sql = "SELECT cause, detected_by FROM life_ends WHERE instance_id = 'oom_probe' AND cause != 'stopped'"
    deaths: list[Any] = []
    restarts = "0"
    for _ in range(40):
        deaths = query(sim, runner_dir, "launch-oom-deaths", sql, hosts="host")["host"]
        restarts = runs.shell(
            sim,
            runner_dir,
            "launch-oom-restarts",
            f"systemctl show -p NRestarts --value {UNIT.format('oom_probe')}",
            hosts="host",
        )["host"].strip()
        if deaths and int(restarts) >= 1:
            break
        time.sleep(3)
    # cgroup v1 (the sim): systemd sees the kernel's SIGKILL (signal:KILL); cgroup v2: oom-kill.
    assert deaths and {cause for cause, _ in deaths} <= {"oom-kill", "signal:KILL"}, deaths
    assert int(restarts) >= 1
    exits = query(
        sim,
        runner_dir,
        "launch-oom-exits",
        "SELECT cause FROM exit_reports WHERE instance_id = 'oom_probe'",
        "host",
    )["host"]
    assert exits and {c for (c,) in exits} <= {"oom-kill", "signal:KILL"}, exits
    peak = query(
        sim,
        runner_dir,
        "launch-oom-limit",
        "SELECT memory_limit_mib FROM lives WHERE instance_id = 'oom_probe'",
        "host",
    )["host"]
    assert {m for (m,) in peak} == {256}, peak


def main_pids(sim: Sim, runner_dir: Path, name: str) -> dict[str, str]:
    """instance id -> main PID of its running unit, over every node."""
    out = runs.shell(
        sim,
        runner_dir,
        name,
        "for u in $(systemctl list-units --plain --no-legend --state=active 'edgejar-instance@*' | cut -d' ' -f1);"
        " do echo $u $(systemctl show -p MainPID --value $u); done",
    )
    pids: dict[str, str] = {}
    for text in out.values():
        for line in text.splitlines():
            unit, _, pid = line.partition(" ")
            pids[unit.split("@", 1)[1].removesuffix(".service")] = pid
    return pids


def test_editing_one_instance_restarts_it_alone(
    sim: Sim, runner_dir: Path, project: Path, launched: tuple[Run, Run, Run, Run]
) -> None:
    place(sim, project, *files(*EXPERIMENTS), *PINS, "--exclude", "rpi1")
    deploy(sim, runner_dir, project, "launch-deploy-edit-0")
    settled, _ = launch(sim, runner_dir, "launch-edit-0")
    assert settled.status == "successful", (settled.stats, settled.errors())
    before = main_pids(sim, runner_dir, "launch-edit-pids-before")
    path = project / "experiments" / "panopticon.yml"
    data = yaml.safe_load(path.read_text())
    data["instances"][0]["system_prompt"] = "You are edited: answer in five words."
    edited = data["instances"][0]["id"]
    path.write_text(yaml.safe_dump(data, sort_keys=False))
    placed = place(sim, project, *files(*EXPERIMENTS), *PINS, "--exclude", "rpi1")
    run, _ = launch(sim, runner_dir, "launch-edit")
    assert run.status == "successful", (run.stats, run.errors())
    after = main_pids(sim, runner_dir, "launch-edit-pids-after")
    assert set(after) == set(before), (before, after)
    assert sorted(i for i in before if after[i] != before[i]) == [edited], (before, after)
    assert set(run.stats.get("changed", {})) == {placed["placements"][edited]}, run.stats
    assert "[restarted: config changed]" in reports(run)[edited]


def test_a_failing_instance_is_reported_with_its_log_tail(
    sim: Sim, runner_dir: Path, project: Path, launched: tuple[Run, Run, Run, Run]
) -> None:
    """The model file vanishes on the node: the instance exits 2 (bad input, no retry) and launch names
    it with the runtime's own message from the journal. A deploy brings the model back."""
    placed = place(sim, project, *files(*EXPERIMENTS), *PINS, "--exclude", "rpi1")
    iid = "split_brain_B"
    node = placed["placements"][iid]
    broke = runs.shell(
        sim,
        runner_dir,
        "launch-fail-break",
        "mv /var/lib/edgejar/models /var/lib/edgejar/models.away && "
        f"systemctl restart {UNIT.format(iid)}; sleep 3; "
        f"systemctl show -p ActiveState,Result,ExecMainStatus {UNIT.format(iid)}",
        hosts=node,
    )
    try:
        run, _ = launch(sim, runner_dir, "launch-fail")
        assert run.status == "failed", (run.stats, broke, reports(run))
        msg = str(run.errors().get(node, ""))
        assert f"{iid} is failed" in msg and "journalctl -u" in msg, run.errors()
        assert "/var/lib/edgejar/models/" in msg, msg  # the runtime's own words: which model is missing
    finally:
        runs.shell(
            sim,
            runner_dir,
            "launch-fail-mend",
            "rm -rf /var/lib/edgejar/models && mv /var/lib/edgejar/models.away /var/lib/edgejar/models",
            hosts=node,
        )
    again, _ = launch(sim, runner_dir, "launch-fail-mended")
    assert again.status == "successful", (again.stats, again.errors())
    assert "[started: was failed]" in reports(again)[iid]


def test_stop_leaves_nothing_running_and_a_second_stop_changes_nothing(
    sim: Sim, runner_dir: Path, launched: tuple[Run, Run, Run, Run]
) -> None:
    one, _ = runs.playbook(
        sim, runner_dir, "stop-one", "stop.yml", {"edgejar_stop_instance": "split_brain_A"}
    )
    assert one.status == "successful", one.errors()
    assert set(one.stats.get("changed", {})) == {"jetson"}, one.stats
    run, _ = runs.playbook(sim, runner_dir, "stop-all", "stop.yml", {"edgejar_stop_all": True})
    assert run.status == "successful", run.errors()
    assert active_units(sim, runner_dir, "stop-units") == {h: set() for h in HOSTS}
    procs = runs.shell(sim, runner_dir, "stop-procs", "pgrep -u edgejar-run -c || true")
    assert all(n.strip() == "0" for n in procs.values()), procs
    again, _ = runs.playbook(sim, runner_dir, "stop-again", "stop.yml", {"edgejar_stop_all": True})
    assert again.status == "successful", again.errors()
    assert not again.stats.get("changed"), again.stats
    stopped = query(
        sim,
        runner_dir,
        "stop-ends",
        "SELECT DISTINCT instance_id FROM life_ends WHERE cause = 'stopped'",
        "jetson",
    )["jetson"]
    assert ["split_brain_A"] in stopped, stopped
