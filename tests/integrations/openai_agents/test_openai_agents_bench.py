"""Smoke run of benchmarks/bench_openai_agents.py: every call timed on every store, exit status 0."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[3]
CALLS = ("get_items() of 200 items", "get_items(limit=20)", "add_items of a turn (4 items)", "pop_item",
         "list the 21 sessions", "floor: bare I/O of a durable commit (no database)")


@pytest.mark.slow  # builds three stores of 4,000 items: seconds to tens of seconds on a busy machine
def test_the_benchmark_prints_a_row_per_call_with_each_store(tmp_path: Path) -> None:
    completed = subprocess.run([sys.executable, "-m", "benchmarks.bench_openai_agents", "--quick", "--dir",
                                str(tmp_path)], cwd=ROOT, capture_output=True, text=True, timeout=300, check=False)
    assert completed.returncode == 0, completed.stderr
    lines = completed.stdout.splitlines()
    assert ("| call | ours (async store) | ours (sync store) | SQLiteSession (file) | ours (sync store, NORMAL) "
            "| SQLiteSession (file, NORMAL) | SQLite / ours (FULL) | SQLite / ours (NORMAL) |") in lines
    for call in CALLS:
        [row] = [line for line in lines if line.startswith(f"| {call} |")]
        cells = [cell.strip() for cell in row.split("|")[1:-1]]
        assert len(cells) == 8 and cells[6].endswith("x")
        if call.startswith("floor"):  # SQLite at NORMAL flushes nothing at a commit: it has no floor
            assert cells[5] == "no flush" and cells[7] == ""
        else:
            assert cells[7].endswith("x")
    assert any(line.startswith("Our add_items of a turn writes ") and "log.events" in line for line in lines)
    assert list(tmp_path.iterdir()) == []  # the stores were temporary
