"""The root run.py (the README's two commands): its decisions, without creating a virtual environment."""

import ast
import importlib.util
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
spec = importlib.util.spec_from_file_location("bootstrap_script", ROOT / "run.py")
script = importlib.util.module_from_spec(spec)
spec.loader.exec_module(script)

CHILD = """import json, os, sys
from pathlib import Path
Path("child.json").write_text(json.dumps({"argv": sys.argv[1:], "venv": os.environ["VIRTUAL_ENV"],
                                          "path0": os.environ["PATH"].split(os.pathsep)[0]}))
sys.exit(7)
"""


@pytest.fixture
def calls():
    return []


@pytest.fixture
def project(tmp_path, monkeypatch, calls):
    """A project whose .venv python is this interpreter, stamped as up to date; installing is forbidden."""
    (tmp_path / "pyproject.toml").write_text("[project]\nname = 'x'\n")
    (tmp_path / "requirements.txt").write_text("numpy\n")
    python = script.venv_python(tmp_path)
    python.parent.mkdir(parents=True)
    python.symlink_to(sys.executable)
    (tmp_path / ".venv" / script.STAMP).write_text(script.fingerprint(tmp_path) + "\n")
    monkeypatch.setattr(script, "create_venv", lambda root: calls.append("venv") or 0)
    monkeypatch.setattr(script, "install", lambda root: calls.append("install") or 0)
    monkeypatch.setattr(script, "install_data", lambda root: calls.append("apt"))
    monkeypatch.setattr(script, "DEBIAN_DATA", tmp_path / "no-debian-data")
    return tmp_path


def test_stamp_follows_the_dependency_files_and_the_torch_pins(project, monkeypatch):
    assert not script.needs_install(project)
    (project / "requirements.txt").write_text("numpy\nscipy\n")
    assert script.needs_install(project)
    (project / ".venv" / script.STAMP).write_text(script.fingerprint(project))
    assert not script.needs_install(project)
    monkeypatch.setattr(script, "TORCH", ("torch==9.9", "torchvision==9.9"))
    assert script.needs_install(project)
    (project / ".venv" / script.STAMP).unlink()
    assert script.needs_install(project)


def test_up_to_date_venv_installs_nothing_and_a_changed_pyproject_reinstalls(project, capsys, calls):
    assert script.main(["setup"], project) == 0
    assert calls == []
    assert ".venv is up to date" in capsys.readouterr().out
    (project / "pyproject.toml").write_text("[project]\nname = 'y'\n")
    assert script.main(["setup"], project) == 0
    assert calls == ["install", "apt"]


def test_missing_venv_python_is_created(project, calls):
    script.venv_python(project).unlink()
    script.main(["setup", "--data-dir", "d"], project)
    assert calls == ["venv"]


def test_quick_passes_arguments_through_and_exits_with_the_child_status(project):
    """The real script in a process of its own, its .venv faked and up to date, FMNIST/run.py a stand-in."""
    shutil.copy(ROOT / "run.py", project / "run.py")
    (project / "FMNIST").mkdir()
    (project / "FMNIST" / "run.py").write_text(CHILD)
    result = subprocess.run([sys.executable, "run.py", "quick", "--epochs", "5", "--data-dir=/d"], cwd=project,
                            capture_output=True, text=True, timeout=60)
    assert result.returncode == 7, result.stdout + result.stderr
    child = json.loads((project / "child.json").read_text())
    assert child["argv"] == ["--quick", "--epochs", "5", "--data-dir=/d"]
    assert child["venv"] == str(project / ".venv") and child["path0"] == str(script.venv_python(project).parent)
    assert result.stdout.splitlines() == ["[run.py] .venv is up to date (delete .venv to reinstall)",
                                          "[run.py] running python FMNIST/run.py --quick --epochs 5 --data-dir=/d"]


def test_test_command_is_pytest_with_the_extra_arguments(project):
    command = script.child_command(project, "test", ["-k", "attention"])
    assert command == [str(script.venv_python(project)), "-m", "pytest", "-q", "-k", "attention"]


def test_missing_data_prints_one_line_naming_data_dir_unless_given(project, capsys):
    script.main(["setup"], project)
    hints = [line for line in capsys.readouterr().out.splitlines() if "Fashion-MNIST" in line]
    assert len(hints) == 1 and "--data-dir DIR" in hints[0] and "DIR/FashionMNIST/raw" in hints[0]
    script.main(["setup", "--data-dir", "/d"], project)
    assert "Fashion-MNIST" not in capsys.readouterr().out


def test_apt_runs_directly_as_root_through_passwordless_sudo_or_not_at_all():
    assert script.apt_prefix(0, True, lambda: pytest.fail("root needs no sudo")) == []
    assert script.apt_prefix(1000, True, lambda: True) == ["sudo", "-n"]
    assert script.apt_prefix(1000, True, lambda: False) is None
    assert script.apt_prefix(0, False, lambda: True) is None


def test_install_data_updates_then_installs_and_stops_at_a_failure(monkeypatch, tmp_path):
    commands = []
    monkeypatch.setattr(script, "apt_prefix", lambda *a: ["sudo", "-n"])
    monkeypatch.setattr(script, "step", lambda message, command, root, env: commands.append(command) or 0)
    script.install_data(tmp_path)
    assert commands == [["sudo", "-n", "apt-get", "update", "-qq"],
                        ["sudo", "-n", "apt-get", "install", "-y", "-qq", "dataset-fashion-mnist"]]
    commands.clear()
    monkeypatch.setattr(script, "step", lambda message, command, root, env: commands.append(command) or 100)
    script.install_data(tmp_path)
    assert len(commands) == 1


def test_old_python_and_missing_venv_or_ensurepip_fail_with_one_line():
    assert script.python_problem((3, 11, 0)) is None
    message = script.python_problem((3, 10, 12), "/usr/bin/python3")
    assert "Python >= 3.11" in message and "/usr/bin/python3 is 3.10" in message
    assert "apt-get install python3.12-venv" in script.venv_problem(False, True, True, (3, 12, 3))
    assert "no ensurepip" in script.venv_problem(True, False, False, (3, 11, 2))
    assert script.venv_problem(True, False, True) is None  # Debian without python3-venv but with pip: bootstrapped
    assert script.venv_problem(True, True, False) is None


def test_unknown_or_missing_command_is_a_usage_error(project, capsys, calls):
    assert script.main(["--quick"], project) == 2
    assert script.main([], project) == 2
    lines = capsys.readouterr().out.splitlines()
    assert len(lines) == 2 and "unknown command '--quick'" in lines[0] and "quick|test|setup" in lines[1]
    assert calls == []


def test_script_imports_only_the_standard_library():
    tree = ast.parse((ROOT / "run.py").read_text())
    nodes = list(ast.walk(tree))
    names = {alias.name.split(".")[0] for node in nodes if isinstance(node, ast.Import) for alias in node.names}
    names |= {node.module.split(".")[0] for node in nodes if isinstance(node, ast.ImportFrom)}
    assert names <= set(sys.stdlib_module_names) | {"__future__"}, names
    assert os.access(ROOT / "run.py", os.X_OK)
