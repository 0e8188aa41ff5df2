"""What `runner up` says about launch's reconcile results: what changed and why, failures with logs."""

from __future__ import annotations

from runner.ansible_bridge import Progress
from runner.commands import launched

RESULTS = {
    "rpi1": {
        "instances": [
            {"id": "b", "action": "none", "why": [], "ok": True, "state": "active/running"},
            {
                "id": "a",
                "action": "restarted",
                "why": ["config changed"],
                "ok": True,
                "state": "active/running",
            },
        ],
        "removed": ["old"],
    },
    "host": {
        "instances": [
            {
                "id": "c",
                "action": "started",
                "why": ["was failed"],
                "ok": False,
                "state": "failed/failed",
                "log_tail": ["Traceback ...", "ValueError: bad model"],
            }
        ]
    },
}


def test_results_become_one_entry_per_instance():
    got = launched.from_results(RESULTS)
    assert [(x.node, x.id, x.action) for x in got] == [
        ("host", "c", "started"),
        ("rpi1", "b", "none"),
        ("rpi1", "a", "restarted"),
    ]


def test_summary_names_what_changed_and_why_and_shows_a_failure_with_its_log():
    lines = launched.summary(launched.from_results(RESULTS), {"rpi1": ["old"]})
    assert "restarted: a on rpi1 (config changed)" in lines
    assert "started: c on host (was failed)" in lines
    assert "removed: old from rpi1" in lines
    assert "2 unit(s) started or restarted, 1 left running as they were" in lines
    i = lines.index("NOT RUNNING: c on host is failed/failed; its journal:")
    assert lines[i + 2] == "    ValueError: bad model"
    assert not any(line.startswith(("restarted: b", "started: b")) for line in lines)


def test_a_noop_says_nothing_changed():
    res = {"n": {"instances": [{"id": "a", "action": "none", "ok": True}]}}
    assert launched.summary(launched.from_results(res), {}) == [
        "0 unit(s) started or restarted, 1 left running as they were"
    ]


def test_progress_captures_the_reconcile_result_per_host():
    p = Progress(tty=False, capture=frozenset({launched.RECONCILE_TASK}))
    for host, res in RESULTS.items():
        p(
            {
                "event": "runner_on_ok",
                "event_data": {"host": host, "task": launched.RECONCILE_TASK, "res": res},
            }
        )
    p({"event": "runner_on_ok", "event_data": {"host": "rpi1", "task": "other", "res": {"x": 1}}})
    assert p.captured == {launched.RECONCILE_TASK: RESULTS}


def test_the_launch_role_has_the_task_whose_result_up_reads():
    import yaml

    from tests.conftest import ROOT

    tasks = yaml.safe_load((ROOT / "roles/edgejar_launch/tasks/main.yml").read_text())
    assert launched.RECONCILE_TASK in [t.get("name") for t in tasks]
