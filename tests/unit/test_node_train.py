"""The node half of a torch_distributed job that needs no torch: the torchrun command line and the
environment built from the unit entries `place` writes, and the gloo interface taken from the route to
the rendezvous address. `ip` runs for real where this machine can answer (its loopback); the routes of a
cluster the unit tests do not have are given as `ip -j` would print them. torch itself is not installed
here: running the ranks is for the simulated cluster (not built yet, issue 14)."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from runner.cli import main
from runner.errors import InputError
from runner.node import records, train
from tests.unit.test_training_plan import training_entries, write_job


def fake_ip(routes: dict[str, dict[str, Any]], links: dict[str, str]) -> Any:
    """`ip -j route get ADDR` and `ip -j addr show to ADDR` answered from the given tables."""

    def run(argv: list[str], **_: Any) -> subprocess.CompletedProcess[str]:
        addr = argv[-1]
        if argv[2] == "route":
            out: list[dict[str, Any]] = [{"dst": addr, **routes[addr]}] if addr in routes else []
        else:
            out = [{"ifname": links[addr]}] if addr in links else []
        return subprocess.CompletedProcess(argv, 0, json.dumps(out), "")

    return run


def test_each_node_runs_torchrun_for_its_unit_of_the_placed_job(project: Path, capsys: Any) -> None:
    assert main(["place", str(write_job(project))]) == 0
    capsys.readouterr()
    units = {node: entries[0] for node, entries in training_entries(project).items() if entries}
    assert len(units) == 3
    host = next(e for e in units.values() if e["unit_index"] == 0)
    rdzv = host["address"]
    for node, entry in units.items():
        on_host = node == host["node"]
        run = fake_ip(
            {
                rdzv: {"type": "local", "dev": "lo"}
                if on_host
                else {"dev": "eth1", "prefsrc": entry["address"]}
            },
            {rdzv: "eth1"},
        )
        argv, env = train.prepare(entry, "/opt/edgejar/venv/bin/python", Path("/opt/edgejar/app"), run)
        assert argv[:3] == ["/opt/edgejar/venv/bin/python", "-m", "torch.distributed.run"]
        assert "--nnodes=3" in argv and "--nproc-per-node=1" in argv and "--rdzv-backend=c10d" in argv
        assert f"--rdzv-endpoint={rdzv}:29500" in argv and "--rdzv-id=mlp" in argv
        assert f"--local-addr={entry['address']}" in argv  # never the host name (127.0.1.1 on Debian)
        assert argv[-3:] == ["/opt/edgejar/app/experiments/train_mlp.py", "--steps", "50"]
        assert env["GLOO_SOCKET_IFNAME"] == "eth1"  # on the rendezvous node too: the address's interface
        assert env["EDGEJAR_TRAINING_BACKEND"] == "gloo" and env["EDGEJAR_TRAINING_UNIT"] == entry["id"]
        # the default timeouts: a missing node is given up on after 300 s, a silent peer after 300 s
        is_host = "true" if on_host else "false"
        assert f"--rdzv-conf=is_host={is_host},join_timeout=300" in argv
        assert env["EDGEJAR_TRAINING_TIMEOUT_S"] == "300"


def test_the_job_file_timeouts_reach_torchrun_and_the_ranks(project: Path, capsys: Any) -> None:
    assert main(["place", str(write_job(project, join_timeout_s=20, collective_timeout_s=45))]) == 0
    capsys.readouterr()
    entry = next(e[0] for e in training_entries(project).values() if e)
    argv = train.command(entry, "python", Path("/app"))
    assert any(a.startswith("--rdzv-conf=") and a.endswith(",join_timeout=20") for a in argv), argv
    assert train.environment(entry, "eth1", {})["EDGEJAR_TRAINING_TIMEOUT_S"] == "45"


def test_a_module_entry_point_runs_with_dash_m() -> None:
    entry = {"id": "j-0", "experiment": "j", "address": "10.0.0.2", "nnodes": 1, "nproc_per_node": 2,
             "rdzv_endpoint": "10.0.0.2:29500", "backend": "gloo", "max_restarts": 0,
             "module": "mypkg.train", "args": ["--lr", "0.1"]}  # fmt: skip
    assert train.command(entry, "python", Path("/app"))[-4:] == ["-m", "mypkg.train", "--lr", "0.1"]
    with pytest.raises(InputError, match="missing rdzv_endpoint"):
        train.command({**entry, "rdzv_endpoint": ""}, "python", Path("/app"))


def test_loopback_is_refused_for_a_job_over_nodes_with_the_reason() -> None:
    run = fake_ip({"10.0.0.9": {"dev": "lo"}}, {})
    with pytest.raises(InputError, match="no interface reaches the rendezvous address 10.0.0.9"):
        train.gloo_interface("10.0.0.9", 2, run)
    # This machine's real loopback: fine for a one-node job, refused for two.
    assert train.gloo_interface("127.0.0.1", 1) == "lo"
    with pytest.raises(InputError, match="on loopback here; a job over 2 nodes needs the cluster address"):
        train.gloo_interface("127.0.0.1", 2)


def node_train(config: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "runner.node", "train", "--config", str(config), "--print"],
        capture_output=True, text=True, check=False,
    )  # fmt: skip


def test_the_node_command_prints_the_plan_or_exits_2_with_the_reason(tmp_path: Path) -> None:
    entry = {"id": "solo-0", "experiment": "solo", "address": "127.0.0.1", "nnodes": 1, "nproc_per_node": 1,
             "rdzv_endpoint": "127.0.0.1:29500", "backend": "gloo", "max_restarts": 1,
             "entry": "experiments/t.py", "args": []}  # fmt: skip
    config = tmp_path / "solo-0.json"
    config.write_text(json.dumps(entry))
    out = node_train(config)
    assert out.returncode == 0, out.stderr
    shown = json.loads(out.stdout)
    assert (
        shown["env"]["GLOO_SOCKET_IFNAME"] == "lo"
        and shown["argv"][-1] == "/opt/edgejar/app/experiments/t.py"
    )
    config.write_text(json.dumps({**entry, "nnodes": 2}))
    refused = node_train(config)
    assert refused.returncode == 2 and "a job over 2 nodes needs the cluster address" in refused.stderr
    config.write_text("[1, 2]")
    assert node_train(config).returncode == 2
    # a data path the unit cannot read is bad input (exit 2: not restarted), named
    config.write_text(json.dumps({**entry, "data": str(tmp_path / "missing.pt")}))
    missing = node_train(config)
    assert missing.returncode == 2 and f"data {tmp_path / 'missing.pt'} does not exist" in missing.stderr
    (tmp_path / "rows.pt").write_bytes(b"any")
    config.write_text(json.dumps({**entry, "data": str(tmp_path / "rows.pt")}))
    present = node_train(config)
    assert present.returncode == 0 and json.loads(present.stdout)["env"]["EDGEJAR_TRAINING_DATA"] == str(
        tmp_path / "rows.pt"
    )


# A stand-in for torchrun (no torch here): writes the error torchrun's agent failed with into
# TORCHELASTIC_ERROR_FILE as its @record does (or nothing), then exits 1.
CHILD = """
import json, os, sys
if sys.argv[1]:
    with open(os.environ["TORCHELASTIC_ERROR_FILE"], "w") as fp:
        json.dump({"message": {"message": sys.argv[1], "extraInfo": {}}}, fp)
sys.exit(1)
"""


@pytest.mark.parametrize(
    ("error", "status"),
    [
        ("RendezvousTimeoutError: ", train.GAVE_UP),  # a node missing past the join timeout
        ("RendezvousConnectionError: The connection to the C10d store has failed.", train.GAVE_UP),
        ("RendezvousClosedError: ", train.GAVE_UP),  # a peer shut the job's rendezvous down
        ("DistStoreError: wait timeout after 60000ms", 1),  # the store's agent restarted: systemd retries
        ("", 1),  # no error file: a plain failure
    ],
)
def test_a_job_that_cannot_form_is_given_up_and_not_restarted(
    tmp_path: Path, error: str, status: int
) -> None:
    """torchrun failing because the job could not form ends the unit with GAVE_UP (RestartPreventExitStatus)
    and a recorded reason; any other failure is the plain one that systemd restarts."""
    entry = {"id": "j-1", "experiment": "j", "address": "10.0.0.2", "nnodes": 2, "nproc_per_node": 1,
             "rdzv_endpoint": "10.0.0.1:29500", "backend": "gloo", "max_restarts": 0,
             "entry": "experiments/j.py", "data_dir": str(tmp_path), "join_timeout_s": 20}  # fmt: skip
    env = train.environment(entry, "lo", {"PATH": "/usr/bin"})
    assert train.run(entry, [sys.executable, "-c", CHILD, error], env) == status
    conn = records.connect(tmp_path / train.RECORDS_FILE)
    events = [r[0] for r in conn.execute("SELECT event FROM train_events ORDER BY at")]
    reasons = [
        json.loads(r[0])["reason"]
        for r in conn.execute("SELECT detail FROM train_events WHERE event = 'gave_up'")
    ]
    conn.close()
    assert events[:2] == ["launch", "exit"] and ("gave_up" in events) is (status == train.GAVE_UP), events
    if reasons:
        assert (
            "rendezvous 10.0.0.1:29500 (join timeout 20 s" in reasons[0] and error.split(":")[0] in reasons[0]
        )


def test_the_wrapper_tells_systemd_it_started_only_under_systemd(tmp_path: Path) -> None:
    """Type=notify: READY=1 on the unit's NOTIFY_SOCKET (a path, or an abstract name with @); nothing
    without one (a run by hand)."""
    assert train.notify_ready({}) is False
    for address in (str(tmp_path / "notify"), f"@edgejar-test-{os.getpid()}"):
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        sock.bind("\0" + address[1:] if address.startswith("@") else address)
        sock.settimeout(5)
        try:
            assert train.notify_ready({"NOTIFY_SOCKET": address}) is True
            assert sock.recv(64) == b"READY=1"
        finally:
            sock.close()
