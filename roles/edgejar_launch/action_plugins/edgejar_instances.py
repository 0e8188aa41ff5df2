"""Action edgejar_instances: the launch role's reconcile without a module payload.

An Ansible module call costs each node about 0.2 s before the module does anything: its Python payload
(the module and Ansible's module_utils, from source) is unpacked and imported on every call. The
reconcile is standard-library Python (module_utils/edgejar_reconcile.py), so the action sends its source
with the checked arguments through the open connection (one command, like `raw`, with become) to a short
program that runs it with a stand-in for AnsibleModule and prints the result as JSON. The arguments are
checked on the controller with Ansible's own validator against the module's spec
(module_utils/edgejar_instances_spec.py); the secret file contents (`contents`, no_log) travel only on
the command's standard input and are never part of the result. Check and diff mode are honoured; the
result is the module's (library/edgejar_instances.py documents it).
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

# Runs on the node: the reconcile with a stand-in for AnsibleModule; one JSON document out.
BOOT = """
import json, subprocess, sys, types
d = json.loads(sys.stdin.buffer.read())
mod = types.ModuleType("edgejar_reconcile")
exec(compile(d["source"], "edgejar_reconcile.py", "exec"), mod.__dict__)
class Finished(Exception):
    pass
class Module:
    def __init__(self):
        self.params, self.check_mode, self._diff = d["params"], d["check_mode"], d["diff"]
    def run_command(self, args):
        p = subprocess.run(args, capture_output=True, text=True, errors="replace")
        return p.returncode, p.stdout, p.stderr
    def fail_json(self, msg, **kw):
        raise Finished(dict(kw, failed=True, msg=msg))
    def exit_json(self, **kw):
        raise Finished(kw)
try:
    mod.reconcile(Module())
    out = {"failed": True, "msg": "the reconcile ended without a result"}
except Finished as done:
    out = done.args[0]
sys.stdout.write(json.dumps(out))
"""


def _spec() -> dict[str, Any]:
    path = UTILS / "edgejar_instances_spec.py"
    spec = importlib.util.spec_from_file_location("_edgejar_instances_spec", path)
    assert spec is not None and spec.loader is not None, path
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module.SPEC  # type: ignore[no-any-return]


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
        found = (task_vars.get("ansible_facts") or {}).get("discovered_interpreter_python")
        if not found:
            found = discover_interpreter(self, "python", "auto_silent", task_vars)
            result.setdefault("ansible_facts", {})["discovered_interpreter_python"] = found
        return str(found)

    def run(self, tmp: Any = None, task_vars: dict[str, Any] | None = None) -> dict[str, Any]:
        task_vars = task_vars or {}
        result = super().run(tmp, task_vars)
        _, params = self.validate_argument_spec(argument_spec=_spec())
        payload = {
            "source": (UTILS / "edgejar_reconcile.py").read_text(encoding="utf-8"),
            "params": params,
            "check_mode": bool(self._task.check_mode),
            "diff": bool(self._task.diff),
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
                msg=f"the reconcile did not answer (rc {ran.get('rc')}): "
                f"{(ran.get('stderr') or ran.get('stdout') or '').strip()[-1500:]}",
            )
            return result
        result.update(out)
        return result
