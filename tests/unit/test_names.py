"""The one name rule (runner/names.py) and the hostile names it keeps out of paths, units and commands.

Each reproduction below was accepted before the rule (issue: an experiment name with a newline wrote
directives into a root-owned drop-in; a host named ../../x made `place` write outside host_vars/)."""

from __future__ import annotations

import os
import re
from pathlib import Path

import pytest
import yaml
from hypothesis import given
from hypothesis import strategies as st

from runner import names
from runner.cli import main
from runner.commands.down import selection
from runner.errors import InputError
from runner.monitor.actions import unit_name
from tests.conftest import ROOT

HOSTILE = [
    "x\nExecStartPre=+/bin/sh -c id",
    "../../x",
    "..",
    ".hidden",
    "-rf",
    "a b",
    "$(reboot)",
    "a;b",
    "a/b",
    "/tmp/abs",
    "ünïcode",
    "a" * 65,
    "a" * 10_000,
    "",
    "x\n",
]


@pytest.mark.parametrize("value", HOSTILE)
def test_hostile_names_are_refused(value):
    assert not names.is_name(value)
    assert names.problem(value)


@pytest.mark.parametrize("value", ["split_brain_A", "rpi1", "hive-critic.2", "_x", "a" * 64, "9"])
def test_ordinary_names_are_accepted(value):
    assert names.is_name(value) and names.problem(value) is None


@given(st.text(min_size=0, max_size=80))
def test_a_name_is_a_unit_suffix_and_one_safe_path_component(value):
    if not names.is_name(value):
        return
    unit = f"edgejar-instance@{value}.service"
    assert len(unit) <= 255 and re.fullmatch(r"[A-Za-z0-9:_.@\-]+", unit)  # systemd's unit name alphabet
    assert Path(value).name == value and value not in (".", "..") and not value.startswith(("-", "."))
    assert os.path.normpath(os.path.join("/base", value)) == f"/base/{value}"
    assert value.isascii() and value.isprintable()


def launch_module():
    import importlib.util

    path = ROOT / "roles/edgejar_launch/module_utils/edgejar_reconcile.py"
    spec = importlib.util.spec_from_file_location("edgejar_reconcile", path)
    assert spec and spec.loader
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_the_launch_module_checks_the_same_rule():
    module = launch_module()
    assert f"^{module.NAME_PATTERN}$" == names.NAME_PATTERN
    good = {"id": "a", "experiment": "e", "node": "n1", "memory_mib": 64, "address": "10.0.0.2", "port": 9000,
            "model": "tiny"}  # fmt: skip
    assert module.bad_entries([good], "n1") is None
    for bad in (
        {"id": "../x"},
        {"experiment": "e\n[Service]"},
        {"node": "n2"},
        {"memory_mib": 0},
        {"port": "x"},
    ):
        why = module.bad_entries([good, {**good, "id": "b", **bad}], "n1")
        assert why and why.startswith(f'instance(s) "{bad.get("id", "b")}": each needs an id'), why
    assert module.bad_entries(["not a mapping"], "n1").startswith('instance(s) "?"')
    assert module.bad_entries([good, good], "n1") == "duplicate instance ids: ['a']"


def test_no_free_text_reaches_the_root_owned_drop_in():
    """The drop-in is rendered by the launch module from numbers alone (memory_mib, the swap setting)."""
    module = launch_module()
    entry = {"id": "x\nExecStartPre=/bin/sh", "experiment": "y\n[Service]", "memory_mib": 64}
    text = module.dropin_text(entry, {"managed": "Ansible managed", "memory_swap_max": "0"})
    assert text.split("[Service]\n") == [text.split("[Service]\n")[0], "MemoryMax=64M\nMemorySwapMax=0\n"]
    assert "ExecStartPre" not in text and text.count("[Service]") == 1


def write_experiment(tmp: Path, **fields: object) -> Path:
    data = {"name": "e", "mode": "isolated", "model": "tiny", "instances": [{"id": "a", "memory_gb": 1}]}
    data.update(fields)
    path = tmp / "exp.yml"
    path.write_text(yaml.safe_dump(data))
    return path


@pytest.mark.parametrize("name", ["x\nExecStartPre=+/bin/sh -c id", "../../x", "a b", "$(reboot)"])
def test_an_experiment_name_is_checked_by_validate_and_place(project: Path, capsys, name: str):
    path = write_experiment(project, name=name)
    for cmd in (["validate", str(path)], ["place", str(path)]):
        assert main(cmd) == 2
        assert "name: must be a name" in capsys.readouterr().err
    assert not (project / "host_vars").exists()


@pytest.mark.parametrize("iid", ["ünïcode", "a" * 10_000, "x.y\n"])
def test_an_instance_id_the_launch_role_would_refuse_is_refused_at_load(project: Path, capsys, iid: str):
    path = write_experiment(project, instances=[{"id": iid, "memory_gb": 1}])
    assert main(["place", str(path)]) == 2
    assert "instances[0].id: must be a name" in capsys.readouterr().err


@pytest.mark.parametrize("host", ["../../escape", "/tmp/abs", "a b"])
def test_a_host_name_that_is_not_a_path_component_is_refused(project: Path, capsys, host: str):
    hosts = {host: {"ansible_host": "10.0.0.1", "node_ram_gb": 8, "node_max_instances": 2}}
    (project / "inventory").write_text(yaml.safe_dump({"edgejar_nodes": {"hosts": hosts}}))
    path = write_experiment(project)
    assert main(["place", str(path)]) == 2
    err = capsys.readouterr().err
    assert f"host {host!r}: the host name must be a name" in err, err
    assert not (project / "host_vars").exists() and not Path("/tmp/abs/placement.yml").exists()


def test_down_and_the_monitor_use_the_rule():
    with pytest.raises(InputError, match="--instance: must be a name"):
        selection(None, "a:b")
    with pytest.raises(InputError, match="--experiment: must be a name"):
        selection("../x", None)
    with pytest.raises(InputError, match="must be a name"):
        unit_name("x\ny")
    assert unit_name("split_brain_A") == "edgejar-instance@split_brain_A.service"
