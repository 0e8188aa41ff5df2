"""Action edgejar_deploy_state: the node check of edgejar_deploy without a module payload.

An Ansible module call costs each node about 0.2 s before the module does anything: its Python payload
(the module and Ansible's module_utils, from source) is unpacked and imported on every call. This check
is a few hundred lines of standard-library Python (module_utils/edgejar_code_tree.py,
edgejar_model_files.py, edgejar_deploy_check.py), so the action sends those sources with the checked
arguments through the open connection (one command, like `raw`, with become) to a short program that
runs them and prints the result as JSON. The arguments are checked on the controller with Ansible's own
validator against the module's spec (module_utils/edgejar_deploy_spec.py); check mode is honoured; the
result is the module's (library/edgejar_deploy_state.py, which documents it and runs the same check when
called as a module).
"""

from __future__ import annotations

import importlib.util
import json
import shlex
from pathlib import Path
from typing import Any

from ansible.executor.interpreter_discovery import discover_interpreter
from ansible.plugins.action import ActionBase

UTILS = Path(__file__).resolve().parents[1] / "module_utils"
SOURCES = ("edgejar_code_tree", "edgejar_model_files", "edgejar_deploy_check")  # in import order

# Runs on the node: the sources become the modules they are under Ansible (their imports name them so),
# then the check runs; one JSON document out.
BOOT = """
import json, sys, types
d = json.loads(sys.stdin.buffer.read())
for name, src in d["modules"]:
    mod = types.ModuleType(name)
    sys.modules[name] = mod
    exec(compile(src, name.rsplit(".", 1)[1] + ".py", "exec"), mod.__dict__)
chk = sys.modules["ansible.module_utils.edgejar_deploy_check"]
warnings = []
try:
    out = chk.check(d["params"], d["check_mode"], warnings.append)
except chk.CheckFailed as exc:
    out = {"failed": True, "msg": str(exc)}
out["warnings"] = warnings
sys.stdout.write(json.dumps(out))
"""


def _spec() -> Any:
    path = UTILS / "edgejar_deploy_spec.py"
    spec = importlib.util.spec_from_file_location("_edgejar_deploy_spec", path)
    assert spec is not None and spec.loader is not None, path
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


class ActionModule(ActionBase):
    TRANSFERS_FILES = False

    def _python(self, task_vars: dict[str, Any], result: dict[str, Any]) -> str:
        """The node's Python: ansible_python_interpreter when set, else the discovered one (discovered
        here, and remembered as a fact, when no earlier task discovered it)."""
        given = task_vars.get("ansible_python_interpreter")
        if given:
            text = str(self._templar.template(given))
            if not text.startswith("auto"):
                return text
        facts = task_vars.get("ansible_facts") or {}
        found = facts.get("discovered_interpreter_python")
        if not found:
            found = discover_interpreter(self, "python", "auto_silent", task_vars)
            result.setdefault("ansible_facts", {})["discovered_interpreter_python"] = found
        return str(found)

    def run(self, tmp: Any = None, task_vars: dict[str, Any] | None = None) -> dict[str, Any]:
        task_vars = task_vars or {}
        result = super().run(tmp, task_vars)
        spec = _spec()
        _, params = self.validate_argument_spec(
            argument_spec=spec.SPEC,
            required_if=spec.REQUIRED_IF,
            required_together=spec.REQUIRED_TOGETHER,
        )
        payload = {
            "modules": [
                [f"ansible.module_utils.{name}", (UTILS / f"{name}.py").read_text(encoding="utf-8")]
                for name in SOURCES
            ],
            "params": params,
            "check_mode": bool(self._task.check_mode),
        }
        python = self._python(task_vars, result)
        ran = self._low_level_execute_command(
            f"{shlex.quote(python)} -c {shlex.quote(BOOT)}",
            sudoable=True,
            in_data=json.dumps(payload).encode(),
        )
        try:
            out = json.loads(ran["stdout"])
        except ValueError:
            result.update(
                failed=True,
                rc=ran.get("rc"),
                msg=f"the node check did not answer (rc {ran.get('rc')}): "
                f"{(ran.get('stderr') or ran.get('stdout') or '').strip()[-1500:]}",
            )
            return result
        warnings = out.pop("warnings", [])
        result.update(out)
        if warnings:  # shown by the callback, as a module's warnings are
            result["warnings"] = warnings
        return result
