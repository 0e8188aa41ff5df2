"""Shared role values are defined once (roles/edgejar_defaults), and every role that uses one depends on it."""

from __future__ import annotations

import yaml

from tests.conftest import ROOT

ROLES = ROOT / "roles"
SHARED = yaml.safe_load((ROLES / "edgejar_defaults/defaults/main.yml").read_text())


def role_defaults() -> dict[str, dict[str, object]]:
    return {
        p.parent.parent.name: yaml.safe_load(p.read_text()) or {}
        for p in sorted(ROLES.glob("*/defaults/main.yml"))
        if p.parent.parent.name != "edgejar_defaults"
    }


def test_no_role_repeats_a_shared_value() -> None:
    repeated = {
        f"{role}: {name}"
        for role, values in role_defaults().items()
        for name, value in values.items()
        if value in SHARED.values()
    }
    assert not repeated, f"use the edgejar_defaults_* variable instead: {sorted(repeated)}"


def test_every_role_that_uses_a_shared_value_depends_on_edgejar_defaults() -> None:
    users = {
        role for role, values in role_defaults().items() if "edgejar_defaults_" in yaml.safe_dump(values)
    }
    assert {"edgejar_launch", "edgejar_deploy", "edgejar_base"} <= users
    for role in users:
        meta = yaml.safe_load((ROLES / role / "meta/main.yml").read_text())
        assert {"role": "edgejar_defaults"} in meta["dependencies"], role
