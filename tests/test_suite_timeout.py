"""The suite's per-test timeout: a test that hangs fails alone, and the run goes on to the next test, instead of
holding CI until its own limit ends the whole run."""

from __future__ import annotations

import subprocess
import sys
import tomllib
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent

HANGING = '''
import threading


def test_hangs():
    threading.Event().wait()


def test_after_it():
    assert True
'''


def test_the_suite_sets_a_per_test_timeout_within_ci_s_budget():
    options = tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["pytest"]["ini_options"]
    assert 0 < int(options["timeout"]) <= 25 * 60


def test_a_hanging_test_fails_and_the_run_goes_on(tmp_path):
    (tmp_path / "test_hanging.py").write_text(HANGING)
    run = subprocess.run([sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "-o", "timeout=2",
                          "--rootdir", str(tmp_path), str(tmp_path / "test_hanging.py")],
                         capture_output=True, text=True, timeout=120, cwd=tmp_path)
    assert run.returncode == 1, run.stdout + run.stderr
    assert "Timeout" in run.stdout
    assert "1 failed, 1 passed" in run.stdout
