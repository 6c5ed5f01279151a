"""Every research script answers ``--help``, in process and run as a file from the repository root."""

import importlib
import subprocess
import sys
from pathlib import Path

import pytest

HERE = Path(__file__).resolve().parents[1]
REPO = HERE.parents[1]
SCRIPTS = sorted(p.stem for p in HERE.glob("*.py") if p.stem not in ("__init__", "selection"))


@pytest.mark.parametrize("name", SCRIPTS)
def test_script_help(name, capsys):
    module = importlib.import_module(f"research.toy_compose.{name}")
    with pytest.raises(SystemExit) as done:
        module.main(["--help"])
    assert done.value.code == 0 and "usage:" in capsys.readouterr().out


def test_a_script_runs_as_a_file_from_the_repository_root():
    run = subprocess.run(
        [sys.executable, "research/toy_compose/students.py", "--help"], cwd=REPO, capture_output=True, text=True
    )
    assert run.returncode == 0, run.stderr
    assert "usage: students.py" in run.stdout
