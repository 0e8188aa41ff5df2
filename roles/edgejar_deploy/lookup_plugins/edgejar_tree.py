"""Lookup edgejar_tree: the controller's side of edgejar_deploy's code check.

What rsync's quick check compares, for every path under the given top paths (names matching an exclude
pattern left out, as rsync leaves them out): a regular file's size and modification time in whole
seconds, a symlink's target, that a directory exists. The walk is the node module's own
(module_utils/edgejar_code_tree.py, which edgejar_deploy_state runs on the node), so both sides compare
by one rule.
"""

from __future__ import annotations

import importlib.util
import os
from collections.abc import Callable
from pathlib import Path
from typing import Any

from ansible.errors import AnsibleLookupError
from ansible.plugins.lookup import LookupBase

DOCUMENTATION = r"""
name: edgejar_tree
short_description: What rsync's quick check compares, for project paths on the controller
description:
  - Returns one mapping, relative path -> C(f <size> <mtime in s>), C(l <target>) or C(d), for every
    file, symlink and directory under the named paths of C(root); names matching an exclude pattern and
    everything below them are left out.
options:
  _terms: {description: Paths under root (files or directories)., required: true}
  root: {description: The directory the paths are relative to., type: str, required: true}
  excludes:
    description:
      - rsync exclude patterns that match a name at any depth (C(*.pyc)); a trailing C(/) matches
        directories only. Patterns with another C(/) are refused.
    type: list
    elements: str
    default: []
"""


def _walker() -> Callable[[str, list[str], list[str]], dict[str, str]]:
    """The node module's own walk (one rule for both sides), loaded from the role's module_utils."""
    path = Path(__file__).resolve().parents[1] / "module_utils" / "edgejar_code_tree.py"
    spec = importlib.util.spec_from_file_location("_edgejar_code_tree", path)
    if spec is None or spec.loader is None:
        raise AnsibleLookupError(f"edgejar_tree: cannot load {path}")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module.tree  # type: ignore[no-any-return]


class LookupModule(LookupBase):
    def run(self, terms: list[Any], variables: Any = None, **kwargs: Any) -> list[dict[str, str]]:
        self.set_options(var_options=variables, direct=kwargs)
        root = str(self.get_option("root"))
        excludes = [str(p) for p in self.get_option("excludes")]
        for pattern in excludes:
            if "/" in pattern.rstrip("/"):
                raise AnsibleLookupError(
                    f"edgejar_tree: exclude pattern {pattern!r}: only name patterns (no '/' but a trailing "
                    "one) can be compared without rsync"
                )
        if not os.path.isdir(root):
            raise AnsibleLookupError(f"edgejar_tree: {root} is not a directory on the controller")
        return [_walker()(root, [str(t) for t in terms], excludes)]
