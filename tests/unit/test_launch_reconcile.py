"""The launch role's reconcile (roles/edgejar_launch/module_utils/edgejar_reconcile.py, which the module
and the action plugin edgejar_instances run), its node-side parts on real files: what it writes, what it leaves alone, what check mode and diff mode say, and how
it reads systemd's answers. The systemd side runs for real in tests/integration/test_launch.py."""

from __future__ import annotations

import grp
import importlib.util
import json
import os
import pwd
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest

from tests.conftest import ROOT

spec = importlib.util.spec_from_file_location(
    "edgejar_reconcile", ROOT / "roles/edgejar_launch/module_utils/edgejar_reconcile.py"
)
assert spec and spec.loader
mod = importlib.util.module_from_spec(spec)
spec.loader.exec_module(mod)

ME = pwd.getpwuid(os.getuid()).pw_name
MY_GROUP = grp.getgrgid(os.getgid()).gr_name


class FakeModule:
    """What Node uses of AnsibleModule: check_mode and run_command (answers given per command)."""

    def __init__(self, check: bool = False, answers: dict[str, str] | None = None) -> None:
        self.check_mode = check
        self.answers = answers or {}
        self.commands: list[list[str]] = []

    def run_command(self, argv: list[str]) -> tuple[int, str, str]:
        self.commands.append(argv)
        return 0, self.answers.get(argv[1], ""), ""

    def fail_json(self, **kw: Any) -> None:
        raise AssertionError(kw)


def node(check: bool = False, **answers: str) -> Any:
    return mod.Node(FakeModule(check, answers))


def reconcile_params(tmp_path: Path, ids: list[str], **over: Any) -> dict[str, Any]:
    """The module's parameters for instances `ids` (ports 1, 2, ...) under tmp_path; `over` replaces keys."""
    (tmp_path / "units").mkdir(exist_ok=True)
    instances = [
        {"id": iid, "experiment": "e", "address": "127.0.0.1", "port": n, "memory_mib": 64, "model": "tiny"}
        for n, iid in enumerate(ids, 1)
    ]
    return {
        "unit": "edgejar-instance",
        "unit_dir": str(tmp_path / "units"),
        "config_dir": str(tmp_path / "etc" / "instances"),
        "data_dir": str(tmp_path / "data"),
        "user": ME,
        "group": MY_GROUP,
        "template": "[Unit]\n",
        "instances": instances,
        "models_dir": "/models",
        "catalog": {"tiny": {"file": "tiny.gguf"}},
        "secrets_dir": "/secrets",
        "memory_swap_max": "0",
        "managed": "Ansible managed",
        "files": [],
        "contents": [],
        "prune": False,
        "wait_timeout": 1,
        "log_lines": 5,
        "host": "n1",
        **over,
    }


def test_a_file_is_written_once_and_then_left_alone(tmp_path: Path) -> None:
    n, path = node(), str(tmp_path / "a.json")
    assert n.file(path, "one\n", ME, MY_GROUP, 0o640)
    assert Path(path).read_text() == "one\n" and (os.stat(path).st_mode & 0o777) == 0o640
    inode = os.stat(path).st_ino
    assert not n.file(path, "one\n", ME, MY_GROUP, 0o640)
    assert os.stat(path).st_ino == inode  # not rewritten
    assert n.file(path, "two\n", ME, MY_GROUP, 0o640)
    assert Path(path).read_text() == "two\n"
    assert [e for e in os.listdir(tmp_path) if e.startswith(".")] == []  # no temporary file left


def test_a_wrong_mode_alone_is_fixed_without_rewriting(tmp_path: Path) -> None:
    n, path = node(), tmp_path / "a.conf"
    path.write_text("x\n")
    path.chmod(0o600)
    inode = path.stat().st_ino
    assert n.file(str(path), "x\n", ME, MY_GROUP, 0o644)
    assert path.stat().st_mode & 0o777 == 0o644 and path.stat().st_ino == inode
    assert n.diffs == []  # the content did not change


def test_check_mode_changes_nothing_and_reports_the_diff(tmp_path: Path) -> None:
    n, path = node(check=True), tmp_path / "a.json"
    path.write_text("old\n")
    assert n.file(str(path), "new\n", ME, MY_GROUP, 0o644)
    assert n.directory(str(tmp_path / "d"), ME, MY_GROUP, 0o755)
    assert n.remove(str(path))
    assert path.read_text() == "old\n" and not (tmp_path / "d").exists()
    assert n.diffs[0]["before"] == "old\n" and n.diffs[0]["after"] == "new\n"


def test_a_secret_never_shows_in_a_diff(tmp_path: Path) -> None:
    n, path = node(check=True), tmp_path / "peer.key"
    path.write_text("s3cret-old")
    assert n.file(str(path), "s3cret-new", ME, MY_GROUP, 0o640, secret=True)
    assert "s3cret" not in str(n.diffs)


def test_systemctl_show_blocks_are_read_per_unit() -> None:
    out = (
        "Id=edgejar-instance@a.service\nActiveState=active\nSubState=running\nMainPID=12\n\n"
        "Id=edgejar-instance@b.service\nActiveState=inactive\nResult=success\nExecMainStatus=0\n"
    )
    n = node(show=out)
    states = n.show(
        ["edgejar-instance@a.service", "edgejar-instance@b.service", "edgejar-instance@c.service"]
    )
    assert states["edgejar-instance@a.service"]["MainPID"] == "12"
    assert mod._running(states["edgejar-instance@a.service"])
    assert mod._completed(states["edgejar-instance@b.service"])
    assert states["edgejar-instance@c.service"] == {}


def test_known_instances_are_read_from_list_units() -> None:
    out = (
        "edgejar-instance@a.service loaded active running edgejar experiment instance a\n"
        "edgejar-instance@old_1.service loaded failed failed edgejar experiment instance old_1\n"
        "other@x.service loaded active running x\n"
    )
    assert node(**{"list-units": out}).known("edgejar-instance") == [("a", "active"), ("old_1", "failed")]


@pytest.mark.parametrize(
    ("props", "running", "completed"),
    [
        ({"ActiveState": "active"}, True, False),
        ({"ActiveState": "activating", "SubState": "auto-restart"}, False, False),
        ({"ActiveState": "inactive", "Result": "success", "ExecMainStatus": "0"}, False, True),
        ({"ActiveState": "inactive", "Result": "exit-code", "ExecMainStatus": "1"}, False, False),
        ({"ActiveState": "failed", "Result": "oom-kill"}, False, False),
    ],
)
def test_states(props: dict[str, str], running: bool, completed: bool) -> None:
    assert mod._running(props) is running
    assert mod._completed(props) is completed


def test_memory_is_reported_in_mib() -> None:
    assert mod._mib("2147483648") == 2048.0
    assert mod._mib("[not set]") is None and mod._mib(None) is None


def test_a_reconcile_of_nothing_wanted_prunes_what_is_there(tmp_path: Path) -> None:
    configs, units = tmp_path / "instances", tmp_path / "units"
    configs.mkdir()
    units.mkdir()
    (configs / "gone.json").write_text("{}")
    (units / "edgejar-instance@gone.service.d").mkdir()
    (units / "edgejar-instance@gone.service.d" / "10-edgejar.conf").write_text("[Service]\n")
    fake = FakeModule(check=False)
    fake.params = {
        "unit": "edgejar-instance",
        "unit_dir": str(units),
        "config_dir": str(configs),
        "data_dir": str(tmp_path / "data"),
        "user": ME,
        "group": MY_GROUP,
        "template": "[Unit]\n",
        "instances": [],
        "models_dir": "/models",
        "catalog": {},
        "secrets_dir": "/secrets",
        "memory_swap_max": "0",
        "managed": "Ansible managed",
        "files": [],
        "contents": [],
        "prune": True,
        "wait_timeout": 1,
        "log_lines": 5,
        "host": "n1",
    }
    rec = mod.Reconcile(SimpleNamespace(**vars(fake), run_command=fake.run_command, fail_json=fake.fail_json))
    rec.files()
    rec.prune()
    assert rec.removed == ["gone"]
    assert not (configs / "gone.json").exists() and not (units / "edgejar-instance@gone.service.d").exists()
    disable = ["systemctl", "disable", "--now", "--no-reload", "--"]
    assert [*disable, "edgejar-instance@gone.service"] in fake.commands
    # systemd is reloaded once, by act(), for the removed files and links (and what files() wrote)
    assert ["systemctl", "daemon-reload"] not in fake.commands and rec.units_changed
    rec.act()
    assert fake.commands.count(["systemctl", "daemon-reload"]) == 1


def test_a_secret_file_is_written_into_its_own_directory_and_restarts_its_instances(tmp_path: Path) -> None:
    fake = FakeModule(check=False)
    secrets = tmp_path / "secrets"
    params = reconcile_params(
        tmp_path,
        ["a", "b"],
        files=[{"path": str(secrets / "exp.key"), "group": MY_GROUP, "mode": "0640", "instances": ["a"]}],
        contents=["s3cret\n"],
    )
    rec = mod.Reconcile(SimpleNamespace(check_mode=False, params=params, run_command=fake.run_command))
    rec.files()
    assert (secrets / "exp.key").read_text() == "s3cret\n"
    assert (secrets.stat().st_mode & 0o777) == 0o750 and (
        (secrets / "exp.key").stat().st_mode & 0o777
    ) == 0o640
    assert "exp.key changed" in rec.why["a"] and "exp.key changed" not in rec.why["b"]
    assert "s3cret" not in str(rec.node.diffs)


def test_a_deliberate_start_or_restart_resets_the_start_limit_first(tmp_path: Path) -> None:
    """Editing an instance five times in five minutes must not leave it refused by StartLimitBurst: the
    start limit is for crash loops, so launch resets it (systemctl reset-failed) for what it starts."""
    fake = FakeModule(check=False)
    params = reconcile_params(tmp_path, ["edited"])
    rec = mod.Reconcile(SimpleNamespace(check_mode=False, params=params, run_command=fake.run_command))
    rec.files()
    assert rec.act() == {"edited": "restarted"}
    reset = ["systemctl", "reset-failed", "--", "edgejar-instance@edited.service"]
    restart = ["systemctl", "restart", "--", "edgejar-instance@edited.service"]
    assert reset in fake.commands and restart in fake.commands
    assert fake.commands.index(reset) < fake.commands.index(restart)
    # one reload for the new files, before anything starts; the enable links need none (boot reads them)
    reload, enable = ["systemctl", "daemon-reload"], ["systemctl", "enable", "--no-reload", "--", restart[-1]]
    assert fake.commands.count(reload) == 1 and enable in fake.commands
    assert fake.commands.index(reload) < fake.commands.index(restart)


ENTRY = {
    "id": "a",
    "experiment": "exp",
    "address": "10.0.0.2",
    "port": 9000,
    "memory_mib": 384,
    "model": "tiny",
    "system_prompt": "Grüße\nand a second line",
    "peers": [{"id": "b", "port": 9001}],
}
RENDER = {"models_dir": "/m", "catalog": {"tiny": {"file": "t.gguf"}}, "data_dir": "/d", "secrets_dir": "/s"}


def test_the_config_is_the_entry_plus_paths_as_ansible_rendered_it() -> None:
    """Byte for byte what the role rendered before the module did (to_nice_json of the entry and the
    paths), so that upgrading restarts nothing."""
    from ansible.plugins.filter.core import to_nice_json

    extra = {"model_path": "/m/t.gguf", "data_dir": "/d", "peer_secret_file": "/s/exp.key"}
    assert mod.config_text(ENTRY, RENDER) == to_nice_json({**ENTRY, **extra}) + "\n"
    by_path = {**ENTRY, "model": "models/other.gguf"}  # not in the catalog: a path
    assert '"model_path": "/m/other.gguf"' in mod.config_text(by_path, RENDER)


def test_the_drop_in_holds_numbers_only_and_the_swap_line_when_set() -> None:
    text = mod.dropin_text(ENTRY, {"managed": "Ansible managed", "memory_swap_max": "0"})
    assert text.endswith("[Service]\nMemoryMax=384M\nMemorySwapMax=0\n") and text.startswith(
        "# Ansible managed\n"
    )
    assert "exp" not in text and "Grüße" not in text  # no name or free text in the root-owned file
    assert "MemorySwapMax" not in mod.dropin_text(ENTRY, {"managed": "m", "memory_swap_max": ""})
    quota = mod.dropin_text(ENTRY, {"managed": "m", "memory_swap_max": "", "cpu_quota": "50%"})
    assert quota.endswith("MemoryMax=384M\nCPUQuota=50%\n")
    with pytest.raises(ValueError):
        mod.dropin_text(
            {**ENTRY, "memory_mib": "384M\nExecStartPre=/bin/sh"}, {"managed": "m", "memory_swap_max": ""}
        )


def test_instances_and_training_units_share_the_config_dir_and_prune_only_their_own(tmp_path: Path) -> None:
    """A training unit's config (kind torch_distributed) is not an instance's to prune, and the reverse."""
    configs, units = tmp_path / "instances", tmp_path / "units"
    configs.mkdir()
    units.mkdir()
    (configs / "old.json").write_text('{"id": "old", "experiment": "e"}')
    (configs / "job-0.json").write_text('{"id": "job-0", "kind": "torch_distributed"}')
    fake = FakeModule(check=False)
    fake.params = {
        "unit": "edgejar-instance",
        "training_unit": "edgejar-train",
        "unit_dir": str(units),
        "config_dir": str(configs),
        "data_dir": str(tmp_path / "data"),
        "code_dir": "/opt/edgejar/app",
        "user": ME,
        "group": MY_GROUP,
        "template": "[Unit]\n",
        "training_template": "[Unit]\nDescription=train\n",
        "instances": [],
        "training": [],
        "memory_swap_max": "0",
        "managed": "Ansible managed",
        "files": [],
        "contents": [],
    }
    module = SimpleNamespace(**vars(fake), run_command=fake.run_command, fail_json=fake.fail_json)
    instances = mod.Reconcile(module)
    instances.prune()
    assert instances.removed == ["old"] and (configs / "job-0.json").exists()
    training = mod.Reconcile(module, training=True)
    training.prune()
    assert training.removed == ["job-0"] and not (configs / "job-0.json").exists()
    disable = ["systemctl", "disable", "--now", "--no-reload", "--"]
    assert [*disable, "edgejar-train@job-0.service"] in fake.commands
    entry = {"id": "job-1", "experiment": "job", "kind": "torch_distributed", "memory_mib": 768}
    text = json.loads(mod.training_config_text(entry, fake.params))
    assert text["app_dir"] == "/opt/edgejar/app" and text["data_dir"] == str(tmp_path / "data")
    why = mod.bad_entries([{**entry, "node": "n1", "address": "10.0.0.2"}], "n1", training=True)
    assert why is not None and "rdzv_endpoint" in why
    ok = {**entry, "node": "n1", "address": "10.0.0.2", "rdzv_endpoint": "10.0.0.2:29500"}
    assert mod.bad_entries([ok], "n1", training=True) is None
