"""Each role's documented interface (meta/argument_specs.yml) matches its defaults (defaults/main.yml).

Rules: every default is a documented option; a literal default is the spec's default, word for word
(a templated default, `{{ ... }}`, is described in words instead; a required option's placeholder in
defaults/main.yml is not a default); every literal default passes its own spec. That Ansible enforces the specs when a role runs is molecule's default scenario
(molecule/default/converge.yml).
"""

from __future__ import annotations

from typing import Any

import pytest
import yaml
from ansible.module_utils.common.arg_spec import ArgumentSpecValidator

from tests.conftest import ROOT

ROLES = sorted(p.parent.parent.name for p in (ROOT / "roles").glob("*/meta/argument_specs.yml"))


def spec(role: str) -> dict[str, Any]:
    return yaml.safe_load((ROOT / "roles" / role / "meta/argument_specs.yml").read_text())["argument_specs"]


def defaults(role: str) -> dict[str, Any]:
    path = ROOT / "roles" / role / "defaults/main.yml"
    return (yaml.safe_load(path.read_text()) or {}) if path.exists() else {}


def templated(value: Any) -> bool:
    return "{{" in yaml.safe_dump(value)


def test_every_role_but_the_shared_values_has_a_spec() -> None:
    with_defaults = {p.parent.parent.name for p in (ROOT / "roles").glob("*/defaults/main.yml")}
    assert with_defaults - set(ROLES) == {"edgejar_defaults"}  # values for other roles, no entry point


@pytest.mark.parametrize("role", ROLES)
def test_every_default_is_documented(role: str) -> None:
    options = spec(role)["main"].get("options", {})
    undocumented = sorted(set(defaults(role)) - set(options))
    assert not undocumented, (
        f"{role}: defaults/main.yml sets options meta/argument_specs.yml lacks: {undocumented}"
    )


@pytest.mark.parametrize("role", ROLES)
def test_a_literal_default_is_the_documented_one(role: str) -> None:
    options = spec(role)["main"].get("options", {})
    stale = {
        name: (value, options[name].get("default"))
        for name, value in defaults(role).items()
        if name in options
        and not templated(value)
        and not options[name].get("required")
        and options[name].get("default") != value
    }
    assert not stale, f"{role}: (defaults/main.yml, meta/argument_specs.yml) disagree: {stale}"


@pytest.mark.parametrize("role", ROLES)
def test_every_literal_default_passes_its_spec(role: str) -> None:
    literal = {name: value for name, value in defaults(role).items() if not templated(value)}
    for entry, entry_spec in spec(role).items():
        options = entry_spec.get("options", {})
        given = {name: value for name, value in literal.items() if name in options}
        # The spec's own defaults (descriptions of templated ones among them) and required options
        # are not under test here: only the values given.
        bare = {
            name: {k: v for k, v in option.items() if k not in ("default", "required")}
            for name, option in options.items()
        }
        errors = ArgumentSpecValidator(bare).validate(given).error_messages
        assert not errors, f"{role} ({entry}): {errors}"


def test_a_wrong_type_is_refused_by_name() -> None:
    # The spec of a role is what refuses bad input before any task runs; one typed option per role.
    for role in ROLES:
        for entry, entry_spec in spec(role).items():
            options = entry_spec.get("options", {})
            typed = [n for n, o in options.items() if o.get("type") in ("bool", "int", "float", "list")]
            if not typed:
                continue
            result = ArgumentSpecValidator(options).validate({typed[0]: {"not": "valid"}})
            assert any(typed[0] in e for e in result.error_messages), (role, entry, result.error_messages)
