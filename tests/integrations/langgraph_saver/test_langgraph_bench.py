"""Smoke run of the LangGraph benchmark: a short thread, every call timed for every peer, exit status 0."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[3]
CALLS = ("load: get_tuple(latest)", "load, freshly opened", "list: 10 latest checkpoints", "put: the next checkpoint",
         "turn: graph.invoke", "floor: a put, bare I/O")


def test_the_benchmark_times_every_call_of_every_peer(tmp_path: Path):
    completed = subprocess.run([sys.executable, "-m", "benchmarks.bench_langgraph", "--quick", "--dir", str(tmp_path)],
                               check=False, cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert 0 == completed.returncode, completed.stderr
    rows = [line.split("  ")[0] for line in completed.stdout.splitlines()]
    for call in CALLS:
        assert 3 == sum(row.startswith(call) for row in rows), completed.stdout
    assert list(tmp_path.iterdir()) == []  # the stores are removed


def test_the_put_parts_are_each_timed(tmp_path: Path):
    completed = subprocess.run([sys.executable, "-m", "benchmarks.bench_langgraph", "--quick", "--put-parts", "--dir",
                                str(tmp_path)], check=False, cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert 0 == completed.returncode, completed.stderr
    rows = {line[:40].strip(): float(line[40:].split()[0]) for line in completed.stdout.splitlines()
            if line.endswith(" ms")}
    assert set(rows) == {"a whole put", "read the thread", "find the parent's list", "make the message",
                         "the store's append", "(in it: the list's fingerprint)",
                         "(the serializer on the whole list)", "SqliteSaver's put, synchronous=OFF"}
    assert rows["the store's append"] > 0 and rows["SqliteSaver's put, synchronous=OFF"] > 0
    assert list(tmp_path.iterdir()) == []
