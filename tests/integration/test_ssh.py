"""roles/edgejar_ssh and playbooks/bootstrap.yml on the simulated cluster's four hosts, over real SSH.

Everything here runs for real except the first-contact password login of the bootstrap (`--ask-pass`):
the sim hosts take keys only, so the bootstrap is run where its key is already installed.
"""

from __future__ import annotations

import subprocess
from pathlib import Path
from typing import Any

import ansible_runner
import pytest
import yaml

from tests.integration.conftest import PLAYBOOKS, ROOT, Sim, ansible_env
from tests.integration.runs import Run, private_dir

pytestmark = pytest.mark.integration

HOSTS = ("jetson", "rpi1", "rpi2", "host")


def env(runner_dir: Path) -> dict[str, str]:
    # A private fact cache: host keys must come from these hosts, not from a cache of same-named ones.
    return {**ansible_env(), "ANSIBLE_CACHE_PLUGIN_CONNECTION": str(runner_dir / "ssh-facts")}


def play(sim: Sim, runner_dir: Path, name: str, playbook: Path, extravars: dict[str, Any], **kw: Any) -> Run:
    r = ansible_runner.run(
        private_data_dir=str(private_dir(runner_dir, name)),
        project_dir=str(playbook.parent),
        playbook=playbook.name,
        inventory=str(sim.inventory),
        envvars=env(runner_dir),
        extravars=extravars,
        quiet=True,
        **kw,
    )
    return Run.of(r)


def role(sim: Sim, runner_dir: Path, name: str, extravars: dict[str, Any], **kw: Any) -> Run:
    return play(sim, runner_dir, name, PLAYBOOKS / "ssh_role.yml", extravars, **kw)


def keygen(path: Path, comment: str) -> str:
    subprocess.run(
        ["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-C", comment, "-f", str(path)], check=True
    )
    return path.with_suffix(".pub").read_text().strip()


def ssh(sim: Sim, key: Path, address: str, command: str) -> subprocess.CompletedProcess[str]:
    """A login as the sim user with only `key`, host key checked against the sim's known_hosts."""
    return subprocess.run(
        [
            "ssh",
            "-i",
            str(key),
            "-o",
            "IdentitiesOnly=yes",
            "-o",
            "BatchMode=yes",
            "-o",
            f"UserKnownHostsFile={sim.state_dir / 'known_hosts'}",
            "-o",
            "StrictHostKeyChecking=yes",
            f"edgejar@{address}",
            command,
        ],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


def sim_key(sim: Sim) -> str:
    return next(sim.state_dir.glob("ssh/*.pub")).read_text().strip()


def address_of(sim: Sim, host: str) -> str:
    data = yaml.safe_load(sim.inventory.read_text())
    for group in data["all"]["children"]["edgejar_nodes"]["children"].values():
        if host in group["hosts"]:
            return str(group["hosts"][host]["ansible_host"])
    raise KeyError(host)


@pytest.fixture(scope="module")
def keys(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    d = tmp_path_factory.mktemp("ssh-keys")
    return {"dir": d, "k1": keygen(d / "k1", "test-k1"), "k2": keygen(d / "k2", "test-k2")}


@pytest.fixture(scope="module")
def with_key(sim: Sim, runner_dir: Path, keys: dict[str, Any]) -> tuple[Run, Run, Run]:
    """k1 added on all hosts with key-only sshd: --check first, then twice."""
    extravars = {"edgejar_ssh_authorized_keys": [keys["k1"]], "edgejar_ssh_disable_password_auth": True}
    return (
        role(sim, runner_dir, "ssh-check", extravars, cmdline="--check"),
        role(sim, runner_dir, "ssh-1", extravars),
        role(sim, runner_dir, "ssh-2", extravars),
    )


def test_defaults_change_nothing_and_keep_known_hosts(sim: Sim, runner_dir: Path) -> None:
    before = (sim.state_dir / "known_hosts").read_text()
    run = role(sim, runner_dir, "ssh-defaults", {})
    assert run.status == "successful", (run.stats, run.failures())
    assert set(run.stats["ok"]) == set(HOSTS)
    assert not any(run.stats.get("changed", {}).values()), run.stats
    # The sim's known_hosts is the file the connection checks: every key was already there.
    assert (sim.state_dir / "known_hosts").read_text() == before


def test_key_installed_and_login_works(
    with_key: tuple[Run, Run, Run], sim: Sim, keys: dict[str, Any]
) -> None:
    check, first, _ = with_key
    assert check.status == "successful", (check.stats, check.failures())
    assert first.status == "successful", (first.stats, first.failures())
    for host in HOSTS:
        out = ssh(sim, keys["dir"] / "k1", address_of(sim, host), "cat ~/.ssh/authorized_keys; sudo sshd -T")
        assert out.returncode == 0, (host, out.stderr)
        assert keys["k1"] in out.stdout and sim_key(sim) in out.stdout, (host, out.stdout)
        assert "passwordauthentication no" in out.stdout and "kbdinteractiveauthentication no" in out.stdout


def test_second_run_changes_nothing(with_key: tuple[Run, Run, Run]) -> None:
    _, _, second = with_key
    assert second.status == "successful", (second.stats, second.failures())
    assert not any(second.stats.get("changed", {}).values()), second.stats["changed"]


def test_exclusive_removes_other_keys(
    with_key: tuple[Run, Run, Run], sim: Sim, runner_dir: Path, keys: dict[str, Any]
) -> None:
    run = role(
        sim,
        runner_dir,
        "ssh-exclusive",
        {
            "edgejar_ssh_authorized_keys": [sim_key(sim), keys["k2"]],
            "edgejar_ssh_authorized_keys_exclusive": True,
        },
        limit="rpi1",
    )
    assert run.status == "successful", (run.stats, run.failures())
    address = address_of(sim, "rpi1")
    assert ssh(sim, keys["dir"] / "k2", address, "true").returncode == 0
    assert ssh(sim, keys["dir"] / "k1", address, "true").returncode != 0  # k1 was removed


def test_exclusive_without_ansibles_key_is_refused(
    with_key: tuple[Run, Run, Run], sim: Sim, runner_dir: Path, keys: dict[str, Any]
) -> None:
    run = role(
        sim,
        runner_dir,
        "ssh-exclusive-lockout",
        {"edgejar_ssh_authorized_keys": [keys["k2"]], "edgejar_ssh_authorized_keys_exclusive": True},
        limit="rpi2",
    )
    assert run.status == "failed"
    msg = run.failures()["rpi2"]["msg"]
    assert "rpi2" in msg and "lock" in msg, msg


def test_bad_key_is_refused(sim: Sim, runner_dir: Path) -> None:
    run = role(
        sim,
        runner_dir,
        "ssh-badkey",
        {"edgejar_ssh_authorized_keys": ["ssh-ed25519 not-base64"]},
        limit="rpi2",
    )
    assert run.status == "failed"
    msg = run.failures()["rpi2"]["msg"]
    assert "rpi2" in msg and "edgejar_ssh_authorized_keys[0]" in msg, msg


def test_bootstrap_trusts_new_hosts_only_on_request(sim: Sim, runner_dir: Path, tmp_path: Path) -> None:
    known = tmp_path / "known_hosts"
    extravars = {
        "edgejar_ssh_known_hosts_file": str(known),
        "edgejar_ssh_controller_key": str(tmp_path / "ctl" / "id_ed25519"),
    }
    bootstrap = ROOT / "playbooks" / "bootstrap.yml"
    refused = play(sim, runner_dir, "ssh-boot-refused", bootstrap, extravars)
    assert refused.status == "failed"
    failed = refused.failures()
    assert set(failed) == set(HOSTS), failed
    assert "edgejar_ssh_trust_new_hosts=true" in failed["rpi1"]["msg"], failed["rpi1"]
    assert (tmp_path / "ctl" / "id_ed25519.pub").exists()  # the controller key was made first

    trusted = play(sim, runner_dir, "ssh-boot", bootstrap, {**extravars, "edgejar_ssh_trust_new_hosts": True})
    assert trusted.status == "successful", (trusted.stats, trusted.failures())
    # Scanned keys are the hosts' real keys: the same lines `sim up` wrote from the key files.
    assert sorted(known.read_text().splitlines()) == sorted(
        (sim.state_dir / "known_hosts").read_text().splitlines()
    )
    for host in HOSTS:
        assert ssh(sim, tmp_path / "ctl" / "id_ed25519", address_of(sim, host), "true").returncode == 0, host
    again = play(sim, runner_dir, "ssh-boot-2", bootstrap, extravars)  # trusted now: no flag needed
    assert again.status == "successful", (again.stats, again.failures())
    assert not any(again.stats.get("changed", {}).values()), again.stats["changed"]
