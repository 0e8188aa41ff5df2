"""Integration fixtures: the simulated cluster, brought up once per test session and always torn down.

The tests use their own state directory, subnet, bridge and name prefix, so that they never touch a
simulated cluster that a developer has up (`python -m runner sim up` with the defaults). They skip with
the reason when the machine cannot run it (what `python -m runner sim check` reports missing: root, tools, kernel, a cgroup layout).
"""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

ROOT = Path(__file__).resolve().parents[2]
PLAYBOOKS = Path(__file__).resolve().parent / "playbooks"

# Keep the test cluster apart from a developer's default one (10.231.42.0/24, ejbr0, prefix ej) and
# from molecule's (10.231.44.0/24). EDGEJAR_TEST_SIM_SLOT (0-9) gives parallel test sessions on one
# machine their own cluster: slot N uses 10.231.(50+N).0/24, bridge ejsbrN, prefix ejtN, repo port 8090+N.
SLOT = int(os.environ.get("EDGEJAR_TEST_SIM_SLOT", "-1"))
if not -1 <= SLOT <= 9:
    raise SystemExit(f"EDGEJAR_TEST_SIM_SLOT must be 0-9, not {SLOT}")
_SUFFIX = "" if SLOT < 0 else str(SLOT)
TEST_STATE_DIR = Path(os.environ.get("EDGEJAR_TEST_SIM_DIR", f"/var/tmp/edgejar-sim-test{_SUFFIX}"))
# Three hosts get PyTorch (inventory node_torch) and may take a training job's units; rpi2 has none, so
# a job over every node that can take one spans three (tests/integration/test_training.py).
TEST_CONFIG = f"""\
subnet: 10.231.{43 if SLOT < 0 else 50 + SLOT}.0/24
bridge: {"ejtbr0" if SLOT < 0 else f"ejsbr{SLOT}"}
prefix: ejt{_SUFFIX}
repo_port: {8081 if SLOT < 0 else 8090 + SLOT}
hosts:
  - {{name: jetson, kind: jetson, torch: true}}
  - {{name: rpi1, kind: rpi5, torch: true}}
  - {{name: rpi2, kind: rpi5}}
  - {{name: host, kind: x86, torch: true}}
"""
UP_TIMEOUT = 1800  # a first run builds the rootfs (minutes); later runs boot in seconds


@dataclass(frozen=True)
class Sim:
    state_dir: Path
    inventory: Path
    env: dict[str, str]

    def cli(self, *args: str, timeout: float = 300) -> subprocess.CompletedProcess[str]:
        return run_sim(self.env, *args, timeout=timeout)


def run_sim(env: dict[str, str], *args: str, timeout: float = 300) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "runner", "sim", *args],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
    )


def skip_reason() -> str | None:
    """Why the simulated cluster cannot run here, or None."""
    if sys.platform != "linux":
        return "the simulated cluster needs Linux"
    if os.geteuid() != 0:
        return "the simulated cluster needs root (network namespaces, mounts, cgroups, systemd-nspawn)"
    from runner.sim import doctor

    blocking = doctor.blocking(doctor.findings())  # the same findings as `python -m runner sim check`
    return "; ".join(f"{f.name}: {f.detail}" for f in blocking) or None


def sim_session(
    state_dir: Path, config_text: str, config_dir: Path, what: str, up_timeout: float = UP_TIMEOUT
) -> Iterator[Sim]:
    """A test stage's cluster (`what` names it in messages): leftovers of an aborted earlier session
    removed, `sim up` with `config_text`, the Sim while the stage runs, and `sim down` whatever happened."""
    config = config_dir / "sim.yml"
    config.write_text(config_text)
    env = {**os.environ, "EDGEJAR_SIM_DIR": str(state_dir)}
    first = run_sim(env, "down")
    if first.returncode != 0:
        pytest.fail(f"could not clean up an earlier {what}:\n{first.stderr}")
    try:
        up = run_sim(env, "up", "--config", str(config), timeout=up_timeout)
        sys.stderr.write(up.stderr)
        if up.returncode != 0:
            pytest.fail(f"`sim up` ({what}) failed (exit {up.returncode}):\n{up.stderr}")
        yield Sim(state_dir, Path(up.stdout.strip()), env)
    finally:
        down = run_sim(env, "down")
        if down.returncode != 0:
            pytest.fail(f"`sim down` ({what}) left things behind:\n{down.stderr}")


@pytest.fixture(scope="session")
def sim(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Sim]:
    reason = skip_reason()
    if reason:
        pytest.skip(reason)
    yield from sim_session(TEST_STATE_DIR, TEST_CONFIG, tmp_path_factory.mktemp("sim"), "test cluster")


@pytest.fixture(scope="session")
def provisioned_runs(sim: Sim, runner_dir: Path) -> dict[str, Any]:
    """provision.yml on the session's cluster, once for every module that needs provisioned nodes: a
    --check run on the new hosts, then two runs (the second must change nothing). Runs by name:
    `fresh_check`, `first`, `second` (tests.integration.runs.Run)."""
    from tests.integration import runs

    return {
        "fresh_check": runs.provision(sim, runner_dir, "provision-fresh-check", {}, cmdline="--check"),
        "first": runs.provision(sim, runner_dir, "provision-1", {}),
        "second": runs.provision(sim, runner_dir, "provision-2", {}),
    }


def assert_provisioned(provisioned_runs: dict[str, Any]) -> None:
    """For the modules that build on the shared provisioning: it must have succeeded."""
    first = provisioned_runs["first"]
    assert first.status == "successful", (first.stats, first.errors())


@pytest.fixture(scope="session")
def runner_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """ansible-runner's private data directory (artifacts of each run)."""
    return tmp_path_factory.mktemp("ansible-runner")


def ansible_env(state_dir: Path = TEST_STATE_DIR) -> dict[str, str]:
    """Run Ansible with the repository's ansible.cfg and the venv's tools on PATH; facts cached in the
    state directory of the cluster it runs on (`state_dir`, the session's test cluster by default)."""
    bin_dir = str(Path(sys.executable).parent)
    return {
        "ANSIBLE_CONFIG": str(ROOT / "ansible.cfg"),
        "PATH": f"{bin_dir}:{os.environ.get('PATH', '')}",
        # ansible-runner turns host-key checking off unless it is set: the tests check keys as users do.
        "ANSIBLE_HOST_KEY_CHECKING": "True",
        # Facts are cached per host name: each test cluster keeps its own cache, so that parallel
        # sessions (EDGEJAR_TEST_SIM_SLOT) and a developer's cluster never read each other's facts.
        "ANSIBLE_CACHE_PLUGIN_CONNECTION": str(state_dir / "ansible-facts"),
    }


def runner_cli(sim: Sim, *args: str) -> subprocess.CompletedProcess[str]:
    """`python -m runner ARGS` against the session's cluster, with the tests' Ansible settings."""
    return subprocess.run(
        [sys.executable, "-m", "runner", *args],
        cwd=ROOT,
        env={**sim.env, **ansible_env()},
        capture_output=True,
        text=True,
        timeout=900,
        check=False,
    )
