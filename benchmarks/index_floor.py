"""The floor of bulk indexing in Python: what building a search index costs with no storage at all.

Issue 16 asks for bulk import and rebuild at least as fast as SQLite's inserts with FTS5's triggers. This measures,
in one process and in alternating rounds, the process CPU time a message of bench_scale's corpus takes for:

* SQLite: ZeroClaw's schema (``baselines.SqliteSessions``), inserts with FTS5's triggers (tokenizing and indexing
  in C), ``synchronous=OFF``;
* ours: ``append_many`` a session (``durable=False``), then ``catch_up()`` of the search index, and
  ``rebuild_projections(["search"])`` alone; and the bulk import, ``import_sessions`` of every session in one
  transaction (each message with its own time), then ``catch_up()``;
* the floors, no database: cutting each message into terms (``term_keys``, as the index's writer does); that and
  the least an inverted index must do a term in Python (a term's id from a dict, its count in the message, an entry
  appended to its postings); and that and packing every term's postings into bytes once at the end.

The floor rows are not an index (no levels, no blocks, no durability); they bound from below what any index built
by Python code a term can cost. ``python -m benchmarks.index_floor [--sessions N] [--rounds R] [--pause-gc]``;
``--pause-gc`` opts in to ``pause_gc_while_decoding(True)`` first, as a host may (it pauses the cyclic collector
during our catch-ups and rebuilds, not during the appends or SQLite's inserts).
"""

from __future__ import annotations

import argparse
import os
import platform
import shutil
import sqlite3
import statistics
import sys
import tempfile
import time
from array import array
from collections import Counter
from collections.abc import Callable
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from pathlib import Path

from eventstore import ChatMessage, SessionStore, pause_gc_while_decoding
from eventstore.events import MessageAppended
from projections.search.tokenizer import term_keys

from .baselines import SqliteSessions
from .bench_scale import Corpus, Settings

Sessions = list[tuple[str, list[ChatMessage]]]


def cpu_of(call: Callable[[], object]) -> float:
    start = time.process_time()
    call()
    return time.process_time() - start


def append_all(store: SqliteSessions | SessionStore, sessions: Sessions) -> None:
    for key, messages in sessions:
        store.append_many(key, messages)


def sqlite_inserts(sessions: Sessions, directory: Path) -> float:
    with SqliteSessions(directory / "sqlite", durable=False) as store:
        return cpu_of(lambda: append_all(store, sessions))


def ours(sessions: Sessions, directory: Path) -> tuple[float, float, float]:
    """CPU seconds of the appends, of the index's catch-up after them, and of a rebuild of the index alone."""
    with SessionStore(directory / "ours", durable=False) as store:
        appends = cpu_of(lambda: append_all(store, sessions))
        catch_up = cpu_of(store.catch_up)
        rebuild = cpu_of(lambda: store.rebuild_projections(["search"]))
    return appends, catch_up, rebuild


def imported(sessions: Sessions, directory: Path) -> tuple[float, float]:
    """CPU seconds of ``import_sessions`` of every session in one transaction (each message with a time of its
    own, as a ZeroClaw source gives them; the input built before the clock starts), and of ``catch_up()`` after."""
    start = datetime(2026, 1, 1, tzinfo=UTC)
    timed = {key: [(start + timedelta(seconds=number), MessageAppended(message))
                   for number, message in enumerate(messages)] for key, messages in sessions}
    with SessionStore(directory / "imported", durable=False) as store:
        return cpu_of(lambda: store.import_sessions(timed)), cpu_of(store.catch_up)


def texts_of(sessions: Sessions) -> list[str]:
    return [message.content for _, messages in sessions for message in messages]


def cut_terms(texts: list[str]) -> float:
    return cpu_of(lambda: [term_keys(text) for text in texts])


def least_index(texts: list[str], pack: bool) -> float:
    """Term ids, counts in a message and postings entries, in Python data alone; with ``pack``, then bytes."""

    def build() -> None:
        ids: dict[bytes, int] = {}
        postings: list[array[int]] = []
        for number, text in enumerate(texts):
            for term, count in Counter(term_keys(text)).items():
                term_id = ids.get(term)
                if term_id is None:
                    term_id = ids[term] = len(postings)
                    postings.append(array("I"))
                entries = postings[term_id]
                entries.append(number)
                entries.append(count)
        if pack:
            b"".join(entries.tobytes() for entries in postings)

    return cpu_of(build)


def one_round(sessions: Sessions, texts: list[str], directory: Path, reverse: bool) -> dict[str, float]:
    """Each peer once, CPU seconds by row name; ``reverse`` runs them in the other order."""
    runs: list[Callable[[], dict[str, float]]] = [
        lambda: {"sqlite": sqlite_inserts(sessions, directory)},
        lambda: dict(zip(("appends", "catch_up", "rebuild"), ours(sessions, directory), strict=True)),
        lambda: dict(zip(("import", "import_catch_up"), imported(sessions, directory), strict=True)),
        lambda: {"terms": cut_terms(texts), "least": least_index(texts, pack=False),
                 "packed": least_index(texts, pack=True)},
    ]
    results: dict[str, float] = {}
    for run in runs[::-1] if reverse else runs:
        results.update(run())
    return results


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.index_floor", description=__doc__.split("\n")[0])
    parser.add_argument("--sessions", type=int, default=10_000, help="sessions of 20 messages (default 10,000)")
    parser.add_argument("--rounds", type=int, default=3, help="alternating rounds (default 3)")
    parser.add_argument("--dir", metavar="DIR", help="parent directory for the temporary stores (default: $TMPDIR)")
    parser.add_argument("--pause-gc", action="store_true",
                        help="opt in to pause_gc_while_decoding(True), which covers catch-ups and rebuilds")
    args = parser.parse_args(argv)
    if args.sessions < 1 or args.rounds < 1:
        parser.error("--sessions and --rounds must be at least 1")
    pause_gc_while_decoding(args.pause_gc)
    corpus = Corpus(replace(Settings(), sessions=args.sessions))
    sessions = [(corpus.key(n), corpus.session()) for n in range(args.sessions)]
    texts = texts_of(sessions)
    samples: dict[str, list[float]] = {}
    for round_number in range(args.rounds):
        directory = Path(tempfile.mkdtemp(prefix="eventstore-index-floor-", dir=args.dir))
        try:
            for name, seconds in one_round(sessions, texts, directory, reverse=round_number % 2 == 1).items():
                samples.setdefault(name, []).append(seconds)
        finally:
            shutil.rmtree(directory, ignore_errors=True)
        print(f"round {round_number + 1} of {args.rounds} done, load {os.getloadavg()[0]:.1f}", file=sys.stderr)

    per_message = {name: statistics.median(values) / len(texts) * 1e6 for name, values in samples.items()}
    sqlite = per_message["sqlite"]
    rows = [
        ("SQLite: inserts with FTS5's triggers", per_message["sqlite"]),
        ("ours: append_many (no index)", per_message["appends"]),
        ("ours: catch_up() of the search index after the appends", per_message["catch_up"]),
        ("ours: appends + catch_up", per_message["appends"] + per_message["catch_up"]),
        ("ours: rebuild_projections(['search']) alone", per_message["rebuild"]),
        ("ours: import_sessions of every session (one transaction)", per_message["import"]),
        ("ours: import_sessions + catch_up", per_message["import"] + per_message["import_catch_up"]),
        ("floor: cutting the terms (term_keys)", per_message["terms"]),
        ("floor: terms + the least an index does a term in Python", per_message["least"]),
        ("floor: that + packing the postings into bytes", per_message["packed"]),
        ("floor: our appends + the least index, packed", per_message["appends"] + per_message["packed"]),
    ]
    print(f"bulk indexing floor, {time.strftime('%Y-%m-%d %H:%M %Z')}: {len(texts):,} messages "
          f"({args.sessions:,} sessions of 20), {args.rounds} alternating rounds, medians; load "
          f"{os.getloadavg()[0]:.1f}{'; the collector paused (opted in)' if args.pause_gc else ''}")
    print(f"Python {platform.python_version()}, SQLite {sqlite3.sqlite_version}, {os.cpu_count()} CPUs")
    print()
    print("| process CPU time a message | µs | SQLite / this |")
    print("|---|---|---|")
    for title, micros in rows:
        print(f"| {title} | {micros:.1f} | {sqlite / micros:.2f}x |")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
