"""Filters of the edgejar_llama role: which requirements a wheelhouse satisfies, what a venv lacks, and
what a hashed lock (files/locks/*.txt) pins for one node.

Pure functions on file names, `pip list --format=json` output and lock text; they run on the controller
(which has `packaging`, a dependency of ansible-core).
"""

from __future__ import annotations

import posixpath
from collections.abc import Iterable, Mapping
from typing import Any

from ansible.errors import AnsibleFilterError
from packaging.markers import UndefinedComparison, UndefinedEnvironmentName
from packaging.requirements import InvalidRequirement, Requirement
from packaging.utils import InvalidWheelFilename, canonicalize_name, parse_wheel_filename
from packaging.version import Version


def _requirement(spec: str) -> Requirement:
    try:
        return Requirement(spec)
    except InvalidRequirement as e:
        raise AnsibleFilterError(f"edgejar_llama_packages: {spec!r} is not a requirement: {e}") from e


def _wheels(files: Iterable[str]) -> list[tuple[str, Version, str]]:
    """(canonical name, version, file name) of each wheel file among `files` (paths or names)."""
    found = []
    for path in files:
        name = posixpath.basename(str(path))
        if not name.endswith(".whl"):
            continue
        try:
            dist, version, _build, _tags = parse_wheel_filename(name)
        except InvalidWheelFilename:
            continue
        found.append((str(dist), version, name))
    return found


def _best(req: Requirement, wheels: list[tuple[str, Version, str]]) -> tuple[Version, str] | None:
    """The highest version among `wheels` that satisfies `req` (what pip would pick), or None."""
    name = canonicalize_name(req.name)
    fits = [(v, f) for d, v, f in wheels if d == name and req.specifier.contains(v, prereleases=True)]
    return max(fits) if fits else None


def missing_wheels(specs: Iterable[str], files: Iterable[str]) -> list[str]:
    """The requirements in `specs` that no wheel among `files` satisfies."""
    wheels = _wheels(files)
    return [spec for spec in specs if _best(_requirement(spec), wheels) is None]


def pinned(specs: Iterable[str], files: Iterable[str]) -> list[str]:
    """Each requirement pinned to the version pip would take from `files`: `name==version`."""
    wheels = _wheels(files)
    pins = []
    for spec in specs:
        req = _requirement(spec)
        best = _best(req, wheels)
        if best is None:
            raise AnsibleFilterError(f"no wheel satisfies {spec!r}")
        pins.append(f"{canonicalize_name(req.name)}=={best[0]}")
    return pins


def not_installed(pins: Iterable[str], pip_list: Iterable[Mapping[str, Any]]) -> list[str]:
    """The `name==version` pins that `pip list --format=json` output does not show installed as such."""
    installed: dict[str, Version] = {}
    for dist in pip_list:
        try:
            installed[canonicalize_name(str(dist["name"]))] = Version(str(dist["version"]))
        except (KeyError, ValueError):
            continue
    return _unsatisfied(pins, installed)


def _unsatisfied(specs: Iterable[str], have: Mapping[str, Version]) -> list[str]:
    """The requirements in `specs` whose package `have` (canonical name -> version) lacks or holds at a
    version the requirement does not take."""
    out = []
    for spec in specs:
        req = _requirement(spec)
        version = have.get(canonicalize_name(req.name))
        if version is None or not req.specifier.contains(version, prereleases=True):
            out.append(spec)
    return out


# --- hashed locks ------------------------------------------------------------------------------------
# A lock is pip's requirements format as `uv pip compile --universal --generate-hashes` writes it: one
# `name==version ; marker` per package and version (a package may have one entry per Python range), each
# with the sha256 of every file of that version (`--hash=sha256:...`), lines continued with `\`,
# `#` comments. Its markers are evaluated here, for the node a build is for, because pip evaluates them
# for the Python running it, which for a cross build (`pip download --platform`) is not the node's.


def _lock_lines(text: str) -> list[tuple[int, str]]:
    """The logical lines of a requirements file (continuations joined, comments dropped), each with the
    number of its first physical line."""
    out: list[tuple[int, str]] = []
    pending: list[str] = []
    start = 0
    for number, raw in enumerate(str(text).splitlines(), 1):
        line = raw.split(" #", 1)[0] if not raw.lstrip().startswith("#") else ""
        if not pending:
            start = number
        stripped = line.rstrip()
        if stripped.endswith("\\"):
            pending.append(stripped[:-1])
            continue
        pending.append(stripped)
        joined = " ".join(part.strip() for part in pending).strip()
        pending = []
        if joined:
            out.append((start, joined))
    if pending and " ".join(pending).strip():
        out.append((start, " ".join(part.strip() for part in pending).strip()))
    return out


def lock_entries(text: str, source: str = "lock") -> list[dict[str, Any]]:
    """Every entry of a lock: {name, version, marker (text or None), hashes, line}; an entry that is not
    one exact pin with at least one sha256 is an error naming the file and line."""
    entries = []
    for number, line in _lock_lines(text):
        tokens = line.split()
        hashes = [t.split("=", 1)[1] for t in tokens if t.startswith("--hash=")]
        others = [t for t in tokens if t.startswith("-") and not t.startswith("--hash=")]
        spec = " ".join(t for t in tokens if not t.startswith("--hash="))
        where = f"{source}, line {number}"
        if others:
            raise AnsibleFilterError(f"{where}: a lock holds requirements with --hash only, not {others[0]}")
        try:
            req = Requirement(spec)
        except InvalidRequirement as e:
            raise AnsibleFilterError(f"{where}: {spec!r} is not a requirement: {e}") from e
        pins = list(req.specifier)
        if len(pins) != 1 or pins[0].operator != "==" or "*" in pins[0].version:
            raise AnsibleFilterError(f"{where}: {req.name} is not pinned to one version (name==version)")
        bad = [h for h in hashes if not h.startswith("sha256:") or len(h) != len("sha256:") + 64]
        if not hashes or bad:
            raise AnsibleFilterError(
                f"{where}: {req.name}=={pins[0].version} has no sha256 hash (--hash=sha256:<64 hex digits>)"
            )
        entries.append(
            {
                "name": canonicalize_name(req.name),
                "version": pins[0].version,
                "marker": str(req.marker) if req.marker else None,
                "hashes": hashes,
                "line": number,
            }
        )
    return entries


def _environment(env: Mapping[str, Any]) -> dict[str, str]:
    """A full marker environment of a Linux CPython node from its machine and Python version."""
    full = str(env["python_full_version"])
    return {
        "implementation_name": "cpython",
        "implementation_version": full,
        "os_name": "posix",
        "platform_machine": str(env["platform_machine"]),
        "platform_python_implementation": "CPython",
        "platform_release": "",
        "platform_system": "Linux",
        "platform_version": "",
        "python_full_version": full,
        "python_version": ".".join(full.split(".")[:2]),
        "sys_platform": "linux",
        "extra": "",
    }


def _applies(entry: Mapping[str, Any], environment: dict[str, str], source: str) -> bool:
    if entry["marker"] is None:
        return True
    try:
        return bool(Requirement(f"x ; {entry['marker']}").marker.evaluate(environment))  # type: ignore[union-attr]
    except (UndefinedComparison, UndefinedEnvironmentName) as e:
        raise AnsibleFilterError(f"{source}, line {entry['line']}: marker {entry['marker']!r}: {e}") from e


def _selected(text: str, env: Mapping[str, Any], source: str) -> list[dict[str, Any]]:
    environment = _environment(env)
    chosen = [e for e in lock_entries(text, source) if _applies(e, environment, source)]
    seen: dict[str, dict[str, Any]] = {}
    for entry in chosen:
        if entry["name"] in seen:
            raise AnsibleFilterError(
                f"{source}: {entry['name']} is pinned twice for {environment['platform_machine']} Python "
                f"{environment['python_full_version']} "
                f"(lines {seen[entry['name']]['line']} and {entry['line']})"
            )
        seen[entry["name"]] = entry
    return chosen


def locked(text: str, env: Mapping[str, Any], source: str = "lock") -> list[str]:
    """The `name==version` pins of a lock that apply to a node (env: platform_machine and
    python_full_version)."""
    return [f"{e['name']}=={e['version']}" for e in _selected(text, env, source)]


def lock_requirements(
    text: str,
    env: Mapping[str, Any],
    source: str = "lock",
    only: Iterable[str] | None = None,
    exclude: Iterable[str] = (),
) -> str:
    """The lock's entries for a node as a requirements file pip takes with --require-hashes (markers
    evaluated and dropped); `only`/`exclude`: names to keep or leave out."""
    keep = None if only is None else {canonicalize_name(n) for n in only}
    drop = {canonicalize_name(n) for n in exclude}
    lines = []
    for e in _selected(text, env, source):
        if (keep is not None and e["name"] not in keep) or e["name"] in drop:
            continue
        lines.append(" ".join([f"{e['name']}=={e['version']}", *(f"--hash={h}" for h in e["hashes"])]))
    return "".join(line + "\n" for line in lines)


def unlocked(specs: Iterable[str], pins: Iterable[str]) -> list[str]:
    """The requirements in `specs` that no `name==version` pin of a lock satisfies (extras aside: a lock
    pins the extra's packages as packages of their own)."""
    versions = {}
    for pin in pins:
        req = _requirement(pin)
        versions[canonicalize_name(req.name)] = Version(next(iter(req.specifier)).version)
    return _unsatisfied(specs, versions)


class FilterModule:
    def filters(self) -> dict[str, Any]:
        return {
            "edgejar_llama_missing_wheels": missing_wheels,
            "edgejar_llama_pinned": pinned,
            "edgejar_llama_not_installed": not_installed,
            "edgejar_llama_locked": locked,
            "edgejar_llama_lock_requirements": lock_requirements,
            "edgejar_llama_unlocked": unlocked,
        }
