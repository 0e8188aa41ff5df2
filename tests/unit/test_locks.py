"""The node venv's hashed locks: the role's lock filters, and the committed locks against their inputs.

The filters are pure (lock text and a node's machine and Python in, pins or a requirements file out);
the committed locks are checked for being up to date with edgejar_llama_packages (scripts/lock.py records
its inputs' sha256), complete (every direct requirement pinned for every node platform they cover) and
in step with the controller's own `node` extra (the runtime tests run what the nodes run).
"""

from __future__ import annotations

import tomllib

import pytest
import yaml
from ansible.errors import AnsibleFilterError

from tests.conftest import LLAMA_FILTERS, ROOT, load_module

LOCKS = ROOT / "roles" / "edgejar_llama" / "files" / "locks"


F = load_module(LLAMA_FILTERS, "edgejar_llama_filters")
LOCK_SCRIPT = load_module(ROOT / "scripts" / "lock.py", "edgejar_lock_script")
H1, H2, H3 = ("sha256:" + c * 64 for c in "abc")
X86_311 = {"platform_machine": "x86_64", "python_full_version": "3.11.2"}
ARM_310 = {"platform_machine": "aarch64", "python_full_version": "3.10.12"}
ARM_312 = {"platform_machine": "aarch64", "python_full_version": "3.12.3"}

SAMPLE = f"""\
# a header comment
aiohttp==3.14.5 \\
    --hash={H1} \\
    --hash={H2}
numpy==2.2.6 ; python_full_version < '3.11' \\
    --hash={H1}
numpy==2.4.6 ; python_full_version == '3.11.*' \\
    --hash={H2}
numpy==2.5.5 ; python_full_version >= '3.12' \\
    --hash={H3}
soupsieve==2.10 ; python_full_version < '3.11.5' --hash={H1}
torch==2.13.0+cpu ; platform_machine == 'x86_64' and python_version == '3.11' \\
    --hash={H3}
pywinpty==3.1.2 ; os_name == 'nt' \\
    --hash={H1}
appnope==1.0.0 ; sys_platform == 'darwin' \\
    --hash={H2}
"""


def test_entries_of_a_lock_with_continuations_markers_and_comments() -> None:
    entries = F.lock_entries(SAMPLE, "sample.txt")
    assert [(e["name"], e["version"], e["line"]) for e in entries][:3] == [
        ("aiohttp", "3.14.5", 2),
        ("numpy", "2.2.6", 5),
        ("numpy", "2.4.6", 7),
    ]
    assert entries[0]["hashes"] == [H1, H2] and entries[0]["marker"] is None
    assert entries[1]["marker"] == 'python_full_version < "3.11"'


@pytest.mark.parametrize(
    ("env", "expected"),
    [
        (X86_311, ["aiohttp==3.14.5", "numpy==2.4.6", "soupsieve==2.10", "torch==2.13.0+cpu"]),
        (ARM_310, ["aiohttp==3.14.5", "numpy==2.2.6", "soupsieve==2.10"]),
        (ARM_312, ["aiohttp==3.14.5", "numpy==2.5.5"]),
        ({"platform_machine": "x86_64", "python_full_version": "3.11.9"}, ["aiohttp==3.14.5", "numpy==2.4.6",
                                                                          "torch==2.13.0+cpu"]),
    ],
)  # fmt: skip
def test_markers_are_evaluated_for_the_node_not_the_controller(
    env: dict[str, str], expected: list[str]
) -> None:
    # Never Windows or macOS entries; the Python version is the node's, full (3.11.2 keeps soupsieve 2.10).
    assert F.locked(SAMPLE, env, "sample.txt") == expected


def test_requirements_for_pip_keep_the_hashes_and_drop_the_markers() -> None:
    text = F.lock_requirements(SAMPLE, X86_311, "sample.txt", exclude=["Torch"])
    assert text.splitlines() == [
        f"aiohttp==3.14.5 --hash={H1} --hash={H2}",
        f"numpy==2.4.6 --hash={H2}",
        f"soupsieve==2.10 --hash={H1}",
    ]
    assert (
        F.lock_requirements(SAMPLE, X86_311, "sample.txt", only=["torch"])
        == f"torch==2.13.0+cpu --hash={H3}\n"
    )
    assert F.lock_requirements(SAMPLE, ARM_312, "sample.txt", only=["torch"]) == ""


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("numpy>=2 --hash=" + H1, r"bad\.txt, line 1: numpy is not pinned to one version"),
        ("numpy==2.*  --hash=" + H1, r"bad\.txt, line 1: numpy is not pinned"),
        ("# c\n\nnumpy==2.4.6\n", r"bad\.txt, line 3: numpy==2\.4\.6 has no sha256 hash"),
        ("numpy==2.4.6 --hash=md5:abc", r"has no sha256 hash"),
        ("numpy==2.4.6 --hash=sha256:abc", r"has no sha256 hash"),
        ("-e ./src --hash=" + H1, r"bad\.txt, line 1: a lock holds requirements with --hash only, not -e"),
        ("numpy=>2 --hash=" + H1, r"bad\.txt, line 1: 'numpy=>2' is not a requirement"),
    ],
)
def test_a_malformed_lock_names_its_file_and_line(text: str, message: str) -> None:
    with pytest.raises(AnsibleFilterError, match=message):
        F.locked(text, X86_311, "bad.txt")


def test_two_entries_for_one_node_are_an_error() -> None:
    text = f"numpy==2.4.6 --hash={H1}\nnumpy==2.5.5 ; python_version >= '3.11' --hash={H2}\n"
    with pytest.raises(
        AnsibleFilterError, match=r"numpy is pinned twice for x86_64 Python 3\.11\.2 \(lines 1 and 2\)"
    ):
        F.locked(text, X86_311, "two.txt")
    assert F.locked(text, ARM_310, "two.txt") == ["numpy==2.4.6"]


def test_unlocked_names_the_requirements_no_pin_satisfies() -> None:
    pins = ["llama-cpp-python==0.3.36", "numpy==2.4.6", "torch==2.13.0+cpu", "ipykernel==7.3.0"]
    specs = ["llama-cpp-python[server]==0.3.36", "NumPy", "torch==2.13.0", "ipykernel>=7.4", "psutil"]
    # An extra's packages are pinned on their own; a local version (+cpu) satisfies its public version.
    assert F.unlocked(specs, pins) == ["ipykernel>=7.4", "psutil"]


# --- the committed locks -----------------------------------------------------------------------------


def defaults() -> dict:
    return yaml.safe_load((ROOT / "roles" / "edgejar_llama" / "defaults" / "main.yml").read_text())


@pytest.mark.parametrize("name", ["base", "torch", "build"])
def test_each_lock_is_up_to_date_with_its_inputs(name: str) -> None:
    recorded = LOCK_SCRIPT.recorded_digest(LOCKS / f"{name}.txt")
    assert recorded == LOCK_SCRIPT.digests()[name], (
        f"roles/edgejar_llama/files/locks/{name}.txt is older than its inputs: run `make lock`"
    )


def test_the_digest_changes_with_the_package_list() -> None:
    base = LOCK_SCRIPT.base_inputs()
    assert "llama-cpp-python[server]==0.3.36\n" in base
    assert LOCK_SCRIPT.inputs_digest(base, "3.10") != LOCK_SCRIPT.inputs_digest(base + "extra\n", "3.10")


NODES = [
    X86_311,
    {"platform_machine": "aarch64", "python_full_version": "3.11.2"},  # a Pi 5 on Raspberry Pi OS 12
    ARM_310,  # a Jetson on JetPack 6 (Ubuntu 22.04)
    ARM_312,  # Ubuntu 24.04
    {"platform_machine": "x86_64", "python_full_version": "3.13.5"},  # Debian 13
]


@pytest.mark.parametrize("env", NODES, ids=lambda e: f"{e['platform_machine']}-{e['python_full_version']}")
def test_the_base_lock_pins_every_package_for_every_node_platform(env: dict[str, str]) -> None:
    text = (LOCKS / "base.txt").read_text()
    pins = F.locked(text, env, "base.txt")
    assert F.unlocked(defaults()["edgejar_llama_packages"], pins) == []
    # Every entry carries hashes (lock_entries refuses one without); the build lock too.
    assert F.lock_entries((LOCKS / "build.txt").read_text(), "build.txt")


def test_the_torch_lock_covers_x86_64_with_python_3_11_and_agrees_with_the_base_lock() -> None:
    torch_text = (LOCKS / "torch.txt").read_text()
    pins = F.locked(torch_text, X86_311, "torch.txt")
    assert F.unlocked(defaults()["edgejar_llama_torch_packages"], pins) == []
    assert "torch==2.13.0+cpu" in pins  # PyTorch's CPU build, not PyPI's with CUDA libraries
    assert not [p for p in pins if p.startswith("nvidia-")]
    # Installed together: a package both pin has one version.
    base = dict(p.split("==") for p in F.locked((LOCKS / "base.txt").read_text(), X86_311, "base.txt"))
    clashes = {n: (v, base[n]) for n, v in (p.split("==") for p in pins) if n in base and base[n] != v}
    assert not clashes
    # Not covered (files/locks/torch.in says why): the role stops such a node with a message.
    assert F.unlocked(["torch==2.13.0"], F.locked(torch_text, ARM_312, "torch.txt")) == ["torch==2.13.0"]


def test_the_controllers_node_extra_pins_what_the_lock_gives_a_debian_12_node() -> None:
    """pyproject's `node` extra (the runtime tests' llama-cpp-python, front door and kernels) is exact as
    on the nodes: its pins equal the lock's for x86_64 with Debian 12's Python."""
    extra = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["optional-dependencies"]["node"]
    base = dict(p.split("==") for p in F.locked((LOCKS / "base.txt").read_text(), X86_311, "base.txt"))
    pinned = [s for s in extra if "==" in s]
    assert len(pinned) >= 5
    for spec in pinned:
        name, version = spec.split("==")
        name = name.split("[")[0].lower()
        assert base.get(name) == version, (spec, base.get(name))
