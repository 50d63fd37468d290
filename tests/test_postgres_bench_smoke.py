"""Smoke run of the PostgreSQL benchmark: its quick mode prints every row (no speed is asserted)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent

FLOOR_PEERS = ("PostgreSQL store", "the store's call alone", "the procedure alone", "the design's statement",
               "bare transaction + the replica's append", "bare transaction through libpq")
PEERS = (*FLOOR_PEERS, "LMDB store", "bare PostgreSQL transaction", "eventsourcing recorder",
         *(f"{peer}, no flush" for peer in (*FLOOR_PEERS, "bare PostgreSQL transaction")))
MEASURES = ("100 appends in one command, ms", "load 1,000 messages, ms", "list 1,000 sessions, ms", "search, ms")
WRITERS = ("1", "4 processes", "8 processes", "4 threads", "8 threads")


@pytest.mark.slow  # spawns a writer process per writer and per host: tens of seconds on a busy machine
def test_bench_postgres_quick_prints_every_row(postgres_server, tmp_path: Path) -> None:
    completed = subprocess.run(
        [sys.executable, "-m", "benchmarks.bench_postgres", "--url", postgres_server.url, "--quick",
         "--dir", str(tmp_path)], check=False, cwd=ROOT, capture_output=True, text=True, timeout=600)
    assert completed.returncode == 0, completed.stderr
    results = json.loads(completed.stdout)
    assert sorted(results["durable append, ms"]) == sorted(PEERS)
    for figures in results["durable append, ms"].values():
        assert figures["median, ms"] > 0 and figures["client CPU, ms"] >= 0 and len(figures["each round, ms"]) == 1
    assert {flush: {peer: len(ratios) for peer, ratios in peers.items()}
            for flush, peers in results["single append : bare transaction, each round"].items()} == {
        flush: dict.fromkeys(FLOOR_PEERS, 1)
        for flush in ("durable", "no flush")}
    for store in ("PostgreSQL store", "LMDB store"):
        assert sorted(results[store]) == sorted(MEASURES)
    assert list(results["appends per second (median of the rounds)"]) == list(WRITERS)
    assert all(rate > 0 for rate in results["appends per second (median of the rounds)"].values())
    assert list(results["writer CPU per append, ms (median)"]) == list(WRITERS)
    assert {layout: len(ratios) for layout, ratios in results["8 : 1, each round"].items()} == {
        "processes": 1, "threads": 1}
