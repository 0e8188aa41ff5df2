"""Lookup edgejar_model_sums: the models half of the module edgejar_deploy_state, run in the controller's
own process.

The controller's model files are checksummed by the very function the node module uses
(module_utils/edgejar_model_files.py: the sidecar rule is written once), without starting a module: a lookup
costs no worker process, no module payload and no Python start.
"""

from __future__ import annotations

import importlib.util
from pathlib import Path
from typing import Any

from ansible.errors import AnsibleLookupError
from ansible.plugins.lookup import LookupBase
from ansible.utils.display import Display

DOCUMENTATION = r"""
name: edgejar_model_sums
short_description: sha256 of controller files, remembered in a sidecar until the file changes
description:
  - Returns one mapping, path -> {exists, sha256 (when it exists), source (sidecar or read)}, exactly as
    the module edgejar_deploy_state does on a node.
options:
  _terms: {description: Absolute paths of the files., required: true}
  remember: {description: Use and write the sidecars., type: bool, default: true}
  write:
    description: Write a sidecar after reading a file (false under --check).
    type: bool
    default: true
"""


def _module() -> Any:
    path = Path(__file__).resolve().parents[1] / "module_utils" / "edgejar_model_files.py"
    spec = importlib.util.spec_from_file_location("_edgejar_model_files", path)
    if spec is None or spec.loader is None:
        raise AnsibleLookupError(f"edgejar_model_sums: cannot load {path}")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


class LookupModule(LookupBase):
    def run(self, terms: list[Any], variables: Any = None, **kwargs: Any) -> list[dict[str, Any]]:
        self.set_options(var_options=variables, direct=kwargs)
        impl = _module()
        try:
            files = impl.sums(
                [str(t) for t in terms],
                bool(self.get_option("remember")),
                bool(self.get_option("write")),
                Display().warning,
            )
        except impl.SumError as exc:
            raise AnsibleLookupError(f"edgejar_model_sums: {exc}") from exc
        return [files]
