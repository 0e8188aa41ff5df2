"""The options of the module edgejar_instances (its argument_spec): data alone, so that the action plugin
can check a task's arguments on the controller with Ansible's own validator."""

from __future__ import annotations

from typing import Any

SPEC: dict[str, dict[str, Any]] = {
    "unit": {"type": "str", "required": True},
    "unit_dir": {"type": "path", "required": True},
    "config_dir": {"type": "path", "required": True},
    "data_dir": {"type": "path", "required": True},
    "user": {"type": "str", "required": True},
    "group": {"type": "str", "required": True},
    "template": {"type": "str", "required": True},
    "instances": {"type": "list", "required": True},  # checked by bad_entries
    "models_dir": {"type": "path", "required": True},
    "catalog": {"type": "dict", "default": {}},
    "secrets_dir": {"type": "path", "required": True},
    "memory_swap_max": {"type": "str", "default": "0"},
    "cpu_quota": {"type": "str", "default": ""},  # CPUQuota= of every unit on the node ("": none)
    "managed": {"type": "str", "default": "Ansible managed"},
    # Only the contents are secret: a no_log value is masked wherever it appears in the output,
    # so the files' paths and instance ids must not be part of it.
    "files": {"type": "list", "elements": "dict", "default": []},
    "contents": {"type": "list", "elements": "str", "default": [], "no_log": True},
    "prune": {"type": "bool", "default": True},
    "wait_timeout": {"type": "int", "default": 120},
    "log_lines": {"type": "int", "default": 20},
    "host": {"type": "str", "default": "this node"},
    # Training units (kind torch_distributed): their template (empty: none are reconciled), entries and
    # the code directory their configs name.
    "training": {"type": "list", "default": []},  # checked by bad_entries
    "training_unit": {"type": "str", "default": "edgejar-train"},
    "training_template": {"type": "str", "default": ""},
    "code_dir": {"type": "path", "default": "/opt/edgejar/app"},
    # When `deployed` is given, the deploy stamp must hold it before anything is changed (docs/e2e.md).
    "deploy_stamp": {"type": "path", "default": ""},
    "deployed": {"type": "str", "default": ""},
}
