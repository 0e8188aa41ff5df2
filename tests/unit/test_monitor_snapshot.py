"""Snapshot of the monitor's main screen after one (fake, deterministic) poll. Needs pytest-textual-snapshot
(dev extra); `pytest --snapshot-update tests/unit/test_monitor_snapshot.py` rewrites the snapshot."""

from __future__ import annotations

import time

import pytest

pytest.importorskip("pytest_textual_snapshot")

from tests.unit.test_monitor_app import make_app, wait_polls


@pytest.fixture
def utc(monkeypatch):
    monkeypatch.setenv("TZ", "UTC")
    time.tzset()
    yield
    monkeypatch.undo()
    time.tzset()


def test_main_screen(tmp_path, snap_compare, utc):
    app, _, _ = make_app(tmp_path)
    app.sub_title = "inventory.yml"

    async def first_poll(pilot):
        await wait_polls(app, pilot, 1)
        app.sub_title = "inventory.yml"
        await pilot.pause()

    assert snap_compare(app, terminal_size=(150, 30), run_before=first_poll)
