"""Smoke run of the scale benchmark: a tiny corpus, every row and every target printed, exit status 0."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from benchmarks.bench_scale import BOUNDS, TARGETS

ROOT = Path(__file__).resolve().parent.parent

ROWS = (
    "build: ours append_many (no index) / SQLite inserts with FTS5 triggers",
    "build: ours catch_up() of the search index",
    "build with the search index: appends + catch_up / inserts",
    "build: appends / inserts, cost a message, last tenth / first",
    "build: catch_up, cost a message, last tenth / first",
    "bytes on disk (allocated; SQLite/ours)",
    "list_sessions_with_metadata() of 45, fresh process",
    "open the store, fresh process",
    "open + list, fresh process",
    "the whole process (interpreter, imports, open, list)",
    "load of a 20-message session, random key (first, cache off)",
    "get_session_metadata of a 20-message session, random key",
    "session_exists of a 20-message session, random key",
    "list_sessions_page(limit=50), the first page, with the total",
    "list_sessions_page(limit=50) from a cursor at a random depth",
    "list_sessions(prefix=...) of about 1 in 1,000 keys",
    "eventstore sessions (the first page), the whole process",
    "eventstore sessions --json (all 45), the whole process",
    "search, 2 words of ranks 100-2,000, SQLite: FTS5 (ZeroClaw, unranked)",
    "search, 2 words of ranks 100-2,000, SQLite: FTS5 bm25",
    "search, 3 words of ranks 100-2,000, SQLite: FTS5 (ZeroClaw, unranked)",
    "search, 3 words of ranks 100-2,000, SQLite: FTS5 bm25",
    "search, 2 words of the 100 most common, SQLite: FTS5 (ZeroClaw, unranked)",
    "search, 2 words of the 100 most common, SQLite: FTS5 bm25",
    "search, 3 words of the 100 most common, SQLite: FTS5 (ZeroClaw, unranked)",
    "search, 3 words of the 100 most common, SQLite: FTS5 bm25",
    "ours, pages per named database",
    "SQLite, pages per table and index",
)


@pytest.mark.slow  # builds two stores and spawns listing processes: tens of seconds on a busy machine
def test_bench_scale_quick_prints_every_row_and_target(tmp_path: Path) -> None:
    completed = subprocess.run(
        [sys.executable, "-m", "benchmarks.bench_scale", "--quick", "--sessions", "45", "--dir", str(tmp_path)],
        check=False, cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert completed.returncode == 0, completed.stderr
    out = completed.stdout
    assert "45 sessions of 20 messages (900)" in out
    missing = [row for row in ROWS if row not in out]
    assert not missing, out
    for database in ("log.events", "messages.chunks", "sessions_fts (all shadow tables)"):
        assert database in out
    verdicts = [line for line in out.splitlines() if line.lstrip().startswith(("[met   ]", "[missed]"))]
    assert len(verdicts) == len(TARGETS) + len(BOUNDS)
    for _key, text, *_ in TARGETS + BOUNDS:
        assert text in out
    assert list(tmp_path.iterdir()) == []  # the stores are removed
