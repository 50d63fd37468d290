"""Smoke run of ``bench_core --append-cpu``: both appends timed, their figures printed, the store removed."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
CALLS = ("append, no flush (CPU)", "append with a 600-byte payload, no flush (CPU)")


def test_both_appends_are_timed(tmp_path: Path) -> None:
    completed = subprocess.run([sys.executable, "-m", "benchmarks.bench_core", "--append-cpu", "--quick", "--dir",
                                str(tmp_path)], check=False, cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert 0 == completed.returncode, completed.stderr
    assert "(200 each;" in completed.stdout
    rows = {line[:54].strip(): line[54:].split() for line in completed.stdout.splitlines()
            if line.startswith("  append")}
    assert set(rows) == set(CALLS), completed.stdout
    for figures in rows.values():  # median, p99 and mean, each a number and its unit
        assert len(figures) == 6 and all(float(figures[at]) > 0 for at in (0, 2, 4))
    assert list(tmp_path.iterdir()) == []  # the store is removed
