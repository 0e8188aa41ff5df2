"""The top-level command line: a command imports its own module alone; help lists them all."""

from __future__ import annotations

import logging
import subprocess
import sys
from pathlib import Path

import pytest

from runner.cli import COMMAND_MODULES, main
from tests.conftest import ROOT


def imported_after(argv: list[str]) -> set[str]:
    """The runner.commands modules a fresh interpreter has imported after main(argv)."""
    code = (
        "import sys\nfrom runner.cli import main\n"
        f"try:\n    main({argv!r})\nexcept SystemExit:\n    pass\n"
        "print(' '.join(sorted(m for m in sys.modules if m.startswith('runner.commands.'))))"
    )
    out = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, check=True)
    return set(out.stdout.split("\n")[-2].split())


def test_a_command_imports_its_own_module_alone() -> None:
    loaded = imported_after(["validate", "--help"])
    assert "runner.commands.validate" in loaded
    assert not loaded & {"runner.commands.report", "runner.commands.monitor", "runner.commands.sim"}


def test_help_and_a_mistyped_command_list_every_command(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["--help"]) == 0
    listed = capsys.readouterr().out
    assert all(m.rsplit(".", 1)[1] in listed for m in COMMAND_MODULES)
    assert main(["upp"]) == 2
    assert "invalid choice: 'upp' (choose from 'validate', 'place'" in capsys.readouterr().err


def test_messages_go_through_logging_and_follow_verbose_and_quiet(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """What a command says besides its result is a log line on stderr (-q hides notes, never errors);
    its result on stdout is the same at every level."""
    out = tmp_path / "tiny.gguf"
    assert main(["model", "tiny", "--out", str(out)]) == 0
    first = capsys.readouterr()
    assert first.err == "written\n" and first.out.endswith(f"  {out}\n")
    assert main(["-q", "model", "tiny", "--out", str(out)]) == 0
    quiet = capsys.readouterr()
    assert quiet.err == "" and quiet.out == first.out
    assert main(["-v", "model", "tiny", "--out", str(out)]) == 0
    assert capsys.readouterr().err == "unchanged (an identical file was already there)\n"
    assert main(["-qq", "validate", str(tmp_path / "missing.yml")]) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: ") and "missing.yml" in err


def test_log_levels() -> None:
    from runner import logs

    assert logs.level(0, 0) == logging.INFO
    assert logs.level(1, 0) == logging.DEBUG
    assert logs.level(0, 1) == logging.WARNING
    assert logs.level(0, 2) == logging.ERROR
    assert logs.level(3, 1) == logging.WARNING  # quiet wins
