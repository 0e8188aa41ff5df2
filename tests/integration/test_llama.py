"""roles/edgejar_llama on the simulated cluster: wheels built once per key, installed from the wheelhouse.

Two package sets, each in its own controller-side wheelhouse (a temporary directory):

- a tiny pure-Python sdist made here (`ejprobe`, whose in-tree build backend writes the name of the
  machine that built it into the module): the build path for real, without compiling llama.cpp on the
  sim (that takes many minutes). The Pis get their own key (flavour a76), the Jetson and the x86 host
  share the controller's (flavour cpu): rpi1 builds for the Pis, the controller for the others, and
  every node installs from the wheelhouse;
- the real node runtime (llama-cpp-python 0.3.36 and the rest of edgejar_llama_packages), built by the
  controller (from pip's cache and package index here) and installed offline on all four hosts.

The sim hosts are x86_64 and their "Jetson" has a stub nvcc: a CUDA build cannot run there, so every
run forces CPU flavours (a sim limitation; the real default for a Jetson is cuda87).
"""

from __future__ import annotations

import hashlib
import io
import json
import tarfile
from pathlib import Path
from typing import Any

import ansible_runner
import pytest

from tests.conftest import LLAMA_FILTERS, ROOT, load_module
from tests.integration.conftest import PLAYBOOKS, Sim, ansible_env
from tests.integration.runs import Run, private_dir

pytestmark = pytest.mark.integration

HOSTS = {"jetson", "rpi1", "rpi2", "host"}
BUILD_TASK = "Build the wheels with pip wheel (the log stays in the build directory)"
INSTALL_TASK = "Install the packages into the node venv from the node's wheels (offline)"
RECORD_TASK = "Write the install record"
# Sim limitation: the simulated Jetson's nvcc is a stub and every host is x86_64, so no CUDA or Cortex-A76
# build can run; the Pis keep a flavour of their own (a76) only to give them their own wheel key.
PROBE_FLAVOURS = {"jetson": "cpu", "rpi": "a76", "x86": "cpu"}
PROBE_KEYS = {"jetson": "x86_64-cpu-cp311", "host": "x86_64-cpu-cp311", "rpi1": "x86_64-a76-cp311"}
PROBE_KEYS["rpi2"] = PROBE_KEYS["rpi1"]

BACKEND = '''\
"""A PEP 517 build backend with no dependencies: the wheel records the machine that built it."""
import base64, hashlib, socket, zipfile

NAME, VERSION = "ejprobe", "1.0"


def build_wheel(wheel_directory, config_settings=None, metadata_directory=None):
    info = f"{NAME}-{VERSION}.dist-info"
    files = {
        f"{NAME}.py": f"BUILT_ON = {socket.gethostname()!r}\\n",
        f"{info}/METADATA": f"Metadata-Version: 2.1\\nName: {NAME}\\nVersion: {VERSION}\\n",
        f"{info}/WHEEL": "Wheel-Version: 1.0\\nGenerator: ejprobe\\nRoot-Is-Purelib: true\\nTag: py3-none-any\\n",
    }
    record = []
    for path, text in files.items():
        digest = base64.urlsafe_b64encode(hashlib.sha256(text.encode()).digest()).rstrip(b"=").decode()
        record.append(f"{path},sha256={digest},{len(text.encode())}")
    files[f"{info}/RECORD"] = "\\n".join([*record, f"{info}/RECORD,,"]) + "\\n"
    name = f"{NAME}-{VERSION}-py3-none-any.whl"
    with zipfile.ZipFile(f"{wheel_directory}/{name}", "w") as whl:
        for path, text in files.items():
            whl.writestr(path, text)
    return name
'''
PYPROJECT = """\
[build-system]
requires = []
build-backend = "backend"
backend-path = ["."]
"""
PKG_INFO = "Metadata-Version: 2.1\nName: ejprobe\nVersion: 1.0\n"


def probe_vars(tmp: Path) -> dict[str, Any]:
    """Extra variables of the ejprobe runs: their wheelhouse and the sdist in `tmp`."""
    return {
        "edgejar_llama_wheelhouse": str(tmp / "wheelhouse"),
        "edgejar_llama_packages": ["ejprobe==1.0"],
        # The probe's own package list, unlocked (the lock is tested with a lock of the probe below).
        "edgejar_llama_lock": "",
        "edgejar_llama_build_lock": "",
        "edgejar_llama_build_sources": [str(tmp / "ejprobe-1.0.tar.gz")],
        "edgejar_llama_build_pip_args": ["--no-index"],  # the sim hosts have no package index
        "edgejar_llama_flavour_by_kind": PROBE_FLAVOURS,
        # The sim inventory pins every host to the cpu flavour; the probe needs the per-kind keys back.
        "edgejar_llama_flavour": "",
        "edgejar_llama_node_wheelhouse": "/opt/edgejar/wheelhouse-probe",
        # The probe is about the runtime's packages; PyTorch's part (the test cluster's hosts with
        # node_torch) is provisioned and used by test_training.py and molecule/edgejar_llama.
        "edgejar_llama_torch": False,
    }


def write_probe_sdist(directory: Path) -> Path:
    """ejprobe-1.0.tar.gz: an sdist that builds offline (its backend is in the sdist)."""
    path = directory / "ejprobe-1.0.tar.gz"
    with tarfile.open(path, "w:gz") as tar:
        for name, text in {"pyproject.toml": PYPROJECT, "backend.py": BACKEND, "PKG-INFO": PKG_INFO}.items():
            data = text.encode()
            member = tarfile.TarInfo(f"ejprobe-1.0/{name}")
            member.size = len(data)
            member.mode = 0o644
            tar.addfile(member, io.BytesIO(data))
    return path


def play(
    sim: Sim,
    runner_dir: Path,
    name: str,
    extravars: dict[str, Any],
    playbook: str = "llama.yml",
    **kwargs: Any,
) -> Run:
    r = ansible_runner.run(
        private_data_dir=str(private_dir(runner_dir, name)),
        project_dir=str(PLAYBOOKS),
        playbook="llama.yml",
        inventory=str(sim.inventory),
        envvars=ansible_env(),
        extravars=extravars,  # no sim variables: the sim inventory carries them
        quiet=True,
        **kwargs,
    )
    return Run.of(r)


def shell(sim: Sim, runner_dir: Path, name: str, command: str) -> dict[str, dict[str, Any]]:
    """host -> result of a shell command on every node, as root (failures included)."""
    r = ansible_runner.run(
        private_data_dir=str(private_dir(runner_dir, name)),
        host_pattern="edgejar_nodes",
        module="ansible.builtin.shell",
        module_args=command,
        inventory=str(sim.inventory),
        envvars=ansible_env(),
        extravars={"ansible_become": True},
        quiet=True,
    )
    return {
        e["event_data"]["host"]: e["event_data"]["res"]
        for e in r.events
        if e["event"] in ("runner_on_ok", "runner_on_failed")
    }


def builders(run: Run) -> dict[str, str]:
    """host whose turn ran the build -> where it ran: `controller` (delegated to localhost) or that host."""
    return {
        host: "controller"
        if res.get("_ansible_delegated_vars", {}).get("ansible_connection") == "local"
        else host
        for host, res in run.results(BUILD_TASK).items()
    }


def assert_converged(run: Run) -> None:
    assert run.status == "successful", (run.stats, run.failures())
    assert set(run.stats["ok"]) == HOSTS, run.stats
    assert not any(run.stats.get("changed", {}).values()), run.stats["changed"]


# --- the build path, with the tiny sdist -------------------------------------------------------------


@pytest.fixture(scope="session")
def probe(sim: Sim, runner_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    """Two runs with ejprobe as the only package, then what the nodes have."""
    tmp = tmp_path_factory.mktemp("llama-probe")
    write_probe_sdist(tmp)
    extravars = probe_vars(tmp)
    first = play(sim, runner_dir, "llama-probe-1", extravars)
    second = play(sim, runner_dir, "llama-probe-2", extravars)
    check = play(sim, runner_dir, "llama-probe-check", extravars, cmdline="--check")
    nodes = shell(
        sim,
        runner_dir,
        "llama-probe-nodes",
        "hostname; /opt/edgejar/venv/bin/python -c 'import ejprobe; print(ejprobe.BUILT_ON)'; "
        "ls /opt/edgejar/wheelhouse-probe",
    )
    return {"first": first, "second": second, "check": check, "nodes": nodes, "tmp": tmp}


def test_probe_keys_per_node(probe: dict[str, Any]) -> None:
    first: Run = probe["first"]
    assert first.status == "successful", (first.stats, first.failures())
    keys = first.results("Set this node's flavour and wheel key (arch-flavour-python tag)")
    assert {h: r["ansible_facts"]["edgejar_llama_key"] for h, r in keys.items()} == PROBE_KEYS


def test_probe_built_once_per_key(probe: dict[str, Any]) -> None:
    # The controller builds the key it shares with the Jetson and the x86 host (on the Jetson's turn,
    # the key's first node); rpi1 builds the Pis' key itself; rpi2 and the host build nothing.
    assert builders(probe["first"]) == {"jetson": "controller", "rpi1": "rpi1"}


def test_probe_wheels_land_in_the_wheelhouse(probe: dict[str, Any]) -> None:
    wheelhouse: Path = probe["tmp"] / "wheelhouse"
    for key in set(PROBE_KEYS.values()):
        assert sorted(p.name for p in (wheelhouse / key).iterdir()) == ["ejprobe-1.0-py3-none-any.whl"], key


def test_probe_installed_everywhere_from_the_builders_wheel(probe: dict[str, Any]) -> None:
    nodes = probe["nodes"]
    assert set(nodes) == HOSTS, nodes
    built_on = {}
    for host, res in nodes.items():
        assert res.get("rc") == 0, (host, res)
        hostname, probe_built_on, *files = res["stdout"].splitlines()
        built_on[host] = (hostname, probe_built_on)
        assert files == ["ejprobe-1.0-py3-none-any.whl", "installed.txt"], (host, files)
    # The Pis run rpi1's build; the Jetson and the host run the controller's (neither built anything).
    assert built_on["rpi2"][1] == built_on["rpi1"][0] == built_on["rpi1"][1], built_on
    assert built_on["jetson"][1] == built_on["host"][1], built_on
    assert built_on["jetson"][1] not in {name for name, _ in built_on.values()}, built_on


def test_probe_second_run_builds_nothing(probe: dict[str, Any]) -> None:
    second: Run = probe["second"]
    assert_converged(second)
    assert not second.results(BUILD_TASK)
    assert not second.results(INSTALL_TASK)


def test_probe_check_mode_changes_nothing(probe: dict[str, Any]) -> None:
    assert_converged(probe["check"])


def test_a_removed_package_is_reinstalled_without_a_build(
    probe: dict[str, Any], sim: Sim, runner_dir: Path
) -> None:
    shell(
        sim, runner_dir, "llama-probe-uninstall", "/opt/edgejar/venv/bin/python -m pip uninstall -y ejprobe"
    )
    extravars = probe_vars(probe["tmp"])
    run = play(sim, runner_dir, "llama-probe-reinstall", extravars)
    assert run.status == "successful", (run.stats, run.failures())
    assert not run.results(BUILD_TASK)
    assert set(run.results(INSTALL_TASK)) == HOSTS


def test_a_failed_build_keeps_its_log(
    probe: dict[str, Any], sim: Sim, runner_dir: Path, tmp_path: Path
) -> None:
    wheelhouse = tmp_path / "wheelhouse"
    run = play(
        sim,
        runner_dir,
        "llama-probe-fail",
        {
            **probe_vars(probe["tmp"]),
            "edgejar_llama_wheelhouse": str(wheelhouse),
            "edgejar_llama_packages": ["ejmissing==9"],
        },
        limit="rpi1,rpi2",
    )
    assert run.status == "failed", run.stats
    failed = run.failures()
    msg = failed["rpi1"]["msg"]
    assert "x86_64-a76-cp311" in msg and "ejmissing" in msg, msg
    log = wheelhouse / "logs" / "x86_64-a76-cp311.log"
    assert "ejmissing" in log.read_text(), log.read_text()
    # rpi2 was not asked to build: it fails because its key has no wheel.
    assert "has no wheel for ejmissing==9" in failed["rpi2"]["msg"], failed["rpi2"]


def test_a_locked_package_is_built_only_with_its_hash(
    probe: dict[str, Any], sim: Sim, runner_dir: Path, tmp_path: Path
) -> None:
    """With a lock, the builder takes the package with pip --require-hashes: the sdist whose sha256 the
    lock holds builds and installs; a lock with another hash fails the build, naming the package."""
    sdist = probe["tmp"] / "ejprobe-1.0.tar.gz"
    digest = hashlib.sha256(sdist.read_bytes()).hexdigest()
    runs = {}
    for name, pinned in {"good": digest, "bad": "0" * 64}.items():
        lock = tmp_path / f"{name}.txt"
        lock.write_text(
            f"# {name}\nejprobe==1.0 ; platform_machine == 'x86_64' \\\n    --hash=sha256:{pinned}\n"
        )
        extravars = {
            **probe_vars(probe["tmp"]),
            "edgejar_llama_wheelhouse": str(tmp_path / f"wheelhouse-{name}"),
            "edgejar_llama_lock": str(lock),
        }
        runs[name] = play(sim, runner_dir, f"llama-probe-lock-{name}", extravars, limit="rpi1,rpi2")
    good, bad = runs["good"], runs["bad"]
    assert good.status == "successful", (good.stats, good.failures())
    assert builders(good) == {"rpi1": "rpi1"}
    assert [p.name for p in (tmp_path / "wheelhouse-good" / "x86_64-a76-cp311").glob("*.whl")] == [
        "ejprobe-1.0-py3-none-any.whl"
    ]
    assert bad.status == "failed", bad.stats
    msg = bad.failures()["rpi1"]["msg"]
    assert "x86_64-a76-cp311" in msg, msg
    log = (tmp_path / "wheelhouse-bad" / "logs" / "x86_64-a76-cp311.log").read_text()
    assert "DO NOT MATCH THE HASHES" in log and "ejprobe" in log and digest in log, log


def test_a_package_the_lock_lacks_stops_before_any_build(
    probe: dict[str, Any], sim: Sim, runner_dir: Path, tmp_path: Path
) -> None:
    """edgejar_llama_packages changed without relocking: every node fails naming the package and the lock,
    and nothing is built."""
    lock = tmp_path / "lock.txt"
    lock.write_text(f"ejprobe==1.0 --hash=sha256:{'1' * 64}\n")
    extravars = {
        **probe_vars(probe["tmp"]),
        "edgejar_llama_wheelhouse": str(tmp_path / "wheelhouse"),
        "edgejar_llama_lock": str(lock),
        "edgejar_llama_packages": ["ejprobe==1.0", "ejother"],
    }
    run = play(sim, runner_dir, "llama-probe-unlocked", extravars, limit="rpi1,rpi2")
    assert run.status == "failed", run.stats
    for host in ("rpi1", "rpi2"):
        msg = run.failures()[host]["msg"]
        assert "ejother" in msg and str(lock) in msg and "make lock" in msg, msg
    assert not run.results(BUILD_TASK)
    assert not (tmp_path / "wheelhouse").exists()


# --- the real node runtime: llama-cpp-python from the controller's build ------------------------------


@pytest.fixture(scope="session")
def llama(sim: Sim, runner_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    """The default packages (llama-cpp-python 0.3.36 ...), all hosts on the controller's key: two runs,
    a --check run, then an import of llama_cpp on every node."""
    wheelhouse = tmp_path_factory.mktemp("llama-real") / "wheelhouse"
    # Sim limitation: no CUDA build can run on the simulated Jetson (stub nvcc, x86_64): CPU everywhere.
    extravars = {"edgejar_llama_wheelhouse": str(wheelhouse), "edgejar_llama_flavour": "cpu"}
    first = play(sim, runner_dir, "llama-real-1", extravars)
    second = play(sim, runner_dir, "llama-real-2", extravars)
    check = play(sim, runner_dir, "llama-real-check", extravars, cmdline="--check")
    nodes = shell(
        sim,
        runner_dir,
        "llama-real-import",
        "/opt/edgejar/venv/bin/python -c "
        "'import llama_cpp, numpy, yaml, psutil; print(llama_cpp.__version__, llama_cpp.llama_supports_mmap())'",
    )
    freeze = shell(
        sim,
        runner_dir,
        "llama-real-list",
        "uname -m; /opt/edgejar/venv/bin/python -c 'import platform; print(platform.python_version())'; "
        "/opt/edgejar/venv/bin/python -m pip list --format=json --disable-pip-version-check",
    )
    return {
        "first": first,
        "second": second,
        "check": check,
        "nodes": nodes,
        "freeze": freeze,
        "wheelhouse": wheelhouse,
    }


def test_llama_built_by_the_controller(llama: dict[str, Any]) -> None:
    first: Run = llama["first"]
    assert first.status == "successful", (first.stats, first.failures())
    assert builders(first) == {"jetson": "controller"}
    held = {p.name.split("-")[0].lower() for p in (llama["wheelhouse"] / "x86_64-cpu-cp311").iterdir()}
    assert {"llama_cpp_python", "numpy", "diskcache", "jinja2", "markupsafe", "pyyaml", "psutil"} <= held, (
        held
    )
    # Every node reached the install with the key's wheels on it; a node whose venv already holds these
    # exact wheels (an earlier provision in the same test session) skips the pip step itself.
    assert set(first.results(RECORD_TASK)) == HOSTS


def test_llama_cpp_imports_on_every_node(llama: dict[str, Any]) -> None:
    nodes = llama["nodes"]
    assert set(nodes) == HOSTS, nodes
    for host, res in nodes.items():
        assert res.get("rc") == 0, (host, res)
        assert res["stdout"].split() == ["0.3.36", "True"], (host, res["stdout"])


def test_llama_nodes_hold_exactly_the_locked_versions(llama: dict[str, Any]) -> None:
    """Every entry of the default lock for a node (its machine and Python) is installed at its locked
    version: the lock, not pip's resolver, chose every version."""
    filters = load_module(LLAMA_FILTERS, "edgejar_llama_filters")
    lock = (ROOT / "roles" / "edgejar_llama" / "files" / "locks" / "base.txt").read_text()
    for host, res in llama["freeze"].items():
        assert res.get("rc") == 0, (host, res)
        machine, python, listing = res["stdout"].split("\n", 2)
        env = {"platform_machine": machine, "python_full_version": python}
        wanted = dict(pin.split("==") for pin in filters.locked(lock, env))
        assert {"llama-cpp-python", "fastapi", "aiohttp", "numpy", "soupsieve"} <= set(wanted), wanted
        have = {d["name"].lower().replace("_", "-"): d["version"] for d in json.loads(listing)}
        wrong = {n: (v, have.get(n)) for n, v in wanted.items() if have.get(n) != v}
        assert not wrong, (host, wrong)


def test_llama_second_run_changes_nothing(llama: dict[str, Any]) -> None:
    assert_converged(llama["second"])
    assert not llama["second"].results(BUILD_TASK)


def test_llama_check_mode_changes_nothing(llama: dict[str, Any]) -> None:
    assert_converged(llama["check"])
