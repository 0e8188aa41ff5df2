"""Each report opened in headless Chromium (Debian's `chromium`): a screenshot shows the plots drawn,
the rendered page has the expected sections and pictures, and the browser logged no console message.

Skipped with its reason when chromium is not installed, except under CI (CI set), where that fails.
"""

from __future__ import annotations

import html
import os
import re
import shutil
import subprocess
from pathlib import Path

import pytest

pytest.importorskip("matplotlib", reason="the report needs the `report` extra (matplotlib)")
Image = pytest.importorskip("PIL.Image", reason="pillow (a matplotlib dependency) reads the screenshot")

from runner.results import report  # noqa: E402
from tests.unit import results_fixture as fx  # noqa: E402

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
if CHROMIUM is None:
    if os.environ.get("CI"):
        raise RuntimeError("CI: chromium is missing (scripts/deb-deps.sh installs it)")
    pytest.skip(
        "chromium is not installed (apt-get install chromium; scripts/deb-deps.sh does)",
        allow_module_level=True,
    )

SECTIONS = ("Timeline", "Memory", "Who talked to whom", "What they said", "Provenance")
MODES = {
    "prisoners_dilemma": "Prisoners' dilemma",
    "split_brain": "Split brain: identity claims",
    "hive_cluster": "Hive: consensus rounds",
    "panopticon": "Panopticon: observations",
}
CONSOLE = re.compile(r":CONSOLE[:(]")


def chromium(page: Path, tmp: Path, *extra: str) -> subprocess.CompletedProcess[str]:
    profile = tmp / "profile"
    profile.mkdir(exist_ok=True)
    argv = [
        str(CHROMIUM), "--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
        "--disable-component-update", "--no-first-run", f"--user-data-dir={profile}",
        "--enable-logging=stderr", "--v=0", "--hide-scrollbars", *extra, page.resolve().as_uri(),
    ]  # fmt: skip
    return subprocess.run(argv, capture_output=True, text=True, timeout=180, check=True, cwd=tmp)


def console_lines(stderr: str) -> list[str]:
    return [line for line in stderr.splitlines() if CONSOLE.search(line)]


def test_console_errors_are_caught(tmp_path):
    """The check below can fail: a page with a script error logs a console line."""
    bad = tmp_path / "bad.html"
    bad.write_text("<html><body><script>console.error('boom'); notDefined();</script></body></html>")
    lines = console_lines(chromium(bad, tmp_path, "--dump-dom").stderr)
    assert any("boom" in x for x in lines) and any("notDefined" in x for x in lines)


@pytest.mark.parametrize("mode", sorted(MODES))
def test_report_renders_in_chromium(tmp_path, mode):
    db = fx.build(tmp_path / mode / "results.sqlite3", mode, name=mode)
    (page,) = report.write(tmp_path, [mode])
    assert page == db.parent / "report.html"

    dom = chromium(page, tmp_path, "--dump-dom")
    assert console_lines(dom.stderr) == []
    headings = [html.unescape(h) for h in re.findall(r"<h2[^>]*>(.*?)</h2>", dom.stdout)]
    assert headings == [*SECTIONS[:3], MODES[mode], *SECTIONS[3:]]
    assert dom.stdout.count("<svg") >= 5  # timeline, two memory pictures, messages, the mode's picture

    shot = tmp_path / "shot.png"
    run = chromium(page, tmp_path, "--window-size=1200,3000", f"--screenshot={shot}")
    assert console_lines(run.stderr) == []
    image = Image.open(shot).convert("RGB")
    colours = image.getcolors(maxcolors=1 << 20) or []
    assert len(colours) > 500, "the screenshot is nearly blank: the plots did not render"
    present = {rgb for _, rgb in colours}
    # The ceiling and death red, and the first series' blue, drawn somewhere (antialiasing aside).
    assert (0xD6, 0x27, 0x28) in present
    assert (0x1F, 0x77, 0xB4) in present
