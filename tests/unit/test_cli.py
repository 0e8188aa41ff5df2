"""The top-level command line: a command imports its own module alone; help lists them all."""

from __future__ import annotations

import subprocess
import sys

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
