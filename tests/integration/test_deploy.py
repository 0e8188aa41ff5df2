"""playbooks/deploy.yml on the simulated cluster: code sync, placement-driven model delivery, reruns."""

from __future__ import annotations

import hashlib
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import yaml

from tests.integration import runs
from tests.integration.conftest import ROOT, Sim, assert_provisioned
from tests.integration.runs import Run

pytestmark = pytest.mark.integration

HOSTS = {"jetson", "rpi1", "rpi2", "host"}
MODELS_DIR = "/var/lib/edgejar/models"
TINY = "tiny-random-llama.gguf"


def sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


@pytest.fixture(scope="module")
def project(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A copy of the project's deployable paths that the tests may change (edgejar_deploy_src_dir)."""
    src = tmp_path_factory.mktemp("project")
    for name in ("runner", "experiments"):
        shutil.copytree(ROOT / name, src / name, ignore=shutil.ignore_patterns("__pycache__", "*.pyc"))
    return src


@pytest.fixture(scope="module")
def tiny_model() -> Path:
    out = subprocess.run(
        [sys.executable, "-m", "runner", "model", "tiny"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        check=True,
    )
    return Path(out.stdout.split()[1] if len(out.stdout.split()) > 1 else ROOT / "models" / TINY)


@pytest.fixture(scope="module")
def placed(
    sim: Sim, runner_dir: Path, tiny_model: Path, provisioned_runs: dict[str, Any]
) -> dict[str, list[str]]:
    """Provision, then place split brain on the simulated cluster: node -> instance ids."""
    assert_provisioned(provisioned_runs)
    out = subprocess.run(
        [
            sys.executable,
            "-m",
            "runner",
            "place",
            "-i",
            str(sim.inventory),
            "experiments/split_brain.yml",
            "--json",
        ],
        cwd=ROOT,
        capture_output=True,
        text=True,
        check=False,
    )
    assert out.returncode == 0, out.stderr
    nodes: dict[str, list[str]] = {}
    for iid, node in yaml.safe_load(out.stdout)["placements"].items():
        nodes.setdefault(node, []).append(iid)
    return nodes


@pytest.fixture(scope="module")
def deployed(sim: Sim, runner_dir: Path, placed: dict[str, list[str]], project: Path) -> tuple[Run, Run, Run]:
    """deploy.yml --check on the provisioned hosts, then twice for real."""
    # Other test modules share the session's cluster and may have deployed already: start from
    # provisioned hosts without the runtime, its .pth file and the models.
    runs.shell(
        sim,
        runner_dir,
        "deploy-reset",
        f"rm -rf /opt/edgejar/app {MODELS_DIR} && rm -f /opt/edgejar/venv/lib/python3*/site-packages/edgejar-app.pth",
    )
    extra = {"edgejar_deploy_src_dir": str(project)}
    check, _ = runs.playbook(sim, runner_dir, "deploy-check", "deploy.yml", extra, cmdline="--check")
    first, _ = runs.playbook(sim, runner_dir, "deploy-1", "deploy.yml", extra)
    second, _ = runs.playbook(sim, runner_dir, "deploy-2", "deploy.yml", extra)
    return check, first, second


def transfers(run: Run) -> dict[str, list[str]]:
    """host -> rsync's itemized lines of every transfer in the run."""
    out: dict[str, list[str]] = {}
    for e in run.events:
        if e["event"] == "runner_on_ok" and e["event_data"].get("task", "").startswith("Send with rsync to"):
            out.setdefault(e["event_data"]["host"], []).extend(e["event_data"]["res"].get("stdout_lines", []))
    return out


def test_check_mode_on_provisioned_hosts_succeeds(deployed: tuple[Run, Run, Run]) -> None:
    check, _, _ = deployed
    assert check.status == "successful", (check.stats, check.errors())


def test_deploy_runs_everywhere_then_is_idempotent(deployed: tuple[Run, Run, Run]) -> None:
    _, first, second = deployed
    assert first.status == "successful", (first.stats, first.errors())
    assert set(first.stats["ok"]) == HOSTS
    assert set(first.stats.get("changed", {})) == HOSTS
    assert second.status == "successful", (second.stats, second.errors())
    assert not second.stats.get("changed"), second.stats["changed"]


def test_runtime_is_importable_from_the_node_venv(
    sim: Sim, runner_dir: Path, deployed: tuple[Run, Run, Run]
) -> None:
    out = runs.shell(
        sim,
        runner_dir,
        "deploy-import",
        "cd / && /opt/edgejar/venv/bin/python -B -c 'import runner, runner.node.cli; print(runner.__file__)'"
        " && ls /opt/edgejar/app/experiments && ls /opt/edgejar/app/runner"
        " && find /opt/edgejar/app -name __pycache__ | wc -l",
    )
    for host in HOSTS:
        lines = out[host].splitlines()
        assert lines[0] == "/opt/edgejar/app/runner/__init__.py", (host, out[host])
        assert "split_brain.yml" in lines, (host, out[host])
        # the node runtime and the pure placement engine (the notebook gateway places kernels with it): no
        # planner, simulator or monitor on a node
        assert {"__init__.py", "errors.py", "names.py", "node", "placement"} <= set(lines), (host, out[host])
        assert not {"sim", "planning", "monitor", "commands", "cli.py"} & set(lines), (host, out[host])
        assert lines[-1] == "0", f"{host}: caches were synced: {out[host]}"


def test_models_only_where_the_placement_needs_them(
    sim: Sim, runner_dir: Path, placed: dict[str, list[str]], tiny_model: Path, deployed: tuple[Run, Run, Run]
) -> None:
    out = runs.shell(sim, runner_dir, "deploy-models", f"sha256sum {MODELS_DIR}/*.gguf 2>/dev/null || true")
    expected = sha256(tiny_model)
    for host in HOSTS:
        if host in placed:
            assert out[host].split() == [expected, f"{MODELS_DIR}/{TINY}"], (host, out[host])
        else:
            assert out[host] == "", f"{host} has no placement but got {out[host]}"


def test_a_no_op_deploy_reads_no_model(placed: dict[str, list[str]], deployed: tuple[Run, Run, Run]) -> None:
    """The second deploy takes each model's sha256 from the sidecar the delivery wrote: no file is read."""
    _, _, second = deployed
    held = second.results(
        "Compare the node's runtime and models with the controller's; prune; fix the import path"
    )
    assert set(placed) < set(held), held  # one check per node, models or not
    for host, res in held.items():
        want = ["sidecar"] if host in placed else []
        assert [f["source"] for f in res["files"].values()] == want, (host, res["files"])
    local = second.results("Record where each model comes from and its checksum")
    (res,) = local.values()  # run once, on the controller
    sources = res["ansible_facts"]["edgejar_deploy_models_sources"]
    assert [s["read_from"] for s in sources.values()] == ["sidecar"], sources


def test_one_tag_deploys_its_half_alone(
    sim: Sim, runner_dir: Path, project: Path, placed: dict[str, list[str]], deployed: tuple[Run, Run, Run]
) -> None:
    """--tags models checks the models and not the code, --tags code the code and not the models: the one
    node check serves the halves whose controller side ran."""
    extra = {"edgejar_deploy_src_dir": str(project)}
    check = "Compare the node's runtime and models with the controller's; prune; fix the import path"
    for tag, code, models in (("models", False, True), ("code", True, False)):
        run, _ = runs.playbook(
            sim, runner_dir, f"deploy-tag-{tag}", "deploy.yml", extra, cmdline=f"--tags {tag}"
        )
        assert run.status == "successful" and not run.stats.get("changed"), (tag, run.stats, run.errors())
        results = run.results(check)
        assert set(results) == HOSTS, (tag, results)
        for host, res in results.items():
            assert ("site" in res) is code, (tag, host, res)
            assert bool(res["files"]) is (models and host in placed), (tag, host, res["files"])


def test_only_changed_files_move_and_deleted_files_go(
    sim: Sim, runner_dir: Path, project: Path, deployed: tuple[Run, Run, Run]
) -> None:
    (project / "experiments" / "split_brain.yml").write_text(
        (project / "experiments" / "split_brain.yml").read_text() + "# changed by the test\n"
    )
    (project / "experiments" / "extra.yml").write_text("# will be deleted\n")
    extra = {"edgejar_deploy_src_dir": str(project)}
    run, _ = runs.playbook(sim, runner_dir, "deploy-change", "deploy.yml", extra)
    assert run.status == "successful", run.errors()
    moved = transfers(run)
    for host in HOSTS:
        names = sorted(line.split(" ", 1)[1] for line in moved[host])
        assert names == ["experiments/extra.yml", "experiments/split_brain.yml"], (host, moved[host])
    (project / "experiments" / "extra.yml").unlink()
    run, _ = runs.playbook(sim, runner_dir, "deploy-delete", "deploy.yml", extra)
    assert run.status == "successful", run.errors()
    for host, lines in transfers(run).items():
        assert lines == ["*deleting   experiments/extra.yml"], (host, lines)


def test_a_damaged_model_is_replaced_and_only_there(
    sim: Sim, runner_dir: Path, project: Path, placed: dict[str, list[str]], deployed: tuple[Run, Run, Run]
) -> None:
    victim = sorted(placed)[0]
    runs.shell(sim, runner_dir, "deploy-damage", f"truncate -s 1000 {MODELS_DIR}/{TINY}", hosts=victim)
    run, _ = runs.playbook(
        sim, runner_dir, "deploy-repair", "deploy.yml", {"edgejar_deploy_src_dir": str(project)}
    )
    assert run.status == "successful", run.errors()
    assert set(run.stats.get("changed", {})) == {victim}, run.stats
    pushed = run.results("Verify the delivered model's checksum")
    assert set(pushed) == {victim}


def test_an_unreachable_node_does_not_stop_the_others(
    sim: Sim, runner_dir: Path, project: Path, tmp_path: Path, deployed: tuple[Run, Run, Run]
) -> None:
    inventory = yaml.safe_load(sim.inventory.read_text())
    sim_vars = inventory["all"]["children"]["edgejar_nodes"]["children"]
    some_host = next(iter(next(iter(sim_vars.values()))["hosts"].values()))
    ghost = {**some_host, "ansible_host": some_host["ansible_host"].rsplit(".", 1)[0] + ".250"}
    extra_inventory = tmp_path / "ghost.yml"
    extra_inventory.write_text(yaml.safe_dump({"edgejar_nodes": {"hosts": {"ghost": ghost}}}))
    run, output = runs.playbook(
        sim,
        runner_dir,
        "deploy-ghost",
        "deploy.yml",
        {"edgejar_deploy_src_dir": str(project)},
        inventory=[str(sim.inventory), str(extra_inventory)],
    )
    assert set(run.stats.get("dark", {})) == {"ghost"}, run.stats
    assert set(run.stats["ok"]) >= HOSTS, run.stats
    assert not run.stats.get("failures"), run.errors()
    assert "ghost: unreachable at task" in output, output[-2000:]
    assert "4 host(s) completed; 1 did not (ghost)" in output, output[-2000:]
