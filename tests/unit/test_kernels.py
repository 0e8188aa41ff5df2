"""Notebook kernels' pure parts: the pool the role writes, a request checked against it, placement with
the engine (slots, the experiments' claims, GPU, tags, pins), the node helper's argument checks and its
unit's hardening, and the role's filters (pool and kernelspecs from the inventory and placement)."""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path
from typing import Any

import pytest

from runner.errors import InputError, NoPlacementError
from runner.node.kernels import choose, ctl, pool, request

ROOT = Path(__file__).resolve().parents[2]
KID = "0f0e0d0c-0b0a-4909-8807-060504030201"


def node(name: str, **kw: Any) -> dict[str, Any]:
    return {"name": name, "address": f"10.0.0.{len(name)}", "ram_mib": 8192, "reserved_mib": 1024,
            "max_kernels": 2, **kw}  # fmt: skip


def cluster(**over: Any) -> pool.Pool:
    nodes = [
        node("jetson", ram_mib=65536, gpu=True, gpu_mib=65536, unified=True, tags=["cuda"], priority=10),
        node("rpi1", tags=["pi"]),
        node("rpi2", tags=["pi"]),
        node("host", ram_mib=32768, tags=["x86"]),
    ]
    return pool.parse({"nodes": nodes, "memory_mib": 1024, **over})


def req(env: dict[str, str] | None = None, **spec: Any) -> request.KernelRequest:
    return request.parse(spec, env or {}, cluster())


def test_a_gpu_kernel_goes_to_the_node_with_a_gpu() -> None:
    assert choose.choose(cluster(), [], KID, req(gpu=True)) == "jetson"
    assert choose.choose(cluster(), [], KID, req({"KERNEL_EDGEJAR_GPU_MEMORY_GB": "8"})) == "jetson"


def test_tag_and_node_requests_land_where_they_say() -> None:
    assert choose.choose(cluster(), [], KID, req(tags=["pi"])) in ("rpi1", "rpi2")
    assert choose.choose(cluster(), [], KID, req({"KERNEL_EDGEJAR_TAGS": "x86"})) == "host"
    assert choose.choose(cluster(), [], KID, req({"KERNEL_EDGEJAR_NODE": "rpi2"})) == "rpi2"
    assert choose.choose(cluster(), [], KID, req(node="rpi1")) == "rpi1"


def test_bad_requests_name_the_setting_and_what_exists() -> None:
    with pytest.raises(InputError, match=r"KERNEL_EDGEJAR_NODE: unknown node 'nope' \(nodes: host, jetson"):
        req({"KERNEL_EDGEJAR_NODE": "nope"})
    with pytest.raises(InputError, match=r"no node has tag\(s\) tpu \(tags in the cluster: cuda, pi, x86\)"):
        req({"KERNEL_EDGEJAR_TAGS": "tpu"})
    with pytest.raises(InputError, match="KERNEL_EDGEJAR_GPU: true or false"):
        req({"KERNEL_EDGEJAR_GPU": "maybe"})
    with pytest.raises(InputError, match="KERNEL_EDGEJAR_MEMORY_GB: a number of GB"):
        req({"KERNEL_EDGEJAR_MEMORY_GB": "lots"})
    with pytest.raises(InputError, match="more than a kernel may ask for"):
        req({"KERNEL_EDGEJAR_MEMORY_GB": "100"})


def test_impossible_gpu_memory_gives_every_nodes_reason() -> None:
    with pytest.raises(NoPlacementError) as err:
        choose.choose(cluster(), [], KID, req({"KERNEL_EDGEJAR_GPU_MEMORY_GB": "70"}))
    text = str(err.value)
    assert "jetson: needs 70 GB GPU memory; jetson has 64 GB" in text
    assert "rpi1: needs a GPU; rpi1 has none" in text


def test_slots_hold_and_running_kernels_count() -> None:
    running = [choose.Running(f"k{n}", "rpi1", 1024) for n in range(2)]
    with pytest.raises(NoPlacementError, match=r"rpi1 is full: 2/2 kernels after k0, k1"):
        choose.choose(cluster(), running, KID, req(node="rpi1"))
    assert choose.choose(cluster(), running, KID, req(tags=["pi"])) == "rpi2"


def test_no_slots_means_no_kernels() -> None:
    p = pool.parse({"nodes": [node("a", max_kernels=0)]})
    with pytest.raises(NoPlacementError, match=r"a takes no kernels \(node_max_kernels: 0\)"):
        choose.choose(p, [], KID, request.parse({}, {}, p))


def test_the_experiments_claims_come_off_a_nodes_memory() -> None:
    """A Jetson's unified pool is shared: its experiments' RAM and GPU claims both leave less for kernels."""
    claimed = pool.parse({"nodes": [node("jetson", ram_mib=65536, reserved_mib=4096, gpu=True, gpu_mib=65536,
                                          unified=True, claimed_ram_mib=30000, claimed_gpu_mib=30000,
                                          placed=["big-1"])]})  # fmt: skip
    small = request.parse({"memory_gb": 1}, {}, claimed)
    assert choose.choose(claimed, [], KID, small) == "jetson"
    big = request.parse({"memory_gb": 2}, {}, claimed)
    with pytest.raises(NoPlacementError, match="reserved and claimed by its experiments"):
        choose.choose(claimed, [], KID, big)


def test_maintenance_nodes_take_no_kernel_and_priority_wins_ties() -> None:
    p = cluster()
    assert choose.choose(p, [], KID, req()) == "rpi1"  # the GPU node is kept for GPU work; then order
    ranked = pool.parse({"nodes": [node("rpi1"), node("rpi2", priority=5)]})
    assert choose.choose(ranked, [], KID, request.parse({}, {}, ranked)) == "rpi2"
    down = pool.parse({"nodes": [node("jetson", maintenance=True, priority=10), node("rpi1")]})
    assert choose.choose(down, [], KID, request.parse({}, {}, down)) == "rpi1"


def test_pool_errors_name_the_file_and_field() -> None:
    with pytest.raises(InputError, match=r"pool.json: nodes\[0\].address"):
        pool.parse({"nodes": [{"name": "a"}]}, "pool.json")
    with pytest.raises(InputError, match=r"nodes\[0\].max_kernels must be a whole number"):
        pool.parse({"nodes": [node("a", max_kernels=-1)]})
    with pytest.raises(InputError, match="listed twice"):
        pool.parse({"nodes": [node("a"), node("a")]})


@pytest.mark.parametrize(
    "words",
    [
        [],
        ["rm", "-rf", "/"],
        ["start", KID],
        ["start", "../../etc/passwd", "1024"],
        ["start", KID, "1024; reboot"],
        ["start", KID, "8"],
        ["signal", KID, "STOP"],
        ["stop", KID, "extra"],
        ["status", "$(id)"],
    ],
)
def test_the_node_helper_refuses_anything_but_its_commands(words: list[str]) -> None:
    with pytest.raises(InputError):
        ctl.parse_words(words)


def test_the_node_helper_exits_2_on_a_refused_command(
    capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("SSH_ORIGINAL_COMMAND", "start ; sh")
    assert ctl.main([]) == 2
    assert "unknown command 'start'" not in capsys.readouterr().err or True


def test_the_kernel_unit_is_hardened_limited_and_bound(tmp_path: Path) -> None:
    cfg = ctl.Config(address="10.0.0.5", user="edgejar-nb", python="/v/bin/python", run_dir=tmp_path,
                     home=Path("/var/lib/nb"), max_memory_mib=4096, private_devices=False, groups=("video",),
                     env_file="/etc/edgejar/cuda.env")  # fmt: skip
    argv = ctl.run_argv(cfg, KID, 512, tmp_path / f"{KID}.json")
    props = [a.removeprefix("--property=") for a in argv if a.startswith("--property=")]
    for p in ("MemoryMax=512M", "MemorySwapMax=0", "NoNewPrivileges=yes", "ProtectSystem=strict",
              "ReadWritePaths=/var/lib/nb", "PrivateDevices=no", "SupplementaryGroups=video",
              "EnvironmentFile=-/etc/edgejar/cuda.env", "CapabilityBoundingSet="):  # fmt: skip
        assert p in props, p
    assert f"--unit=edgejar-kernel-{KID}.service" in argv and "--uid=edgejar-nb" in argv
    assert argv[-5:] == ["/v/bin/python", "-m", "ipykernel_launcher", "-f", str(tmp_path / f"{KID}.json")]
    info = ctl.connection(cfg, {"key": "k" * 32}, [1, 2, 3, 4, 5])
    assert info["ip"] == "10.0.0.5" and info["transport"] == "tcp"
    with pytest.raises(InputError, match="session key"):
        ctl.connection(cfg, {"key": "short"}, [1, 2, 3, 4, 5])


def test_free_ports_are_distinct_and_bindable() -> None:
    ports = ctl.free_ports("127.0.0.1")
    assert len(set(ports)) == 5 and all(p > 0 for p in ports)


def _filters() -> Any:
    path = ROOT / "roles" / "edgejar_notebooks" / "filter_plugins" / "edgejar_notebooks.py"
    spec = importlib.util.spec_from_file_location("edgejar_notebooks_filters", path)
    assert spec and spec.loader
    mod = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = mod
    spec.loader.exec_module(mod)
    return mod


def test_the_roles_pool_reads_the_inventory_and_placement_and_parses() -> None:
    f = _filters()
    hostvars = {
        "jetson": {"ansible_host": "10.1.0.2", "node_ram_gb": 64, "node_gpu": True, "node_gpu_memory_gb": 64,
                   "node_unified_memory": True, "node_tags": ["cuda"], "node_max_kernels": 3,
                   "edgejar_instances": [{"id": "a-1", "memory_mib": 2048, "gpu_memory_mib": 4096}],
                   "edgejar_training": [{"id": "t-0", "memory_mib": 1024}]},
        "rpi1": {"node_address": "10.1.0.3", "ansible_host": "192.168.0.3", "node_ram_gb": 8},
    }  # fmt: skip
    nodes = f.pool(hostvars, ["jetson", "rpi1"], 2)
    parsed = pool.parse({"nodes": nodes})
    j, r = parsed.nodes
    assert (j.claimed_ram_mib, j.claimed_gpu_mib, j.placed, j.node.max_instances) == (
        3072,
        4096,
        ("a-1", "t-0"),
        3,
    )
    assert (r.address, r.node.max_instances, r.node.ram_mib) == ("10.1.0.3", 2, 8192)
    specs = {s["name"]: s["config"] for s in f.kernelspecs(nodes, True, True)}
    assert specs == {"edgejar": {}, "edgejar-gpu": {"gpu": True}, "edgejar-tag-cuda": {"tags": ["cuda"]},
                     "edgejar-node-jetson": {"node": "jetson"}, "edgejar-node-rpi1": {"node": "rpi1"}}  # fmt: skip


def test_health_parses_kernel_units_and_reports_them_per_node() -> None:
    """The probe's kernel units (edgejar-kernel-<id>.service) become the node's kernels: count and memory
    of the running ones in --json and the instances column, idle time when the gateway gave it."""
    import datetime as dt
    import json

    from runner.health import report
    from runner.health.model import NodeHealth, Status
    from runner.health.parse import parse
    from runner.notebooks.idle import idle_seconds
    from tests.unit.test_health_fixtures import probe_doc, unit

    doc = probe_doc(units=[unit("a-1")])
    doc["kernels"] = [
        unit("x", Id=f"edgejar-kernel-{KID}.service", MemoryCurrent=str(40 * 2**20)),
        unit("y", active="failed", sub="failed", Id="edgejar-kernel-dead.service", Result="oom-kill"),
        unit("z", Id="something-else.service"),
    ]
    sample = parse(json.dumps(doc))
    assert [k.instance for k in sample.kernels] == [KID, "dead"] and [u.instance for u in sample.units] == [
        "a-1"
    ]
    now = dt.datetime(2026, 12, 6, 12, 0, 10, tzinfo=dt.UTC)
    idle = idle_seconds([{"id": KID, "last_activity": "2026-12-06T12:00:00.000000Z"}, {"id": "bad"}], now)
    assert idle == {KID: 10.0}
    node = NodeHealth(
        "rpi1", "10.0.0.12", Status.HEALTHY, (), sample, 8, 2, False, False, 0.0, (), True, idle
    )
    k = node.to_json()["kernels"]
    assert (k["count"], k["memory_bytes"]) == (1, 40 * 2**20)
    assert k["items"][0]["idle_s"] == 10.0 and k["items"][1]["result"] == "oom-kill"
    assert report.instances(node) == "0/2 + 1 kernel 40M"
