"""Prometheus textfile rendering and its atomic write."""

from __future__ import annotations

import re

import pytest

from runner.errors import InputError
from runner.health import metrics
from runner.health.cluster import ClusterHealth
from runner.health.model import InstanceRow, NodeHealth, RecordStats, Status
from runner.health.parse import parse
from tests.unit.test_health_fixtures import probe_doc

SAMPLE_LINE = re.compile(
    r'^[a-z_]+(\{[a-z_]+="(?:[^"\\]|\\.)*"(,[a-z_]+="(?:[^"\\]|\\.)*")*\})? -?[0-9.e+]+$'
)


def health() -> ClusterHealth:
    import json

    sample = parse(json.dumps(probe_doc()))
    rows = (
        InstanceRow(
            "a", "jetson", "active/running", True, 100, 200, 2, RecordStats(deaths=5, tokens_per_s=12.5)
        ),
        InstanceRow('we"ird\\', "jetson", "failed/failed", True, None, None, 1),
    )
    nodes = (
        NodeHealth("jetson", "10.0.0.11", Status.HEALTHY, (), sample, 64, 4, True, False, 0.0, rows, True),
        NodeHealth("rpi1", "10.0.0.12", Status.UNAVAILABLE, ("x",), None, 8, 1, False, False, None, ()),
    )
    return ClusterHealth(nodes, 1_700_000_000.0, 0.25)


def test_every_family_has_help_and_type_and_samples_have_no_timestamps():
    text = metrics.render(health(), placement_failures=3)
    families = {}
    for line in text.splitlines():
        if line.startswith("# HELP "):
            families[line.split()[2]] = None
        elif line.startswith("# TYPE "):
            _, _, name, kind = line.split()
            assert name in families
            families[name] = kind
        else:
            assert SAMPLE_LINE.match(line), line  # name{labels} value: no timestamp field
            assert line.split("{")[0].split()[0] in families
    for name, kind in families.items():
        assert name.startswith("edgejar_")
        assert name.endswith("_total") == (kind == "counter")
    assert {"edgejar_node_up", "edgejar_instances_running", "edgejar_instance_deaths_total"} <= set(families)
    assert {"edgejar_instance_tokens_per_second", "edgejar_placement_failures_total"} <= set(families)
    assert text.endswith("\n")


def test_values():
    text = metrics.render(health())
    assert 'edgejar_node_up{node="jetson"} 1' in text
    assert 'edgejar_node_up{node="rpi1"} 0' in text
    assert 'edgejar_node_status{node="rpi1",status="UNAVAILABLE"} 1' in text
    assert 'edgejar_instances_running{node="jetson"} 1' in text
    assert 'edgejar_instance_deaths_total{node="jetson",instance="a"} 5' in text  # records win over NRestarts
    assert 'edgejar_instance_tokens_per_second{node="jetson",instance="a"} 12.5' in text
    assert 'instance="we\\"ird\\\\"} 1' in text  # label values escaped
    assert "edgejar_placement_failures_total" not in text  # nobody counts yet


def test_write_is_atomic_and_needs_prom_suffix(tmp_path):
    target = tmp_path / "edgejar.prom"
    metrics.write(target, "a 1\n")
    metrics.write(target, "a 2\n")
    assert target.read_text() == "a 2\n"
    assert [p.name for p in tmp_path.iterdir()] == ["edgejar.prom"]  # no temporary files left
    with pytest.raises(InputError):
        metrics.write(tmp_path / "edgejar.txt", "a 1\n")
