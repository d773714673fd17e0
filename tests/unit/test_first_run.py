"""A first run explains itself: `make` alone lists the targets, and the Python check speaks before anything installs."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
CHECK = REPO / "scripts" / "check_python.sh"

pytestmark = pytest.mark.skipif(shutil.which("make") is None, reason="make is not installed")


def run(*command: str, cwd: Path = REPO) -> subprocess.CompletedProcess:
    # Under `make test` (as CI runs it) a nested make prints "Entering directory" lines and inherits the
    # outer flags; the user typing `make` sees neither, so neither is passed on.
    env = {k: v for k, v in os.environ.items() if k not in ("MAKEFLAGS", "MAKELEVEL", "MFLAGS", "MAKEOVERRIDES")}
    if command[0] == "make":
        command = (command[0], "--no-print-directory", *command[1:])
    return subprocess.run(list(command), cwd=cwd, capture_output=True, text=True, timeout=60, env=env)


def fake_python(tmp_path: Path, body: str) -> Path:
    """An interpreter stand-in: a shell script answering the check's `-c` probes as `body` says."""
    path = tmp_path / "python3"
    path.write_text(f"#!/bin/sh\n{body}\n")
    path.chmod(0o755)
    return path


def test_make_alone_lists_the_targets_and_installs_nothing():
    listed = run("make", "-s")
    assert listed.returncode == 0, listed.stderr
    for target in ("demo", "test", "test-unit", "test-integration", "fuzz", "setup", "bench-figures"):
        assert re.search(rf"^\s+{re.escape(target)}\s", listed.stdout, re.M), target
    dry = run("make", "-n")  # what `make` would run: only the listing
    assert dry.stdout.strip() and all(line.startswith("echo ") for line in dry.stdout.splitlines()), dry.stdout


def test_setup_checks_python_first_and_shows_pip_progress():
    plan = run("make", "-n", "-B", "setup", "VENV=/nonexistent-venv").stdout.splitlines()
    assert "check_python.sh" in plan[0]
    install = next(line for line in plan if "pip install" in line)
    assert " -q" not in install and "--progress-bar on" in install


def test_this_python_passes_the_check():
    checked = run(str(CHECK), sys.executable)
    assert checked.returncode == 0, checked.stderr
    assert "OK (3.11+, venv and ensurepip)" in checked.stdout


def test_an_old_python_is_named_with_the_version_needed(tmp_path):
    old = fake_python(tmp_path, 'case "$2" in *"sys.exit(0 if"*) exit 1;; *"%d.%d.%d"*) echo 3.9.18;; esac')
    checked = run(str(CHECK), str(old))
    assert checked.returncode == 1
    assert "is Python 3.9.18; this project needs 3.11 or newer" in checked.stderr


def test_a_python_without_venv_support_says_which_package_to_install(tmp_path):
    no_venv = fake_python(tmp_path, f'case "$2" in *ensurepip*) exit 1;; esac\nexec {sys.executable} "$@"')
    checked = run(str(CHECK), str(no_venv))
    assert checked.returncode == 1
    assert "apt-get install python3-venv" in checked.stderr


def test_a_missing_python_is_named(tmp_path):
    checked = run(str(CHECK), str(tmp_path / "python3.99"))
    assert checked.returncode == 1 and "is not on PATH" in checked.stderr
