"""Notebook kernels on the simulated cluster (docs/notebooks.md), beside a running experiment: a light
split brain from `runner up`, then playbooks/notebooks.yml (--check on the fresh cluster, twice: the
second changes nothing). Through the gateway's one URL, with its token over TLS: a kernel asking for a GPU
lands on the Jetson host, one asking for a tag on a host with that tag, one pinned to a node there, each
checked by running `socket.gethostname()` and `6*7` over the kernel's websocket channels; the kernel runs
as the unprivileged kernel user under MemoryMax and the instances' hardening. A request without the token
is refused; one nobody can satisfy gets the reason and starts nothing; node_max_kernels holds; a kernel
that allocates past its ceiling is killed (and restarted empty) while the experiment instance on the same
host keeps running (the same process). jupyter_server's own gateway client (what `jupyter lab
--gateway-url` runs) lists the kernelspecs and starts a kernel. `runner health --json` and
`runner kernels list` show kernels per node; an idle kernel is culled."""

from __future__ import annotations

import json
import os
import shutil
import socket
import ssl
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml

from runner.notebooks.client import Gateway, KernelDied, Refused
from tests.integration import runs
from tests.integration.conftest import ROOT, Sim, ansible_env, assert_provisioned

pytestmark = pytest.mark.integration

TOKEN = "it-notebooks-token-0123456789abcdef"
GATEWAY_HOST = "host"  # the coordinator (group x86)
CERT = ROOT / ".edgejar" / "notebooks" / f"{GATEWAY_HOST}.crt"
NEIGHBOUR = "split_brain_B"  # the experiment instance that shares a node with the runaway kernel


def cli(
    sim: Sim, cwd: Path, *args: str, env: dict[str, str] | None = None
) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-P", "-m", "runner", *args],  # -P: ROOT's runner, not a copy in cwd
        cwd=cwd,
        env={**os.environ, **ansible_env(), "PYTHONPATH": str(ROOT), **(env or {})},
        capture_output=True,
        text=True,
        timeout=900,
        check=False,
    )


def address(sim: Sim, node: str) -> str:
    inv = yaml.safe_load(sim.inventory.read_text())
    return next(
        h["ansible_host"] for g in inv["all"]["children"]["edgejar_nodes"]["children"].values()
        for name, h in g["hosts"].items() if name == node
    )  # fmt: skip


@pytest.fixture(scope="module")
def project(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The deployable paths with a light split brain that runs until stopped."""
    src = tmp_path_factory.mktemp("notebooks-project")
    for name in ("runner", "experiments"):
        shutil.copytree(ROOT / name, src / name, ignore=shutil.ignore_patterns("__pycache__", "*.pyc"))
    path = src / "experiments" / "split_brain.yml"
    data = yaml.safe_load(path.read_text())
    data.update({"cycles": 0, "max_tokens": 16, "n_ctx": 512, "cycle_delay_s": 2.0})
    path.write_text(yaml.safe_dump(data, sort_keys=False))
    return src


@pytest.fixture(scope="module")
def gateway(
    sim: Sim, runner_dir: Path, provisioned_runs: dict[str, Any], project: Path
) -> Iterator[dict[str, Any]]:
    assert_provisioned(provisioned_runs)
    subprocess.run(
        [sys.executable, "-m", "runner", "model", "tiny"], cwd=ROOT, capture_output=True, check=True
    )
    up = cli(sim, project, "up", "-i", str(sim.inventory), "experiments/split_brain.yml")
    assert up.returncode == 0, up.stderr[-3000:]
    token = {"edgejar_notebooks_token": TOKEN}
    try:
        check, _ = runs.playbook(sim, runner_dir, "nb-check", "notebooks.yml", token, cmdline="--check")
        first, out = runs.playbook(sim, runner_dir, "nb-1", "notebooks.yml", token)
        assert first.status == "successful", (first.stats, first.errors(), out[-3000:])
        second, _ = runs.playbook(sim, runner_dir, "nb-2", "notebooks.yml", token)
        url = f"https://{address(sim, GATEWAY_HOST)}:8888"
        tls = ssl.create_default_context(cafile=str(CERT))
        yield {"url": url, "tls": tls, "gw": Gateway(url, tls, TOKEN), "check": check, "second": second}
    finally:
        gone, _ = runs.playbook(
            sim, runner_dir, "nb-absent", "notebooks.yml", {**token, "edgejar_notebooks_state": "absent"}
        )
        down = cli(sim, project, "down", "-i", str(sim.inventory))
        assert gone.status == "successful", (gone.stats, gone.errors())
        assert down.returncode == 0, down.stderr[-3000:]


def kernel_units(sim: Sim, runner_dir: Path, name: str) -> dict[str, list[str]]:
    """host -> its running kernel units' ids."""
    out = runs.shell(
        sim, runner_dir, name,
        "systemctl list-units --plain --no-legend --state=active 'edgejar-kernel-*.service' | cut -d' ' -f1",
    )  # fmt: skip
    return {
        h: sorted(u.removeprefix("edgejar-kernel-").removesuffix(".service") for u in t.split())
        for h, t in out.items()
    }


def where(sim: Sim, runner_dir: Path, kid: str) -> str:
    found = [h for h, ids in kernel_units(sim, runner_dir, f"where-{kid[:8]}").items() if kid in ids]
    assert len(found) == 1, found
    return found[0]


def hostname_and_answer(gw: Gateway, kid: str) -> tuple[str, str]:
    name = gw.execute(kid, "import socket\nsocket.gethostname()")
    answer = gw.execute(kid, "6*7")
    assert name.error is None and answer.error is None, (name, answer)
    return str(name.result).strip("'"), str(answer.result)


def test_the_gateway_is_idempotent_and_checks(gateway: dict[str, Any]) -> None:
    assert gateway["check"].status == "successful", (gateway["check"].stats, gateway["check"].errors())
    assert gateway["second"].status == "successful"
    assert not gateway["second"].stats.get("changed"), gateway["second"].stats


@pytest.mark.parametrize(
    ("spec", "env", "expect"),
    [
        ("edgejar-gpu", {}, {"jetson"}),
        ("edgejar", {"KERNEL_EDGEJAR_GPU": "true"}, {"jetson"}),
        ("edgejar-tag-rpi5", {}, {"rpi1", "rpi2"}),
        ("edgejar", {"KERNEL_EDGEJAR_TAGS": "coordinator"}, {"host"}),
        ("edgejar-node-rpi2", {}, {"rpi2"}),
        ("edgejar", {"KERNEL_EDGEJAR_NODE": "rpi1"}, {"rpi1"}),
    ],
)
def test_a_kernel_lands_where_asked_and_runs_a_cell_over_tls(
    sim: Sim, runner_dir: Path, gateway: dict[str, Any], spec: str, env: dict[str, str], expect: set[str]
) -> None:
    gw: Gateway = gateway["gw"]
    kid = gw.start(spec, env)
    try:
        host, answer = hostname_and_answer(gw, kid)
        node = where(sim, runner_dir, kid)
        assert answer == "42" and node in expect and host == node  # the simulated hosts' names are the nodes'
        unit = f"edgejar-kernel-{kid}.service"
        shown = runs.shell(sim, runner_dir, f"unit-{kid[:8]}",
                           f"systemctl show -p User,MemoryMax,NoNewPrivileges,ProtectSystem,ActiveState {unit}"
                           " --no-pager 2>/dev/null || true")  # fmt: skip
        props = next(t for t in shown.values() if "ActiveState=active" in t)
        assert (
            "User=edgejar-nb" in props and "NoNewPrivileges=yes" in props and "ProtectSystem=strict" in props
        )
        assert f"MemoryMax={1024 * 2**20}" in props, props
    finally:
        gw.stop(kid)


def test_without_the_token_nothing_is_answered(gateway: dict[str, Any]) -> None:
    for token in (None, "not-the-token-0123456789abcdef"):
        with pytest.raises(Refused) as err:
            Gateway(gateway["url"], gateway["tls"], token).kernelspecs()
        assert err.value.status in (401, 403)
        with pytest.raises(Refused):
            Gateway(gateway["url"], gateway["tls"], token).start("edgejar")


def test_a_request_nobody_can_satisfy_gets_the_reason_and_starts_nothing(
    sim: Sim, runner_dir: Path, gateway: dict[str, Any]
) -> None:
    gw: Gateway = gateway["gw"]
    before = kernel_units(sim, runner_dir, "none-before")
    cases = [
        ({"KERNEL_EDGEJAR_NODE": "nope"}, 400, "KERNEL_EDGEJAR_NODE: unknown node 'nope'"),
        ({"KERNEL_EDGEJAR_TAGS": "tpu"}, 400, "no node has tag(s) tpu"),
        ({"KERNEL_EDGEJAR_GPU_MEMORY_GB": "500"}, 409, "jetson: needs 500 GB GPU memory"),
        ({"KERNEL_EDGEJAR_MEMORY_GB": "0.5", "KERNEL_EDGEJAR_NODE": "rpi1", "KERNEL_EDGEJAR_GPU": "1"}, 409,
         "rpi1: needs a GPU; rpi1 has none"),
    ]  # fmt: skip
    for env, status, reason in cases:
        with pytest.raises(Refused) as err:
            gw.start("edgejar", env)
        assert err.value.status == status and reason in str(err.value), str(err.value)
    assert kernel_units(sim, runner_dir, "none-after") == before
    assert gw.kernels() == []
    refused = cli(sim, ROOT, "kernels", "-i", str(sim.inventory), "start", "--node", "nope",
                  env={"EDGEJAR_NOTEBOOKS_TOKEN": TOKEN})  # fmt: skip
    assert refused.returncode == 2 and "unknown node 'nope'" in refused.stderr, refused.stderr


def test_node_max_kernels_holds(gateway: dict[str, Any]) -> None:
    gw: Gateway = gateway["gw"]
    started = [gw.start("edgejar-node-rpi2") for _ in range(2)]  # edgejar_notebooks_max_kernels: 2
    try:
        with pytest.raises(Refused) as err:
            gw.start("edgejar-node-rpi2")
        assert err.value.status == 409 and "rpi2 is full: 2/2 kernels" in str(err.value), str(err.value)
        other = gw.start("edgejar-tag-rpi5")  # the tag's other host still has room
        started.append(other)
        assert hostname_and_answer(gw, other)[1] == "42"
    finally:
        for kid in started:
            gw.stop(kid)


def test_a_kernel_past_its_ceiling_is_killed_and_the_experiment_beside_it_runs_on(
    sim: Sim, runner_dir: Path, gateway: dict[str, Any]
) -> None:
    gw: Gateway = gateway["gw"]
    node = next(
        e["node"]
        for es in runs.placement(sim, "edgejar_instances").values()
        for e in es
        if e["id"] == NEIGHBOUR
    )
    unit = f"edgejar-instance@{NEIGHBOUR}.service"

    def neighbour_pid() -> str:
        out = runs.shell(sim, runner_dir, f"pid-{time.monotonic_ns()}",
                         f"systemctl show -p MainPID,ActiveState {unit}", node)  # fmt: skip
        assert "ActiveState=active" in out[node], out
        return out[node]

    before = neighbour_pid()
    kid = gw.start("edgejar", {"KERNEL_EDGEJAR_NODE": node, "KERNEL_EDGEJAR_MEMORY_GB": "0.25"})
    try:
        assert gw.execute(kid, "x = 1\nx").result == "1"
        with pytest.raises(KernelDied):
            gw.execute(
                kid, "big = bytearray(600 * 2**20)\nbig[::4096] = b'x' * len(big[::4096])", timeout_s=120
            )
        deadline = time.monotonic() + 60
        while True:  # the gateway restarts it on its node, empty
            try:
                cell = gw.execute(kid, "'x' in dir()", timeout_s=20)
                break
            except Exception:
                if time.monotonic() > deadline:
                    raise
                time.sleep(2)
        assert cell.result == "False"
        assert where(sim, runner_dir, kid) == node
        assert neighbour_pid() == before  # the experiment's process never noticed
    finally:
        gw.stop(kid)


def test_jupyter_servers_gateway_client_lists_specs_and_starts_a_kernel(
    gateway: dict[str, Any], tmp_path: Path
) -> None:
    """What `jupyter lab --gateway-url=...` runs: a local jupyter_server whose kernels live behind the gateway.
    Its GatewayClient passes ca_certs to the connection only with a client certificate, so the fetched
    certificate is trusted through SSL_CERT_FILE (docs/notebooks.md)."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    local_token = "local-token-0123456789"
    argv = [str(Path(sys.executable).parent / "jupyter"), "server", "--no-browser", "--allow-root",
            "--ServerApp.ip=127.0.0.1", f"--ServerApp.port={port}", f"--IdentityProvider.token={local_token}",
            f"--gateway-url={gateway['url']}", f"--GatewayClient.auth_token={TOKEN}",
            f"--ServerApp.root_dir={tmp_path}"]  # fmt: skip
    env = {**os.environ, "SSL_CERT_FILE": str(CERT), "JUPYTER_CONFIG_DIR": str(tmp_path / "cfg"),
           "JUPYTER_DATA_DIR": str(tmp_path / "data"), "JUPYTER_RUNTIME_DIR": str(tmp_path / "run")}  # fmt: skip
    server = subprocess.Popen(argv, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    try:
        local = Gateway(f"http://127.0.0.1:{port}", None, local_token)
        deadline = time.monotonic() + 60
        while True:
            try:
                specs = local.kernelspecs()
                break
            except Exception:
                if time.monotonic() > deadline or server.poll() is not None:
                    raise
                time.sleep(0.5)
        assert {"edgejar", "edgejar-gpu", "edgejar-node-jetson"} <= set(specs)
        kid = local.start("edgejar-node-jetson")
        try:
            assert hostname_and_answer(local, kid)[1] == "42"
            assert kid in {k["id"] for k in gateway["gw"].kernels()}  # the kernel is the gateway's
        finally:
            local.stop(kid)
    finally:
        server.terminate()
        server.wait(timeout=30)


def test_health_and_runner_kernels_show_kernels_per_node(sim: Sim, gateway: dict[str, Any]) -> None:
    gw: Gateway = gateway["gw"]
    kid = gw.start("edgejar-node-host")
    try:
        assert hostname_and_answer(gw, kid)[1] == "42"
        health = cli(
            sim, ROOT, "health", "-i", str(sim.inventory), "--json", env={"EDGEJAR_NOTEBOOKS_TOKEN": TOKEN}
        )
        nodes = {n["node"]: n for n in json.loads(health.stdout)["nodes"]}
        k = nodes["host"]["kernels"]
        assert k["count"] == 1 and k["memory_bytes"] > 0 and k["items"][0]["id"] == kid, k
        assert k["items"][0]["idle_s"] is not None  # from the gateway, with the token
        assert nodes["rpi1"]["kernels"]["count"] == 0
        listed = cli(sim, ROOT, "kernels", "-i", str(sim.inventory), "--json", "list",
                     env={"EDGEJAR_NOTEBOOKS_TOKEN": TOKEN})  # fmt: skip
        assert listed.returncode == 0, listed.stderr
        row = next(r for r in json.loads(listed.stdout) if r["id"] == kid)
        assert row["node"] == "host" and row["memory_max_bytes"] == 1024 * 2**20 and row["idle_s"] is not None
        stopped = cli(sim, ROOT, "kernels", "-i", str(sim.inventory), "stop", kid,
                      env={"EDGEJAR_NOTEBOOKS_TOKEN": TOKEN})  # fmt: skip
        assert stopped.returncode == 0, stopped.stderr
        assert kid not in {k["id"] for k in gw.kernels()}
    finally:
        if kid in {k["id"] for k in gw.kernels()}:
            gw.stop(kid)


def test_an_idle_kernel_is_culled(sim: Sim, runner_dir: Path, gateway: dict[str, Any]) -> None:
    quick_cull = {"edgejar_notebooks_token": TOKEN, "edgejar_notebooks_cull_idle_s": 6,
                  "edgejar_notebooks_cull_interval_s": 2}  # fmt: skip
    run, out = runs.playbook(sim, runner_dir, "nb-cull", "notebooks.yml", quick_cull)
    assert run.status == "successful", (run.stats, out[-2000:])
    gw: Gateway = gateway["gw"]
    kid = gw.start("edgejar-node-rpi1")
    assert hostname_and_answer(gw, kid)[1] == "42"
    deadline = time.monotonic() + 60
    while kid in {k["id"] for k in gw.kernels()}:
        assert time.monotonic() < deadline, "the idle kernel was not culled"
        time.sleep(2)
    assert kid not in kernel_units(sim, runner_dir, "culled")["rpi1"]


def test_an_unreachable_node_is_left_out_and_a_pinned_request_says_why(
    sim: Sim, gateway: dict[str, Any]
) -> None:
    """sshd stopped on rpi2 (its open sessions ended): a kernel for tag rpi5 still starts, on rpi1 (placed
    again without rpi2 if rpi2 was chosen first); one pinned to rpi2 is refused with the SSH failure."""
    gw: Gateway = gateway["gw"]
    runs.sshd(sim, "rpi2", "stop", end_sessions=True)
    try:
        kid = gw.start("edgejar-tag-rpi5")
        try:
            assert hostname_and_answer(gw, kid) == ("rpi1", "42")
        finally:
            gw.stop(kid)
        with pytest.raises(Refused) as err:
            gw.start("edgejar-node-rpi2")
        text = str(err.value)
        assert err.value.status == 409 and "ssh failed" in text and "rpi2 is unavailable" in text, text
    finally:
        runs.sshd(sim, "rpi2", "start")
    kid = gw.start("edgejar-node-rpi2")  # back: the gateway reconnects
    try:
        assert hostname_and_answer(gw, kid) == ("rpi2", "42")
    finally:
        gw.stop(kid)
