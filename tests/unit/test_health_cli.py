"""`python -m runner health` end to end without the simulated cluster: nodes reached with
ansible_connection: local (the probe really runs on this machine) and a node whose SSH port refuses."""

from __future__ import annotations

import json
import os
import re
import shutil
import tempfile

import pytest

from runner.cli import main
from runner.errors import InputError
from runner.health import ssh
from runner.health.targets import Target, target_from_vars

LOCAL_INVENTORY = """\
all:
  children:
    edgejar_nodes:
      hosts:
        here:
          ansible_connection: local
          node_ram_gb: 1
          node_max_instances: 0
        away:
          ansible_host: 127.0.0.1
          ansible_port: 1
          ansible_user: nobody
          ansible_ssh_common_args: -o UserKnownHostsFile={kh} -o StrictHostKeyChecking=yes
          node_max_instances: 0
"""


@pytest.fixture
def runtime(monkeypatch):
    short = tempfile.mkdtemp(prefix="ejh-")  # control sockets need a short path
    os.chmod(short, 0o700)
    monkeypatch.setenv("XDG_RUNTIME_DIR", short)
    yield short
    shutil.rmtree(short, ignore_errors=True)


@pytest.fixture
def inv(tmp_path):
    path = tmp_path / "inventory.yml"
    kh = tmp_path / "known_hosts"
    kh.write_text("")
    path.write_text(LOCAL_INVENTORY.format(kh=kh))
    return path


def test_json_poll_of_a_local_node_and_an_unreachable_one(inv, runtime, capsys):
    rc = main(["health", "-i", str(inv), "--json", "--disk-max", "100", "--mem-max", "100"])
    doc = json.loads(capsys.readouterr().out)
    nodes = {n["node"]: n for n in doc["nodes"]}
    assert nodes["away"]["status"] == "UNAVAILABLE"  # one-shot default: grace 0
    assert re.match(r"unreachable for \d+ s \(grace 0 s\): .*refused", nodes["away"]["reasons"][0])
    assert nodes["away"]["memory"] is None
    assert nodes["here"]["memory"]["total_bytes"] > 0  # the probe ran here, for real
    assert nodes["here"]["status"] in ("HEALTHY", "DEGRADED")
    assert rc == 1  # some node unavailable


def test_only_the_selected_node_and_the_table(inv, runtime, capsys):
    main(["health", "-i", str(inv), "--node", "here"])
    out = capsys.readouterr().out
    assert "here" in out and "away" not in out
    assert out.splitlines()[1].split() == [
        "node",
        "host",
        "status",
        "ram",
        "used/total",
        "gpu",
        "instances",
        "notes",
    ]


def test_prometheus_file_is_written(inv, runtime, tmp_path, capsys):
    prom = tmp_path / "edgejar.prom"
    main(["health", "-i", str(inv), "--node", "away", "--prom", str(prom)])
    assert 'edgejar_node_up{node="away"} 0' in prom.read_text()


@pytest.mark.parametrize(
    "args",
    [
        ["--node", "nope"],
        ["--grace", "-1"],
        ["--mem-max", "150"],
        ["--prom", "metrics.txt"],
    ],
)
def test_bad_input_exits_2(inv, runtime, args, capsys):
    assert main(["health", "-i", str(inv), *args]) == 2
    assert "error:" in capsys.readouterr().err


def test_missing_inventory_exits_2(tmp_path, capsys):
    assert main(["health", "-i", str(tmp_path / "nope.yml")]) == 2


def test_target_refuses_disabled_host_key_checking():
    with pytest.raises(InputError, match="StrictHostKeyChecking=no"):
        target_from_vars("n", {"ansible_ssh_common_args": "-o StrictHostKeyChecking=no"})
    with pytest.raises(InputError, match="ansible_port"):
        target_from_vars("n", {"ansible_port": "ssh"})


def test_ssh_argv_uses_one_master_per_node(tmp_path):
    t = target_from_vars(
        "rpi1",
        {
            "ansible_host": "10.0.0.12",
            "ansible_user": "pi",
            "ansible_port": 2222,
            "ansible_ssh_private_key_file": "/k",
            "ansible_ssh_common_args": "-o UserKnownHostsFile=/kh -o StrictHostKeyChecking=yes",
        },
    )
    control = ssh.control_path(tmp_path, t)
    argv = ssh.ssh_argv(t, ["python3", "-"], control)
    joined = " ".join(argv)
    for part in (
        "ControlMaster=auto",
        f"ControlPath={control}",
        "ControlPersist=",
        "BatchMode=yes",
        "-p 2222",
    ):
        assert part in joined
    assert argv[-3:] == ["pi@10.0.0.12", "--", "python3 -"]
    assert "StrictHostKeyChecking=yes" in joined and "StrictHostKeyChecking=no" not in joined
    other = Target(node="rpi1", host="10.9.9.12", user="pi")
    assert ssh.control_path(tmp_path, other) != control  # same name, other cluster: other socket


def test_runtime_dir_refuses_a_directory_open_to_others(monkeypatch, tmp_path):
    monkeypatch.setenv("XDG_RUNTIME_DIR", str(tmp_path))
    (tmp_path / "edgejar-health").mkdir(mode=0o777)
    os.chmod(tmp_path / "edgejar-health", 0o777)
    from runner.errors import EdgejarError

    with pytest.raises(EdgejarError, match="mode 0700"):
        ssh.runtime_dir()
    os.chmod(tmp_path / "edgejar-health", 0o700)
    assert ssh.runtime_dir() == tmp_path / "edgejar-health"


@pytest.mark.parametrize("command", ["health", "monitor"])
def test_help(command, capsys):
    assert main([command, "--help"]) == 0
    assert "--grace" in capsys.readouterr().out


def test_grace_re_polls_an_unreachable_node_before_calling_it_unavailable(inv, runtime, capsys):
    rc = main(["health", "-i", str(inv), "--node", "away", "--grace", "1.5", "--json"])
    node = json.loads(capsys.readouterr().out)["nodes"][0]
    assert rc == 1 and node["status"] == "UNAVAILABLE" and not node["reachable"]
    assert re.match(r"unreachable for [12] s \(grace 1.5 s\)", node["reasons"][0])
