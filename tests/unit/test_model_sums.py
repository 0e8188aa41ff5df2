"""The models half of roles/edgejar_deploy's node check (action edgejar_deploy_state, its logic in
module_utils/edgejar_model_files.py), run by Ansible itself on this machine (a local connection): a model
is read in full only when it is new or changed; its sha256 is remembered beside it."""

from __future__ import annotations

import hashlib
import json
import os
import subprocess
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
ROLE = ROOT / "roles" / "edgejar_deploy"


def sums(paths: list[Path], *extra: str, remember: bool = True) -> dict[str, dict[str, object]]:
    result = call({"model_paths": [str(p) for p in paths], "remember": remember}, *extra)
    assert result["changed"] is False
    return result["files"]  # type: ignore[return-value]


def call(params: dict[str, object], *extra: str) -> dict[str, object]:
    """The module's result for `params`, run by `ansible` on localhost (extra: more ansible options)."""
    args = json.dumps(params)
    with tempfile.TemporaryDirectory(prefix="edgejar-model-sums-") as cfg_dir:
        config = Path(cfg_dir) / "ansible.cfg"  # none of the repository's settings
        config.write_text(  # as the role runs it: through the action plugin
            f"[defaults]\nmodule_utils = {ROLE / 'module_utils'}\naction_plugins = {ROLE / 'action_plugins'}\n"
        )
        out = subprocess.run(
            [
                str(Path(sys.executable).parent / "ansible"),
                "localhost",
                "-c",
                "local",
                "-i",
                "localhost,",
                "-M",
                str(ROLE / "library"),
                "-m",
                "edgejar_deploy_state",
                "-a",
                args,
                "-e",
                f"ansible_python_interpreter={sys.executable}",
                *extra,
            ],
            capture_output=True,
            text=True,
            check=False,
            env={
                **os.environ,
                "ANSIBLE_CONFIG": str(config),
                "ANSIBLE_LOCALHOST_WARNING": "false",
                "ANSIBLE_LOAD_CALLBACK_PLUGINS": "1",
                "ANSIBLE_STDOUT_CALLBACK": "minimal",
            },
        )
    assert out.returncode == 0, out.stdout + out.stderr
    return json.loads(out.stdout.split("=>", 1)[1])  # type: ignore[no-any-return]


def test_read_once_then_remembered_until_the_file_changes(tmp_path: Path) -> None:
    model = tmp_path / "m.gguf"
    model.write_bytes(b"weights" * 1000)
    want = hashlib.sha256(model.read_bytes()).hexdigest()
    missing = tmp_path / "none.gguf"

    first = sums([model, missing])
    assert first[str(missing)] == {"exists": False}
    assert first[str(model)] == {"exists": True, "sha256": want, "source": "read"}
    sidecar = tmp_path / ".m.gguf.sha256"
    assert json.loads(sidecar.read_text())["sha256"] == want

    assert sums([model])[str(model)]["source"] == "sidecar"

    # written in place (a new modification time): read again, and the new sum is the one remembered
    with model.open("r+b") as f:
        f.write(b"DAMAGED")
    st = model.stat()
    os.utime(model, ns=(st.st_atime_ns, st.st_mtime_ns + 1_000_000_000))
    damaged = hashlib.sha256(model.read_bytes()).hexdigest()
    assert sums([model])[str(model)] == {"exists": True, "sha256": damaged, "source": "read"}

    # replaced by another file (a new inode, as rsync's rename makes): read again
    fresh = tmp_path / "fresh"
    fresh.write_bytes(b"weights" * 1000)
    os.utime(fresh, ns=(model.stat().st_atime_ns, model.stat().st_mtime_ns))
    fresh.replace(model)
    assert sums([model])[str(model)] == {"exists": True, "sha256": want, "source": "read"}


def test_a_forged_or_broken_sidecar_is_not_trusted(tmp_path: Path) -> None:
    model = tmp_path / "m.gguf"
    model.write_bytes(b"abc")
    sidecar = tmp_path / ".m.gguf.sha256"
    sidecar.write_text("not json")
    assert sums([model])[str(model)]["source"] == "read"
    data = json.loads(sidecar.read_text())
    sidecar.write_text(json.dumps({**data, "size": data["size"] + 1, "sha256": "0" * 64}))
    assert sums([model])[str(model)] == {
        "exists": True,
        "sha256": hashlib.sha256(b"abc").hexdigest(),
        "source": "read",
    }


def test_check_mode_and_rehash_write_no_sidecar(tmp_path: Path) -> None:
    model = tmp_path / "m.gguf"
    model.write_bytes(b"abc")
    assert sums([model], "--check")[str(model)]["source"] == "read"
    assert sums([model], remember=False)[str(model)]["source"] == "read"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["m.gguf"]


def test_list_dir_lists_the_model_files_in_the_same_call(tmp_path: Path) -> None:
    import importlib.util

    spec = importlib.util.spec_from_file_location("files", ROLE / "module_utils" / "edgejar_model_files.py")
    assert spec and spec.loader
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    (tmp_path / "a.gguf").write_bytes(b"a")
    (tmp_path / "b.gguf").write_bytes(b"b")
    (tmp_path / ".b.gguf.sha256").write_text("{}")
    (tmp_path / "notes.txt").write_text("x")
    (tmp_path / "dir.gguf").mkdir()
    (tmp_path / "link.gguf").symlink_to(tmp_path / "a.gguf")
    assert mod.listed(str(tmp_path), "*.gguf") == [str(tmp_path / "a.gguf"), str(tmp_path / "b.gguf")]
    assert mod.listed(str(tmp_path / "missing"), "*.gguf") == []


def test_prune_removes_the_models_not_asked_for_with_their_sidecars_in_the_same_call(tmp_path: Path) -> None:
    keep, gone = tmp_path / "keep.gguf", tmp_path / "gone.gguf"
    keep.write_bytes(b"k")
    gone.write_bytes(b"g")
    sums([keep, gone])  # both get a sidecar
    (tmp_path / "notes.txt").write_text("not a model")
    params = {"model_paths": [str(keep)], "list_dir": str(tmp_path), "prune": True}
    checked = call(params, "--check")
    assert checked["changed"] is True and checked["removed"] == [str(gone)]
    assert gone.exists() and (tmp_path / ".gone.gguf.sha256").exists()  # --check removes nothing
    done = call(params)
    assert done["changed"] is True and done["removed"] == [str(gone)]
    assert sorted(p.name for p in tmp_path.iterdir()) == [".keep.gguf.sha256", "keep.gguf", "notes.txt"]
    assert call(params)["changed"] is False
