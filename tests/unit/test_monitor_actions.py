"""The monitor's actions: the commands they run on a node and the maintenance file they write."""

from __future__ import annotations

import pytest
import yaml

from runner import inventory
from runner.errors import InputError
from runner.monitor import actions
from tests.unit.test_health_fixtures import write_inventory


def test_instance_commands():
    assert actions.instance_command("restart", "brain_a") == [
        "sudo",
        "-n",
        "systemctl",
        "restart",
        "edgejar-instance@brain_a.service",
    ]
    assert actions.journal_command("x", 10)[-2:] == ["-u", "edgejar-instance@x.service"]


@pytest.mark.parametrize("bad", ["a;rm -rf /", "a b", "", "$(x)"])
def test_instance_ids_are_checked_before_anything_runs(bad):
    with pytest.raises(InputError):
        actions.instance_command("stop", bad)


def test_unknown_action_is_refused():
    with pytest.raises(InputError):
        actions.instance_command("kill", "a")


def test_maintenance_file_is_read_by_the_inventory(tmp_path):
    path = write_inventory(tmp_path)
    written = actions.set_maintenance(tmp_path / "host_vars", "rpi1", True)
    assert written == tmp_path / "host_vars" / "rpi1" / "maintenance.yml"
    assert yaml.safe_load(written.read_text()) == {"node_maintenance": True}
    assert inventory.load(path).by_name()["rpi1"].node.maintenance
    actions.set_maintenance(tmp_path / "host_vars", "rpi1", False)
    assert not inventory.load(path).by_name()["rpi1"].node.maintenance
