"""The options of edgejar_deploy's node check (the module's argument_spec): data alone, so that the action
plugin can check a task's arguments on the controller with Ansible's own validator."""

from __future__ import annotations

from typing import Any

SPEC: dict[str, dict[str, Any]] = {
    "venv": {"type": "path"},
    "pth_name": {"type": "str"},
    "dest": {"type": "path"},
    "paths": {"type": "list", "elements": "str", "default": []},
    "excludes": {"type": "list", "elements": "str", "default": []},
    "want": {"type": "dict", "default": {}},
    "model_paths": {"type": "list", "elements": "path", "default": []},
    "remember": {"type": "bool", "default": True},
    "list_dir": {"type": "path"},
    "pattern": {"type": "str", "default": "*.gguf"},
    "prune": {"type": "bool", "default": False},
    # The deploy stamp (docs/e2e.md): this file holds `fingerprint`, or is removed when it is empty.
    "stamp": {"type": "path"},
    "fingerprint": {"type": "str", "default": ""},
}
REQUIRED_IF = [("prune", True, ("list_dir",))]
REQUIRED_TOGETHER = [("dest", "venv", "pth_name")]
