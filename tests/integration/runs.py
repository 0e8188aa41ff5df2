"""What the integration tests read from an ansible-runner run, shared by every test module."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import ansible_runner

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
        envvars=ansible_env(),
        extravars=dict(extravars),
        quiet=True,
        **kwargs,
    )
    return Run.of(r)
