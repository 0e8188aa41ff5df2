"""Filters of the edgejar_llama role: which requirements a wheelhouse satisfies, and what a venv lacks.

Pure functions on file names and `pip list --format=json` output; they run on the controller (which
has `packaging`, a dependency of ansible-core).
"""

from __future__ import annotations

import posixpath
from collections.abc import Iterable, Mapping
from typing import Any

from ansible.errors import AnsibleFilterError
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
    out = []
    for pin in pins:
        req = _requirement(pin)
        have = installed.get(canonicalize_name(req.name))
        if have is None or not req.specifier.contains(have, prereleases=True):
            out.append(pin)
    return out


class FilterModule:
    def filters(self) -> dict[str, Any]:
        return {
            "edgejar_llama_missing_wheels": missing_wheels,
            "edgejar_llama_pinned": pinned,
            "edgejar_llama_not_installed": not_installed,
        }
