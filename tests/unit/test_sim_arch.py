"""Foreign-architecture hosts: binfmt_misc entries, rootfs cache names per architecture, the APT repo."""

from __future__ import annotations

from pathlib import Path

import pytest

from runner.sim import aptrepo, binfmt
from runner.sim.rootfs import Rootfs, entry_name, same_arch_entries

ENTRY = """{state}
interpreter /usr/libexec/qemu-binfmt/aarch64-binfmt-P
flags: {flags}
offset 0
magic 7f454c460201010000000000000000000200b700
mask ffffffffffffff00fffffffffffffffffeffffff
"""


def binfmt_dir(tmp_path: Path, entries: dict[str, str]) -> Path:
    d = tmp_path / "binfmt_misc"
    d.mkdir()
    (d / "status").write_text("enabled\n")
    (d / "register").write_text("")
    for name, text in entries.items():
        (d / name).write_text(text)
    return d


def test_an_entry_serves_arm64_only_with_fix_binary_and_credentials(tmp_path: Path) -> None:
    # Debian's own entry (systemd-binfmt) lacks C: a setuid sudo would run without root inside.
    debian = binfmt_dir(tmp_path, {"qemu-aarch64": ENTRY.format(state="enabled", flags="POF")})
    assert binfmt.serving_entry(debian) is None
    (debian / "edgejar-aarch64").write_text(ENTRY.format(state="enabled", flags="POCF"))
    assert binfmt.serving_entry(debian) == "edgejar-aarch64"
    (debian / "edgejar-aarch64").write_text(ENTRY.format(state="disabled", flags="POCF"))
    assert binfmt.serving_entry(debian) is None


def test_no_binfmt_misc_mounted_serves_nothing(tmp_path: Path) -> None:
    assert binfmt.serving_entry(tmp_path) is None


def test_rootfs_cache_names_per_architecture() -> None:
    assert entry_name("0123456789abcdef", "amd64", "amd64") == "rootfs-0123456789abcdef"
    assert entry_name("0123456789abcdef", "arm64", "amd64") == "rootfs-arm64-0123456789abcdef"
    names = ["rootfs-0123456789abcdef", "rootfs-arm64-0123456789abcdef", "rootfs-fedcba9876543210.partial"]
    # Pruning an older recipe of one architecture never touches the other's cache.
    assert same_arch_entries(names, "amd64", "amd64") == ["rootfs-0123456789abcdef"]
    assert same_arch_entries(names, "arm64", "amd64") == ["rootfs-arm64-0123456789abcdef"]


def test_repo_of_one_rootfs_keeps_its_name_and_two_get_their_own(tmp_path: Path) -> None:
    amd = Rootfs(tmp_path / "rootfs-aaaaaaaaaaaaaaaa", "aaaaaaaaaaaaaaaa", "amd64")
    arm = Rootfs(tmp_path / "rootfs-arm64-bbbbbbbbbbbbbbbb", "bbbbbbbbbbbbbbbb", "arm64")
    assert aptrepo.repo_hash(amd) == aptrepo.repo_hash([amd])
    assert aptrepo.repo_hash([amd, arm]) == aptrepo.repo_hash([arm, amd]) != aptrepo.repo_hash(amd)


def test_stale_repos_are_those_whose_rootfs_builds_are_gone(tmp_path: Path) -> None:
    for name in ("rootfs-aaaaaaaaaaaaaaaa", "rootfs-arm64-bbbbbbbbbbbbbbbb"):
        (tmp_path / name).mkdir()
        (tmp_path / name / ".complete").write_text("x\n")
    repos = {
        "apt-repo-1": '{"rootfs": ["rootfs-aaaaaaaaaaaaaaaa"]}',
        "apt-repo-2": '{"rootfs": ["rootfs-aaaaaaaaaaaaaaaa", "rootfs-arm64-bbbbbbbbbbbbbbbb"]}',
        "apt-repo-3": '{"rootfs": ["rootfs-cccccccccccccccc"]}',  # its rootfs was pruned
        "apt-repo-4": None,  # built before repositories recorded their sources
    }
    for name, sources in repos.items():
        (tmp_path / name).mkdir()
        if sources is not None:
            (tmp_path / name / aptrepo.SOURCES).write_text(sources)
    stale = aptrepo.stale_repos(tmp_path, keep=tmp_path / "apt-repo-1")
    assert [p.name for p in stale] == ["apt-repo-3", "apt-repo-4"]


def test_sim_check_names_the_packages_arm64_hosts_need(monkeypatch: pytest.MonkeyPatch) -> None:
    from runner.sim import doctor, preflight

    everything_missing = preflight.missing_tools
    monkeypatch.setattr(
        preflight, "missing_tools", lambda tools: everything_missing(tools, which=lambda t: None)
    )
    found = doctor._arm64()
    assert not found.ok and not found.required  # optional: only the aarch64 stage needs it
    for package in ("qemu-user-static", "gcc-aarch64-linux-gnu", "g++-aarch64-linux-gnu"):
        assert package in found.detail, found.detail
