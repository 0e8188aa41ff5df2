"""Ansible callback: at the end of a run, say which nodes failed or could not be reached, and why.

Ansible's recap counts failures per host; this adds the task and the message for each one, and the
advice that a rerun completes the job (the playbooks are idempotent). Enabled in ansible.cfg.
"""

from __future__ import annotations

from typing import Any

from ansible.plugins.callback import CallbackBase

DOCUMENTATION = """
name: edgejar_summary
type: aggregate
short_description: Summarise the nodes that failed or were unreachable, with the reason
description:
  - At the end of a playbook run, prints one line per host that failed or could not be reached,
    naming the task and the error message.
requirements:
  - enabled in ansible.cfg (callbacks_enabled)
"""

MAX_MESSAGE = 300


def _message(result: dict[str, Any]) -> str:
    text = str(result.get("msg") or result.get("stderr") or result.get("reason") or "").strip()
    text = " ".join(text.split())
    return text if len(text) <= MAX_MESSAGE else text[: MAX_MESSAGE - 3] + "..."


class CallbackModule(CallbackBase):  # type: ignore[misc]
    CALLBACK_VERSION = 2.0
    CALLBACK_TYPE = "aggregate"
    CALLBACK_NAME = "edgejar_summary"
    CALLBACK_NEEDS_ENABLED = True

    def __init__(self) -> None:
        super().__init__()
        self.problems: dict[str, tuple[str, str, str]] = {}  # host -> (kind, task, message)

    def _record(self, kind: str, result: Any, ignore_errors: bool = False) -> None:
        if ignore_errors:
            return
        host = result._host.get_name()
        self.problems.setdefault(host, (kind, result._task.get_name(), _message(result._result)))

    def v2_runner_on_failed(self, result: Any, ignore_errors: bool = False) -> None:
        self._record("failed", result, ignore_errors)

    def v2_runner_on_unreachable(self, result: Any) -> None:
        self._record("unreachable", result)

    def v2_playbook_on_stats(self, stats: Any) -> None:
        if not self.problems:
            return
        self._display.banner("EDGEJAR SUMMARY")
        for host in sorted(self.problems):
            kind, task, message = self.problems[host]
            self._display.display(f"{host}: {kind} at task '{task}': {message}", color="red", stderr=True)
        ok = sorted(h for h in stats.processed if h not in self.problems)
        self._display.display(
            f"{len(ok)} host(s) completed; {len(self.problems)} did not "
            f"({', '.join(sorted(self.problems))}). Fix the cause and rerun the playbook: it only does "
            "what is left.",
            stderr=True,
        )
