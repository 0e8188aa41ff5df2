"""The probe's output and its parser: the real probe run on this machine, and crafted reports."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

from runner.health import probe
from runner.health.parse import ProbeError, instance_id, parse
from runner.health.poll import probe_source
from tests.unit.test_health_fixtures import GIB, probe_doc, unit


def test_the_real_probe_runs_from_stdin_and_parses():
    """Exactly as on a node: `python3 -` with the probe's source on stdin, stdlib only."""
    proc = subprocess.run(
        [sys.executable, "-I", "-S", "-"], input=probe_source(), capture_output=True, text=True, check=True
    )
    sample = parse(proc.stdout)
    assert sample.mem_total_bytes > 0
    assert 0 <= sample.mem_used_fraction <= 1
    assert sample.disk_total_bytes > 0
    assert sample.cpus >= 1


def test_probe_collect_is_json_serialisable_and_versioned():
    doc = probe.collect()
    assert doc["v"] == 1
    assert json.loads(json.dumps(doc)) == doc


def test_units_and_memory_are_parsed():
    doc = probe_doc(
        units=[
            unit("b", MemoryMax="infinity", MemoryCurrent="[not set]"),
            unit("a", "failed", "failed", Result="signal", NRestarts="3"),
        ]
    )
    s = parse(json.dumps(doc))
    assert [u.instance for u in s.units] == ["a", "b"]
    a, b = s.units
    assert (a.active, a.sub, a.result, a.restarts) == ("failed", "failed", "signal", 3)
    assert a.memory_bytes == 100 * 1024**2 and a.memory_max_bytes == 512 * 1024**2
    assert b.memory_bytes is None and b.memory_max_bytes is None
    assert a.state_age_s == pytest.approx(100.0)  # uptime 101 s, changed at 1 s
    assert s.mem_total_bytes == 8 * GIB and s.mem_used_bytes == 2 * GIB


def test_a_cgroup_ceiling_below_memtotal_is_the_real_memory():
    """The simulated hosts show the board's /proc/meminfo but live under a 2 GiB cgroup."""
    doc = probe_doc(cgroup={"version": 1, "memory": True, "limit": 2 * GIB, "usage": GIB // 2})
    s = parse(json.dumps(doc))
    assert (s.mem_total_bytes, s.mem_used_bytes) == (2 * GIB, GIB // 2)


def test_an_unlimited_cgroup_root_leaves_meminfo():
    doc = probe_doc(cgroup={"version": 1, "memory": True, "limit": 9223372036854771712, "usage": GIB})
    assert parse(json.dumps(doc)).mem_total_bytes == 8 * GIB


def test_jetson_gpu_and_temperatures():
    doc = probe_doc(jetson={"gpu_load_pct": 42.5, "temps_c": {"gpu-thermal": 51.5, "cpu-thermal": 48.0}})
    s = parse(json.dumps(doc))
    assert s.gpu_load_pct == 42.5 and s.max_temp_c == 51.5


def test_records_are_mapped_onto_stats():
    doc = probe_doc(records={"a": {"lives": 2, "deaths": 1, "cycle": 7, "tokens_per_s": 11.5}, "b": "junk"})
    stats = parse(json.dumps(doc)).records
    assert set(stats) == {"a"}
    assert (stats["a"].lives, stats["a"].deaths, stats["a"].cycle, stats["a"].tokens_per_s) == (2, 1, 7, 11.5)


@pytest.mark.parametrize(
    "text",
    ["", "not json", "[1, 2]", json.dumps({"v": 2}), json.dumps({**probe_doc(), "load": "x"})],
)
def test_malformed_output_is_a_probe_error(text):
    with pytest.raises(ProbeError):
        parse(text)


def test_instance_id_from_unit_name():
    assert instance_id("edgejar-instance@brain_a.service") == "brain_a"
    assert instance_id("edgejar-instance@.service") is None
    assert instance_id("ssh.service") is None
