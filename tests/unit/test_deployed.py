"""runner/deployed.py: `runner up` skips a deploy only when nothing a deploy depends on changed since the
last deploy that went through on every node (docs/e2e.md); the launch module's stamp check."""

from __future__ import annotations

import importlib.util
import json
import os
from pathlib import Path

import pytest

from runner import deployed
from runner.cli import build_parser
from tests.conftest import ROOT

spec = importlib.util.spec_from_file_location(
    "edgejar_reconcile_stamp", ROOT / "roles/edgejar_launch/module_utils/edgejar_reconcile.py"
)
assert spec and spec.loader
reconcile = importlib.util.module_from_spec(spec)
spec.loader.exec_module(reconcile)


@pytest.fixture
def tree(tmp_path: Path) -> tuple[Path, Path]:
    """A checkout (root) and a sim-like inventory outside it, with host_vars and a placement file."""
    root = tmp_path / "checkout"
    for rel in ("runner/node/a.py", "experiments/x.yml", "models/tiny.gguf", ".cache/ansible-facts/h",
                "results/e/results.sqlite3", ".git/HEAD", "host_vars/n1/placement.yml", "docs/x.md",
                "tests/t.py", "runner/tests/shipped.py"):  # fmt: skip
        (root / rel).parent.mkdir(parents=True, exist_ok=True)
        (root / rel).write_text(rel)
    state = tmp_path / "sim"
    (state / "host_vars" / "n1").mkdir(parents=True)
    (state / "inventory.yml").write_text("all: {}\n")
    (state / "host_vars" / "n1" / "placement.yml").write_text("edgejar_instances: []\n")
    (state / "host_vars" / "n1" / "extra.yml").write_text("a: 1\n")
    return root, state / "inventory.yml"


def fp(
    root: Path,
    inventory: Path,
    models: dict[str, list[str]] | None = None,
    extra: dict[str, object] | None = None,
) -> dict[str, str]:
    return deployed.fingerprints(inventory, models or {"n1": [], "n2": []}, extra or {}, root=root)


def bump(path: Path, text: str = "changed") -> None:
    path.write_text(text)
    st = path.stat()
    os.utime(path, ns=(st.st_atime_ns, st.st_mtime_ns + 10**9))


def test_the_fingerprint_follows_what_deploy_depends_on(tree: tuple[Path, Path]) -> None:
    root, inventory = tree
    first = fp(root, inventory)
    assert first == fp(root, inventory) and set(first) == {"n1", "n2"}
    bump(root / "runner" / "tests" / "shipped.py")  # `tests` below the top is code like any other
    nested = fp(root, inventory)
    assert nested["n1"] != first["n1"]
    bump(root / "runner" / "node" / "a.py")
    code = fp(root, inventory)
    assert code["n1"] != nested["n1"] and code["n2"] != nested["n2"]
    bump(root / ".." / "sim" / "host_vars" / "n1" / "extra.yml")  # the inventory's files, outside the root
    inv = fp(root, inventory)
    assert inv["n1"] != code["n1"]
    assert fp(root, inventory, extra={"edgejar_x": 1})["n1"] != inv["n1"]  # the extra variables
    # the placement is the launch's business, and caches, results and .git are not deployed
    for rel in (
        "host_vars/n1/placement.yml",
        ".cache/ansible-facts/h",
        "results/e/results.sqlite3",
        ".git/HEAD",
        "docs/x.md",  # the project's docs and tests at the top are never shipped
        "tests/t.py",
    ):
        bump(root / rel)
    bump(inventory.parent / "host_vars" / "n1" / "placement.yml")
    assert fp(root, inventory) == inv


def test_a_nodes_models_change_its_own_fingerprint_alone(tree: tuple[Path, Path]) -> None:
    root, inventory = tree
    gguf = root / "models" / "tiny.gguf"
    base = fp(root, inventory, {"n1": [], "n2": []})
    placed = fp(root, inventory, {"n1": [str(gguf)], "n2": []})
    assert placed["n1"] != base["n1"] and placed["n2"] == base["n2"]
    assert fp(root, inventory, {"n1": ["chat", "chat"], "n2": []}) == fp(
        root, inventory, {"n1": ["chat"], "n2": []}
    )


def test_the_record_keeps_what_went_through_and_forgets_failures(tmp_path: Path) -> None:
    record = tmp_path / "deployed.json"
    inv = tmp_path / "inventory.yml"
    want = {"n1": "a", "n2": "b"}
    assert not deployed.unchanged(inv, want, record)  # nothing recorded: deploy
    deployed.remember(inv, {"n1": "a"}, forget=["n2"], record=record)
    assert not deployed.unchanged(inv, want, record)  # n2 failed: what it holds is unknown
    deployed.remember(inv, want, record=record)
    assert deployed.unchanged(inv, want, record)
    assert not deployed.unchanged(inv, {**want, "n3": "c"}, record)  # a node never deployed
    assert not deployed.unchanged(inv, {}, record)
    assert not deployed.unchanged(tmp_path / "other.yml", want, record)  # per inventory
    deployed.forget_inventory(inv, record)
    assert not deployed.unchanged(inv, want, record)
    record.write_text("{not json")
    assert deployed.load(record) == {} and not deployed.unchanged(inv, want, record)
    deployed.remember(inv, want, record=record)  # a damaged record is replaced whole
    assert json.loads(record.read_text()) == {str(inv.resolve()): want}


def test_launch_refuses_a_node_whose_stamp_is_not_the_expected_one(tmp_path: Path) -> None:
    stamp = tmp_path / "app.deployed"
    assert reconcile.not_deployed(str(stamp), "") is None  # no expectation: no check
    why = reconcile.not_deployed(str(stamp), "abc123")
    assert why is not None and str(stamp) in why and "missing" in why
    stamp.write_text("zzz\n")
    why = reconcile.not_deployed(str(stamp), "abc123")
    assert why is not None and "holds zzz" in why and "expected abc123" in why
    stamp.write_text("abc123\n")
    assert reconcile.not_deployed(str(stamp), "abc123") is None


def test_up_takes_deploy_or_skip_deploy_not_both(capsys: pytest.CaptureFixture[str]) -> None:
    parser = build_parser()
    assert parser.parse_args(["up", "--deploy", "x.yml"]).deploy is True
    with pytest.raises(SystemExit) as exc:
        parser.parse_args(["up", "--deploy", "--skip-deploy", "x.yml"])
    assert exc.value.code == 2 and "not allowed with" in capsys.readouterr().err
