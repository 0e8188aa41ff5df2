"""The code half of roles/edgejar_deploy's no-op check (lookup edgejar_tree on the controller, module
edgejar_deploy_state on the node, one walk in module_utils/edgejar_code_tree.py) says "nothing differs"
exactly when rsync, run with the role's flags, would send nothing.

Run by Ansible itself on this machine (a local connection) and against real rsync between two local
directories (the transfer's flags, without SSH)."""

from __future__ import annotations

import hashlib
import json
import os
import subprocess
import sys
import tempfile
from pathlib import Path

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[2]
ROLE = ROOT / "roles" / "edgejar_deploy"
EXCLUDES = yaml.safe_load((ROLE / "defaults" / "main.yml").read_text())["edgejar_deploy_code_excludes"]
PATHS = ["runner", "experiments"]


def ansible(
    module: str, args: dict[str, object], role_dir: Path = ROLE, check: bool = False, action: bool = True
) -> dict[str, object]:
    """One ad-hoc call on localhost with the role's library, lookups and (unless `action` is false: the
    module itself) action plugins, as the role runs it; the task's result."""
    with tempfile.TemporaryDirectory(prefix="edgejar-code-state-") as cfg_dir:
        config = Path(cfg_dir) / "ansible.cfg"  # none of the repository's settings
        config.write_text(
            f"[defaults]\nlookup_plugins = {role_dir / 'lookup_plugins'}\n"
            f"module_utils = {role_dir / 'module_utils'}\n"
            + (f"action_plugins = {role_dir / 'action_plugins'}\n" if action else "")
        )
        out = subprocess.run(
            [str(Path(sys.executable).parent / "ansible"), "localhost", "-c", "local", "-i", "localhost,",
             "-M", str(role_dir / "library"), "-m", module, "-a", json.dumps(args),
             "-e", f"ansible_python_interpreter={sys.executable}", *(["--check"] if check else [])],
            capture_output=True, text=True, check=False,
            env={**os.environ, "ANSIBLE_CONFIG": str(config), "ANSIBLE_LOCALHOST_WARNING": "false",
                 "ANSIBLE_LOAD_CALLBACK_PLUGINS": "1", "ANSIBLE_STDOUT_CALLBACK": "minimal"},
        )  # fmt: skip
    result = json.loads(out.stdout.split("=>", 1)[1]) if "=>" in out.stdout else {"msg": out.stderr}
    result["rc"] = out.returncode
    return result


def controller_tree(src: Path, paths: list[str] = PATHS) -> dict[str, str]:
    """The lookup's answer, through a real lookup call."""
    expr = f"{{{{ query('edgejar_tree', *{paths!r}, root='{src}', excludes={EXCLUDES!r}) | first }}}}"
    out = ansible("ansible.builtin.set_fact", {"tree": expr})
    assert out["rc"] == 0, out
    return out["ansible_facts"]["tree"]  # type: ignore[index, return-value]


def node_check(
    src: Path | None, dest: Path, venv: Path, paths: list[str] = PATHS, check: bool = False
) -> dict[str, object]:
    """The module's answer for `dest`, compared with the controller's tree of `src` (None: an empty one)."""
    return ansible(
        "edgejar_deploy_state",
        {"venv": str(venv), "pth_name": "edgejar-app.pth", "dest": str(dest), "paths": paths,
         "excludes": EXCLUDES, "want": controller_tree(src, paths) if src else {}},
        check=check,
    )  # fmt: skip


def rsync(src: Path, dest: Path) -> list[str]:
    """The transfer role's rsync (local; no SSH), returning what it sent or deleted."""
    out = subprocess.run(
        ["rsync", "--recursive", "--links", "--times", "--relative", "--omit-dir-times", "--no-owner",
         "--no-group", "--chmod=D0755,F0644", "--itemize-changes", "--out-format=%i %n%L", "--delete",
         *[f"--exclude={e}" for e in EXCLUDES], "--", *PATHS, f"{dest}/"],
        cwd=src, capture_output=True, text=True, check=True,
    )  # fmt: skip
    return out.stdout.splitlines()


@pytest.fixture
def setup(tmp_path: Path) -> tuple[Path, Path, Path]:
    src, dest, venv = tmp_path / "src", tmp_path / "dest", tmp_path / "venv"
    for rel, text in {
        "runner/__init__.py": "",
        "runner/node/cli.py": "print('node')\n",
        "runner/__pycache__/x.cpython-311.pyc": "cache",
        "runner/notes.log": "log",
        "experiments/a.yml": "name: a\n",
        "experiments/sub/b.yml": "name: b\n",
    }.items():
        (src / rel).parent.mkdir(parents=True, exist_ok=True)
        (src / rel).write_text(text)
    (src / "experiments/link.yml").symlink_to("a.yml")
    (venv / "bin").mkdir(parents=True)
    (venv / "bin/python").symlink_to(sys.executable)
    (venv / "lib/python3.11/site-packages").mkdir(parents=True)  # found without running the venv's Python
    dest.mkdir()
    return src, dest, venv


def test_nothing_differs_exactly_when_rsync_sends_nothing(setup: tuple[Path, Path, Path]) -> None:
    src, dest, venv = setup
    first = node_check(src, dest, venv)
    assert first["rc"] == 0 and first["changed"] is True and first["pth_written"] is True, first  # the .pth
    assert first["n_differs"] == 9  # two tops, four files, a symlink, two directories below them
    assert "runner/node/cli.py (missing)" in first["differs"]  # type: ignore[operator]
    assert not any("__pycache__" in d or ".log" in d for d in first["differs"])  # type: ignore[union-attr]
    assert rsync(src, dest)
    assert node_check(src, dest, venv)["n_differs"] == 0
    assert rsync(src, dest) == []

    # A node's own caches and logs are not a difference (rsync leaves them too).
    (dest / "runner/__pycache__").mkdir()
    (dest / "runner/__pycache__/cli.cpython-311.pyc").write_text("node cache")
    (dest / "runner/node/run.log").write_text("node log")
    assert node_check(src, dest, venv)["n_differs"] == 0

    # An edit (same size, later time), a new file, a deleted file, a retargeted link: each one is seen,
    # and after rsync nothing is.
    edited = src / "runner/node/cli.py"
    edited.write_text("print('NODE')\n")
    os.utime(edited, (edited.stat().st_atime, edited.stat().st_mtime + 5))
    (src / "runner/new.py").write_text("x = 1\n")
    (src / "experiments/sub/b.yml").unlink()
    (src / "experiments/link.yml").unlink()
    (src / "experiments/link.yml").symlink_to("sub")
    check = node_check(src, dest, venv)
    differs = "\n".join(check["differs"])  # type: ignore[arg-type]
    assert check["n_differs"] == 4, differs
    for what in ("runner/node/cli.py (node: f 14", "runner/new.py (missing)",
                 "experiments/sub/b.yml (not on the controller)", "experiments/link.yml (node: l a.yml"):  # fmt: skip
        assert what in differs
    assert len(rsync(src, dest)) >= 4
    assert node_check(src, dest, venv)["n_differs"] == 0


def test_the_pth_file_is_written_once_and_a_missing_venv_names_provision(
    setup: tuple[Path, Path, Path], tmp_path: Path
) -> None:
    src, dest, venv = setup
    site = venv / "lib/python3.11/site-packages"
    assert node_check(src, dest, venv, check=True)["pth_written"] is True
    assert not (site / "edgejar-app.pth").exists()  # --check writes nothing
    check = node_check(src, dest, venv)
    assert check["pth"] is None and check["site"] == str(site) and check["changed"] is True
    assert (site / "edgejar-app.pth").read_text() == f"{dest}\n"
    again = node_check(src, dest, venv)
    assert again["changed"] is False and again["pth"] == f"{dest}\n"
    missing = node_check(src, dest, tmp_path / "no-venv")
    assert missing["rc"] != 0
    assert "no-venv/bin/python does not exist; run playbooks/provision.yml" in str(missing["msg"])
    (site / "runner").mkdir()  # an installed package of the same name would win over the synced one
    shadowed = node_check(src, dest, venv)
    assert shadowed["rc"] != 0 and f"{site}/runner would be imported instead of {dest}/runner" in str(
        shadowed["msg"]
    )


@pytest.mark.parametrize("action", [True, False], ids=["action-plugin", "module"])
def test_one_call_checks_the_code_and_the_models_and_prunes(
    setup: tuple[Path, Path, Path], tmp_path: Path, action: bool
) -> None:
    """A no-op deploy is one call per node: the code compared and the models' sums in one answer, the
    same through the action plugin (what the role runs) as through the module itself."""
    src, dest, venv = setup
    models = tmp_path / "models"
    models.mkdir()
    (models / "keep.gguf").write_bytes(b"keep")
    (models / "old.gguf").write_bytes(b"old")
    rsync(src, dest)
    args = {"venv": str(venv), "pth_name": "edgejar-app.pth", "dest": str(dest), "paths": PATHS,
            "excludes": EXCLUDES, "want": controller_tree(src), "model_paths": [str(models / "keep.gguf")],
            "list_dir": str(models), "prune": True}  # fmt: skip
    both = ansible("edgejar_deploy_state", args, action=action)
    assert both["rc"] == 0 and both["n_differs"] == 0, both
    assert both["files"] == {str(models / "keep.gguf"): {"exists": True, "source": "read",  # type: ignore[comparison-overlap]
                                                         "sha256": hashlib.sha256(b"keep").hexdigest()}}  # fmt: skip
    assert both["removed"] == [str(models / "old.gguf")] and both["changed"] is True
    assert sorted(p.name for p in models.iterdir()) == [".keep.gguf.sha256", "keep.gguf"]
    again = ansible("edgejar_deploy_state", args, action=action)
    assert again["changed"] is False and again["files"][str(models / "keep.gguf")]["source"] == "sidecar"  # type: ignore[index]


def test_the_arguments_are_checked_before_anything_runs(tmp_path: Path) -> None:
    bad = ansible("edgejar_deploy_state", {"model_paths": [str(tmp_path / "m.gguf")], "prune": True})
    assert bad["rc"] != 0 and "list_dir" in str(bad["msg"]), bad
    half = ansible("edgejar_deploy_state", {"dest": str(tmp_path), "venv": str(tmp_path)})
    assert half["rc"] != 0 and "pth_name" in str(half["msg"]), half


def test_a_path_pattern_is_refused_with_its_name(setup: tuple[Path, Path, Path]) -> None:
    src, _, _ = setup
    out = ansible(
        "ansible.builtin.set_fact",
        {
            "tree": f"{{{{ query('edgejar_tree', 'runner', root='{src}', excludes=['runner/*.py']) | first }}}}"
        },
    )
    assert out["rc"] != 0 and "exclude pattern 'runner/*.py'" in json.dumps(out)


def test_files_that_no_longer_ship_are_removed(setup: tuple[Path, Path, Path]) -> None:
    src, dest, venv = setup
    assert rsync(src, dest)  # an earlier deploy sent all of runner/
    (src / "runner/node/__init__.py").write_text("")
    narrow = ["runner/__init__.py", "runner/node", "experiments"]
    node_check(None, dest, venv, narrow)  # writes the .pth: only the removals change below
    out = node_check(None, dest, venv, narrow)
    assert out["rc"] == 0 and out["changed"] is False, out
    # runner/notes.log is excluded by name (a log), so it is neither shipped nor removed
    assert out["stale"] == [], out["stale"]
    (dest / "runner/sim").mkdir()
    (dest / "runner/sim/cluster.py").write_text("old controller code")
    (dest / "runner/cli.py").write_text("old controller code")
    gone = [str(dest / "runner/cli.py"), str(dest / "runner/sim")]
    assert node_check(None, dest, venv, narrow, check=True)["stale"] == gone
    assert (dest / "runner/cli.py").exists() and (dest / "runner/sim").exists()  # --check removes nothing
    out = node_check(None, dest, venv, narrow)
    assert out["stale"] == gone and out["changed"] is True
    assert not (dest / "runner/cli.py").exists() and not (dest / "runner/sim").exists()
    assert node_check(None, dest, venv, narrow)["changed"] is False


def test_deploy_ships_the_node_runtime_alone_and_it_imports_from_that_alone(tmp_path: Path) -> None:
    """The role's default paths over this repository: runner/node, runner/errors.py, runner/names.py and
    the pure placement engine (runner/placement: the notebook gateway places kernels with it), nothing of
    the planner, simulator or monitor; a copy of exactly those files runs every node module
    (a module taken from anywhere else, e.g. through the editable install, fails the check)."""
    defaults = yaml.safe_load((ROLE / "defaults" / "main.yml").read_text())
    tree = controller_tree(ROOT, defaults["edgejar_deploy_code_paths"])
    shipped = sorted(rel for rel, kind in tree.items() if kind.startswith("f"))
    runtime = [rel for rel in shipped if rel.startswith("runner/")]
    assert runtime, shipped
    outside = [
        r
        for r in runtime
        if not r.startswith(("runner/node/", "runner/placement/"))
        and r not in ("runner/__init__.py", "runner/errors.py", "runner/names.py")
    ]
    assert outside == [], outside
    assert "runner/node/cli.py" in runtime and "runner/node/modes/base.py" in runtime
    for rel in runtime:
        (tmp_path / rel).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / rel).write_bytes((ROOT / rel).read_bytes())
    modules = sorted(  # every module but the entry point (importing __main__ runs the command line)
        r[:-3].replace("/", ".").removesuffix(".__init__")
        for r in runtime
        if r.endswith(".py") and not r.endswith("__main__.py")
    )
    probe = (
        f"import importlib, sys; sys.path.insert(0, {str(tmp_path)!r})\n"
        f"for name in {modules!r}: importlib.import_module(name)\n"
        "import runner\n"
        f"assert runner.__file__.startswith({str(tmp_path)!r}), runner.__file__\n"
        "leaked = sorted(m for m in sys.modules if m.startswith('runner')\n"
        "                and not m.startswith(('runner.node', 'runner.placement'))\n"
        "                and m not in ('runner', 'runner.errors', 'runner.names'))\n"
        "assert not leaked, leaked\n"
    )
    proc = subprocess.run(
        [sys.executable, "-c", probe], capture_output=True, text=True, check=False, cwd=tmp_path
    )
    assert proc.returncode == 0, proc.stderr[-3000:]


@pytest.mark.parametrize("action", [True, False], ids=["action", "module"])
def test_the_deploy_stamp_holds_runner_ups_fingerprint_or_is_removed(tmp_path: Path, action: bool) -> None:
    """`runner up` skips an unchanged deploy only where the node's stamp holds what it deployed
    (docs/e2e.md): the check writes the fingerprint it is given, removes the stamp when given none (a
    deploy run any other way), changes nothing in check mode, and does not call the stamp a change."""
    stamp = tmp_path / "app.deployed"
    args: dict[str, object] = {"stamp": str(stamp), "fingerprint": "f" * 64}
    dry = ansible("edgejar_deploy_state", args, check=True, action=action)
    assert dry["rc"] == 0 and dry["stamp_differed"] is True and not stamp.exists(), dry
    wrote = ansible("edgejar_deploy_state", args, action=action)
    assert wrote["stamp_differed"] is True and wrote["changed"] is False, wrote
    assert stamp.read_text() == "f" * 64 + "\n"
    again = ansible("edgejar_deploy_state", args, action=action)
    assert again["stamp_differed"] is False, again
    gone = ansible("edgejar_deploy_state", {"stamp": str(stamp)}, action=action)
    assert gone["stamp_differed"] is True and not stamp.exists(), gone
    assert ansible("edgejar_deploy_state", {"stamp": str(stamp)}, action=action)["stamp_differed"] is False
