"""A simulated Raspberry Pi 5 with the board's arm64 userland: provisioned with the controller's
cross-built `a76` wheel, running an experiment instance.

- the host is what a Pi's userland says it is: `uname -m` aarch64, Debian architecture arm64, Python tag
  cp311, Ansible's `ansible_architecture` aarch64;
- provision.yml (base, llama) gives it the wheel key `aarch64-a76-cp311`, which the controller builds
  with Debian's aarch64 cross toolchain (no build on the node): an arm64 llama-cpp-python wheel with the
  a76 flavour's dot-product instructions, the other packages as aarch64 binary wheels from the index;
  the node installs them from the wheelhouse and imports llama_cpp;
- an experiment instance placed there runs real inference on the tiny model and records `aarch64` as
  its machine type in the node's records.
The Jetson's CUDA key still builds on a Jetson (not here: its nvcc is a stub in the sim).
"""

from __future__ import annotations

import subprocess
import time
import zipfile
from pathlib import Path
from typing import Any

import ansible_runner
import pytest

from runner.sim.cluster import ssh_command
from runner.sim.state import StateDir
from tests.integration import runs
from tests.integration.conftest import Sim, ansible_env
from tests.integration.runs import Run

KEY = "aarch64-a76-cp311"
CROSS_TASK = "Build the wheels for another architecture (cross compile, then binary wheels for the node)"
EM_AARCH64 = 0xB7  # ELF e_machine of AArch64

EXPERIMENT = {
    "name": "arm_probe",
    "mode": "isolated",
    "description": "One instance on the arm64 Pi: real inference under emulation, a few short cycles.",
    "model": "tiny",
    "n_ctx": 256,
    "max_tokens": 8,
    "cycles": 2,
    "cycle_delay_s": 1.0,
    "instances": [{"id": "arm_probe", "memory_gb": 0.5, "node": "rpi1"}],
}


def out(sim: Sim, command: str) -> str:
    cfg = StateDir(sim.state_dir).config()
    assert cfg is not None
    proc = subprocess.run(
        ssh_command(cfg, StateDir(sim.state_dir), cfg.host("rpi1"), command),
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert proc.returncode == 0, (command, proc.stderr)
    return proc.stdout.strip()


def test_the_pi_runs_the_boards_userland(arm_sim: Sim, runner_dir: Path) -> None:
    text = out(
        arm_sim, "uname -m; dpkg --print-architecture; python3 -c 'import sys; print(sys.version_info[:2])'"
    )
    assert text.splitlines() == ["aarch64", "arm64", "(3, 11)"], text
    r = ansible_runner.run(
        private_data_dir=str(runs.private_dir(runner_dir, "arm-facts")),
        host_pattern="edgejar_nodes",
        module="ansible.builtin.setup",
        module_args="filter=ansible_architecture",
        inventory=str(arm_sim.inventory),
        envvars=ansible_env(arm_sim.state_dir),
        quiet=True,
    )
    facts = {
        e["event_data"]["host"]: e["event_data"]["res"]["ansible_facts"]["ansible_architecture"]
        for e in r.events
        if e["event"] == "runner_on_ok"
    }
    assert facts == {"rpi1": "aarch64"}, (facts, r.stats)


@pytest.fixture(scope="module")
def provisioned(arm_sim: Sim, runner_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    """provision.yml --tags base,llama with a wheelhouse of its own (the key is built in this run)."""
    wheelhouse = tmp_path_factory.mktemp("arm-wheelhouse")
    run = runs.provision(
        arm_sim, runner_dir, "arm-provision", {"edgejar_llama_wheelhouse": str(wheelhouse)}, tags="base,llama"
    )
    return {"run": run, "wheelhouse": wheelhouse}


def test_provisioning_succeeds_with_the_pi_key(provisioned: dict[str, Any]) -> None:
    run: Run = provisioned["run"]
    assert run.status == "successful", (run.stats, run.errors())
    keys = run.results("Set this node's flavour and wheel key (arch-flavour-python tag)")
    assert keys["rpi1"]["ansible_facts"]["edgejar_llama_key"] == KEY, keys


def test_the_controller_cross_built_the_a76_wheel(provisioned: dict[str, Any]) -> None:
    run: Run = provisioned["run"]
    built = run.results(CROSS_TASK)
    assert set(built) == {"rpi1"}, built
    assert built["rpi1"].get("_ansible_delegated_vars", {}).get("ansible_connection") == "local", built
    wheels = sorted((provisioned["wheelhouse"] / KEY).glob("llama_cpp_python-*.whl"))
    assert [w.name for w in wheels] == ["llama_cpp_python-0.3.36-py3-none-linux_aarch64.whl"], wheels
    with zipfile.ZipFile(wheels[0]) as whl:
        lib = whl.read("llama_cpp/lib/libggml-cpu.so")
    assert lib[:4] == b"\x7fELF" and int.from_bytes(lib[18:20], "little") == EM_AARCH64
    # The others are aarch64 (or pure) binary wheels from the index, none built for x86_64.
    names = [w.name for w in (provisioned["wheelhouse"] / KEY).glob("*.whl")]
    assert any(n.startswith("numpy-") and "aarch64" in n for n in names), names
    assert not [n for n in names if "x86_64" in n], names


def test_the_pi_installed_the_wheel_and_imports_llama_cpp(arm_sim: Sim, provisioned: dict[str, Any]) -> None:
    assert provisioned["run"].status == "successful"
    record = out(arm_sim, "head -1 /opt/edgejar/wheelhouse/installed.txt")
    assert record == f"key {KEY}", record
    text = out(
        arm_sim,
        "/opt/edgejar/venv/bin/python -c 'import llama_cpp, platform; print(llama_cpp.__version__, platform.machine())'",
    )
    assert text == "0.3.36 aarch64", text


@pytest.fixture(scope="module")
def launched(
    arm_sim: Sim, runner_dir: Path, provisioned: dict[str, Any], tmp_path_factory: pytest.TempPathFactory
) -> Path:
    """The probe placed on the Pi, deployed and launched (after the provisioning)."""
    assert provisioned["run"].status == "successful"
    return runs.launch_probe(arm_sim, runner_dir, EXPERIMENT, tmp_path_factory.mktemp("arm") / "project")


def test_an_instance_runs_on_the_pi_and_records_aarch64(
    arm_sim: Sim, runner_dir: Path, launched: Path
) -> None:
    cycles: list[Any] = []
    for _ in range(60):
        cycles = runs.query(
            arm_sim,
            runner_dir,
            "arm-cycles",
            "SELECT cycle, tokens FROM cycles WHERE instance_id = 'arm_probe'",
        )["rpi1"]
        if len(cycles) >= 2:
            break
        time.sleep(5)
    assert len(cycles) >= 2 and all(tokens > 0 for _, tokens in cycles), cycles
    machine = runs.query(arm_sim, runner_dir, "arm-machine", "SELECT value FROM meta WHERE key = 'machine'")
    assert machine == {"rpi1": [["aarch64"]]}, machine
