"""`runner report`: the HTML file per experiment, its sections, the OOM death and the memory picture."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

pytest.importorskip("matplotlib", reason="the report needs the `report` extra (matplotlib)")

from runner.cli import main
from runner.results import report
from tests.unit import results_fixture as fx

MODES = {
    "prisoners_dilemma": "Prisoners' dilemma",
    "split_brain": "Split brain: identity claims",
    "hive_cluster": "Hive: consensus rounds",
    "panopticon": "Panopticon: observations",
}
COMMON = ("Timeline", "Lives and deaths", "Memory", "Who talked to whom", "What they said", "Provenance")


@pytest.fixture
def results(tmp_path: Path) -> Path:
    for mode in MODES:
        fx.build(tmp_path / mode / "results.sqlite3", mode, name=mode)
    return tmp_path


def test_report_command_writes_one_self_contained_file_per_experiment(results, capsys):
    assert main(["report", "--results", str(results)]) == 0
    for mode, heading in MODES.items():
        page = (results / mode / "report.html").read_text()
        for h in (*COMMON, heading):
            assert f">{h}</h" in page, (mode, h)
        assert page.count("<svg") >= 4
        # Self-contained: no external resource is referenced.
        assert not re.search(r"""(src|href)=["']?(https?:|//)""", page)
        assert "<script" not in page
    assert "report: " in capsys.readouterr().err


def test_report_of_an_unknown_experiment_exits_2(results, capsys):
    assert main(["report", "--results", str(results), "nope"]) == 2
    assert "no results for nope" in capsys.readouterr().err
    assert not (results / "nope").exists()


def test_oom_death_shows_cause_and_the_memory_curve_reaching_the_ceiling(results):
    page = report.render("split_brain", results / "split_brain" / "results.sqlite3")
    # The lives table marks the death with its cause.
    row = re.search(r"<tr class=\"death\">(.*?)</tr>", page).group(1)
    assert "<td>B</td><td>1</td><td>rpi1</td>" in row and "<td>oom-kill</td>" in row
    # The timeline labels the death; the memory picture marks it too.
    assert page.count("oom-kill") >= 3
    # B's memory curve, in SVG coordinates (y grows downwards), reaches its MemoryMax line.
    svg = page[page.index("<h2 id='memory'>") :]
    curve_y = _ys(svg, "memory-B")
    ceiling_y = _ys(svg, "ceiling-B")
    assert len(set(ceiling_y)) == 1
    (ceiling,) = set(ceiling_y)
    start = max(curve_y)  # the lowest point drawn: the first reading
    assert abs(min(curve_y) - ceiling) <= 0.02 * (start - ceiling)
    assert "MemoryMax 512 MiB" in svg


def _ys(svg: str, gid: str) -> list[float]:
    m = re.search(rf'<g id="{gid}">(.*?)</g>', svg, re.S)
    assert m, gid
    d = re.search(r'<path[^>]* d="([^"]+)"', m.group(1)).group(1)  # the line itself: M x y L x y ...
    nums = [float(x) for x in re.findall(r"-?\d+(?:\.\d+)?", d)]
    return nums[1::2]
