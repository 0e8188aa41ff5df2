"""What the integration tests read from an ansible-runner run, shared by every test module."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import ansible_runner
import yaml

from runner.sim.state import StateDir
from tests.integration.conftest import ROOT, Sim, ansible_env


@dataclass(frozen=True)
class Run:
    status: str
    rc: int
    stats: dict[str, dict[str, int]]
    events: list[dict[str, Any]]

    @classmethod
    def of(cls, r: Any) -> Run:
        """From an ansible_runner.Runner after it finished."""
        return cls(r.status, r.rc, r.stats or {}, list(r.events))

    def results(self, task: str) -> dict[str, dict[str, Any]]:
        """host -> module result of `task` (ok or changed events)."""
        return {
            e["event_data"]["host"]: e["event_data"]["res"]
            for e in self.events
            if e["event"] == "runner_on_ok" and e["event_data"].get("task") == task
        }

    def errors(self) -> dict[str, str]:
        """host -> task and message of its first failure: short enough for an assertion message."""
        out: dict[str, str] = {}
        for e in self.events:
            if e["event"] in ("runner_on_failed", "runner_on_unreachable"):
                d = e["event_data"]
                res = d.get("res", {})
                out.setdefault(
                    d["host"], f"{d.get('task')}: {res.get('msg', '')} {res.get('stderr', '')}".strip()
                )
        return out

    def failures(self) -> dict[str, dict[str, Any]]:
        return {
            e["event_data"]["host"]: e["event_data"]["res"]
            for e in self.events
            if e["event"] == "runner_on_failed"
        }


def private_dir(runner_dir: Path, name: str) -> Path:
    """A private data directory per run: ansible-runner keeps extra variables in it between runs."""
    path = runner_dir / name
    path.mkdir(exist_ok=True)
    return path


def provision(sim: Sim, runner_dir: Path, name: str, extravars: Mapping[str, Any], **kwargs: Any) -> Run:
    """playbooks/provision.yml on the simulated cluster, in its own private data directory."""
    r = ansible_runner.run(
        private_data_dir=str(private_dir(runner_dir, name)),
        project_dir=str(ROOT / "playbooks"),
        playbook="provision.yml",
        inventory=str(sim.inventory),
        envvars=ansible_env(sim.state_dir),
        extravars=dict(extravars),
        quiet=True,
        **kwargs,
    )
    return Run.of(r)


def playbook(
    sim: Sim,
    runner_dir: Path,
    name: str,
    book: str,
    extravars: Mapping[str, Any] | None = None,
    **kwargs: Any,
) -> tuple[Run, str]:
    """Any playbook of playbooks/ on the simulated cluster: its Run and its output (with the summary)."""
    kwargs.setdefault("inventory", str(sim.inventory))
    r = ansible_runner.run(
        private_data_dir=str(private_dir(runner_dir, name)),
        project_dir=str(ROOT / "playbooks"),
        playbook=book,
        envvars=ansible_env(sim.state_dir),
        extravars=dict(extravars or {}),
        quiet=True,
        **kwargs,
    )
    return Run.of(r), r.stdout.read()


def shell(
    sim: Sim, runner_dir: Path, name: str, command: str, hosts: str = "edgejar_nodes"
) -> dict[str, str]:
    """host -> stdout of a shell command run as root on the simulated hosts (must succeed everywhere)."""
    r = ansible_runner.run(
        private_data_dir=str(private_dir(runner_dir, name)),
        host_pattern=hosts,
        module="ansible.builtin.shell",
        module_args=command,
        inventory=str(sim.inventory),
        envvars=ansible_env(sim.state_dir),
        extravars={"ansible_become": True},
        quiet=True,
    )
    assert r.status == "successful", (command, r.stats)
    return {
        e["event_data"]["host"]: e["event_data"]["res"]["stdout"]
        for e in r.events
        if e["event"] == "runner_on_ok"
    }


def placement(sim: Sim, var: str) -> dict[str, list[dict[str, Any]]]:
    """node -> the entries of `var` (edgejar_instances, edgejar_training) that place wrote in its host_vars."""
    return {
        f.parent.name: yaml.safe_load(f.read_text()).get(var) or []
        for f in sorted((sim.inventory.parent / "host_vars").glob("*/placement.yml"))
    }


RECORDS_DB = "/var/lib/edgejar/data/records.sqlite3"


def query(
    sim: Sim, runner_dir: Path, name: str, sql: str, hosts: str = "edgejar_nodes"
) -> dict[str, list[Any]]:
    """host -> rows of a query on the node's records database (empty where it does not exist)."""
    code = (
        "import json, os, sqlite3, sys; p = sys.argv[1]; "
        "print(json.dumps(sqlite3.connect(f'file:{p}?mode=ro', uri=True).execute(sys.argv[2]).fetchall() "
        "if os.path.exists(p) else []))"
    )
    cmd = f"/usr/bin/python3 -c {json.dumps(code)} {RECORDS_DB} {json.dumps(sql)}"
    return {host: json.loads(text) for host, text in shell(sim, runner_dir, name, cmd, hosts).items()}


def sshd(sim: Sim, node: str, action: str, end_sessions: bool = False) -> None:
    """Start or stop sshd inside a sim host from the controller (its systemd, entered with nsenter). With
    end_sessions, the open SSH sessions end too (a master connection opened earlier, by ansible or by the
    health poller, would otherwise outlive sshd and keep answering)."""
    init = str(StateDir(sim.state_dir).host_record(node)["init_pid"])
    enter = ["nsenter", "-t", init, "-a", "--"]
    subprocess.run([*enter, "systemctl", action, "ssh"], check=True, timeout=60)
    if end_sessions:
        subprocess.run([*enter, "pkill", "-x", "sshd"], check=False, timeout=60)  # 1: none was open


def launch_probe(
    sim: Sim, runner_dir: Path, experiment: Mapping[str, Any], project: Path, limit: str | None = None
) -> Path:
    """`experiment` in a project of its own (`project`: the runner package and
    experiments/<name>.yml), placed on the cluster's inventory, deployed and launched (deploy.yml, then
    launch.yml, on `limit` or every host). Returns the project."""
    name = str(experiment["name"])
    shutil.copytree(ROOT / "runner", project / "runner", ignore=shutil.ignore_patterns("__pycache__"))
    (project / "experiments").mkdir()
    (project / "experiments" / f"{name}.yml").write_text(yaml.safe_dump(dict(experiment), sort_keys=False))
    subprocess.run(
        [sys.executable, "-m", "runner", "model", "tiny"], cwd=ROOT, capture_output=True, check=True
    )
    placed = subprocess.run(
        [sys.executable, "-m", "runner", "place", "-i", str(sim.inventory), f"experiments/{name}.yml"],
        cwd=project,
        capture_output=True,
        text=True,
        check=False,
    )
    assert placed.returncode == 0, placed.stderr
    kwargs = {"limit": limit} if limit else {}
    for book, extravars in (("deploy.yml", {"edgejar_deploy_src_dir": str(project)}), ("launch.yml", {})):
        run, output = playbook(sim, runner_dir, f"{name}-{book}", book, extravars, **kwargs)
        assert run.status == "successful", (book, run.stats, run.errors(), output[-2000:])
    return project
