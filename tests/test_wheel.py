"""The package as users install it: a wheel built from the repository, installed (not editable) and run from a folder
outside the checkout, trains all three tasks with the recipes and C loops it carries."""

import json
import os
import shutil
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

from pfa.data.fashion_mnist import DEBIAN_DIR

ROOT = Path(__file__).resolve().parents[1]
TINY = ["--device", "cpu", "--workers", "0", "--epochs", "1", "--train-samples", "64", "--test-samples", "32",
        "--batch-size", "32"]
needs_fmnist = pytest.mark.skipif(not DEBIAN_DIR.is_dir(), reason="needs Debian's dataset-fashion-mnist package")


@pytest.fixture(scope="module")
def wheel(tmp_path_factory) -> Path:
    """A wheel built from a copy of the sources (so that no build/ folder lands in the checkout)."""
    source = tmp_path_factory.mktemp("source")
    for name in ("src", "pyproject.toml", "README.md"):
        copy = shutil.copytree if (ROOT / name).is_dir() else shutil.copy
        copy(ROOT / name, source / name)
    out = tmp_path_factory.mktemp("wheel")
    subprocess.run([sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation", "-q", "-w", str(out),
                    str(source)], check=True, capture_output=True, timeout=300)
    return next(out.glob("pfa-*.whl"))


@pytest.fixture(scope="module")
def installed(wheel, tmp_path_factory) -> Path:
    """The wheel unpacked as pip installs it, into a folder of its own."""
    site = tmp_path_factory.mktemp("site")
    subprocess.run([sys.executable, "-m", "pip", "install", "--no-deps", "-q", "--target", str(site), str(wheel)],
                   check=True, capture_output=True, timeout=300)
    return site


def run_outside(site: Path, folder: Path, *args: str) -> subprocess.CompletedProcess:
    """`python ARGS` in `folder`, importing pfa from `site` only (the checkout's editable install comes later on the
    path and the checkout is not the working folder)."""
    env = {**os.environ, "PYTHONPATH": str(site), "OMP_NUM_THREADS": "1", "PFA_CACHE_DIR": str(folder / "cache")}
    return subprocess.run([sys.executable, *args], cwd=folder, env=env, capture_output=True, text=True, timeout=600)


def test_the_wheel_carries_every_recipe_and_c_source(wheel):
    names = set(zipfile.ZipFile(wheel).namelist())
    shipped = {p.relative_to(ROOT / "src").as_posix() for p in (ROOT / "src/pfa").rglob("*")
               if p.suffix in (".yaml", ".c", ".h")}
    assert shipped and shipped <= names
    assert {"pfa/recipes/fmnist/quick.yaml", "pfa/lif/csrc/lif_cpu.c"} <= shipped


def test_the_installed_package_is_the_wheel_not_the_checkout(installed, tmp_path):
    done = run_outside(installed, tmp_path, "-c", "import pfa, pfa.tasks; print(pfa.__file__); "
                                                  "print(pfa.tasks.recipe_folder('fmnist'))")
    assert done.returncode == 0, done.stderr
    module, recipes = done.stdout.split()
    assert Path(module).is_relative_to(installed) and (Path(recipes) / "quick.yaml").is_file()


@needs_fmnist
def test_fmnist_quick_recipe_trains_from_the_wheel(installed, tmp_path):
    done = run_outside(installed, tmp_path, "-m", "pfa.train", "fmnist", "--quick", *TINY, "--out-dir", "run")
    assert done.returncode == 0, done.stderr
    config = (tmp_path / "run/config.yaml").read_text()
    assert "width: 32" in config and "task: fmnist" in config  # the quick recipe came from the wheel
    assert json.loads((tmp_path / "run/metrics.json").read_text())["epoch"] == 1


def test_the_event_demo_trains_from_the_wheel(installed, tmp_path):
    done = run_outside(installed, tmp_path, "-m", "pfa.data.samples", "--dataset", "cifar10dvs", "--root", "c10dvs")
    assert done.returncode == 0, done.stderr
    done = run_outside(installed, tmp_path, "-m", "pfa.train", "cifar", "--dataset", "cifar10dvs", "--data-dir",
                       "c10dvs", "--T", "4", "--width", "0.125", *TINY, "--test-samples", "20", "--out-dir", "run")
    assert done.returncode == 0, done.stderr
    assert json.loads((tmp_path / "run/metrics.json").read_text())["epoch"] == 1


@needs_fmnist
def test_generation_trains_from_the_wheel(installed, tmp_path):
    done = run_outside(installed, tmp_path, "-m", "pfa.train", "generation", "--dataset", "fashion", *TINY,
                       "--time-steps", "2", "--k", "4", "--latent-dim", "16", "--rank", "4", "--batch-size", "16",
                       "--images", "16", "--fid-every", "0", "--out-dir", "run")
    assert done.returncode == 0, done.stderr
    assert (tmp_path / "run/samples.png").is_file() and (tmp_path / "run/checkpoint_latest.pth").is_file()
