"""Where a search's CPU time goes: timers around the parts of bench_scale's mid-frequency queries.

Runs bench_scale's search loop on a kept store (one store object, each query once: its 2-word queries of ranks
100-2,000, then its 3-word ones, as the benchmark runs them) and takes the process CPU time of each query and of
these parts of it:

* the plan (``planning.plan_query``: the terms' ids and heads read and decoded), and of it the terms the query
  cache drops to stay within its budget (``index._Decoded._trim``: freeing decoded terms of earlier queries);
* resolving the sessions whose terms may share a message (``queries._resolve``), and of it the sessions scored
  from their postings (``queries._score_from_postings``);
* the catalog rows a search reads: the ties' activities and the results' metadata (``catalog.SessionRows``), and
  of them the reads of ``catalog.sessions`` and ``catalog.activity`` alone.

It prints the medians over the queries, in µs. A timer costs about 0.3 µs a call: the parts timed are those called
a few times a query. ``python -m benchmarks.search_parts KEPT_DIR`` where ``KEPT_DIR`` is bench_scale's ``--keep``
directory (its ``ours`` store is opened read-only: an index built by another code version must be rebuilt first,
on a copy of a store that must stay as it is).
"""

from __future__ import annotations

import argparse
import os
import statistics
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import eventstore.storage.lmdb_transaction as lmdb_transaction
import projections.catalog as catalog
import projections.search.index as index
import projections.search.queries as queries
from eventstore import SessionQuery, SessionStore

from .bench_scale import MID_BAND, Corpus, kept_settings

#: The parts, in the order printed.
PARTS = ("plan", "plan: dropping cached terms", "resolve", "resolve: from postings", "ties' activities",
         "results' metadata", "catalog reads")


class Timers:
    """CPU time spent in each part during the current query."""

    def __init__(self) -> None:
        self.spent: dict[str, int] = {}

    def wrap(self, owner: Any, name: str, part: str, when: Callable[..., bool] | None = None) -> None:
        """Time ``owner.name`` (a function or method) as ``part``; only the calls ``when`` accepts, if given."""
        plain = getattr(owner, name)
        spent, clock = self.spent, time.process_time_ns

        def timed(*args: Any, **kwargs: Any) -> Any:
            if when is not None and not when(*args):
                return plain(*args, **kwargs)
            start = clock()
            try:
                return plain(*args, **kwargs)
            finally:
                spent[part] = spent.get(part, 0) + clock() - start

        setattr(owner, name, timed)


def instrumented() -> Timers:
    timers = Timers()
    timers.wrap(queries, "plan_query", "plan")
    timers.wrap(index._Decoded, "_trim", "plan: dropping cached terms")
    timers.wrap(queries, "_resolve", "resolve")
    timers.wrap(queries, "_score_from_postings", "resolve: from postings")
    timers.wrap(catalog.SessionRows, "activities", "ties' activities")
    timers.wrap(catalog.SessionRows, "metadata", "results' metadata")
    timers.wrap(lmdb_transaction.LmdbTransaction, "get_each", "catalog reads",
                lambda _txn, space, _keys: space.name in ("catalog.sessions", "catalog.activity"))
    return timers


def measure(kept: Path, count: int) -> dict[str, dict[str, float]]:
    """``{"2 words": {"query": µs, part: µs, ...}, "3 words": ...}``: medians over ``count`` queries of each kind."""
    settings = kept_settings(kept)
    corpus = Corpus(settings)
    timers = instrumented()
    found: dict[str, dict[str, float]] = {}
    with SessionStore(kept / "ours", readonly=True) as store:
        for words in (2, 3):
            totals: list[int] = []
            parts: dict[str, list[int]] = {part: [] for part in PARTS}
            for query in corpus.queries(MID_BAND, words, count):
                timers.spent.clear()
                start = time.process_time_ns()
                store.search(SessionQuery(query))
                totals.append(time.process_time_ns() - start)
                for part in PARTS:
                    parts[part].append(timers.spent.get(part, 0))
            found[f"{words} words"] = {"query": statistics.median(totals) / 1e3,
                                       **{part: statistics.median(spent) / 1e3 for part, spent in parts.items()}}
    return found


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    parser.add_argument("kept", type=Path, help="bench_scale's --keep directory")
    parser.add_argument("--queries", type=int, default=200, help="queries of each kind (default 200)")
    args = parser.parse_args()
    found = measure(args.kept, args.queries)
    print(f"{time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())}, load average {os.getloadavg()[0]:.1f}; "
          f"process CPU time, medians of {args.queries} queries, µs")
    print(f"{'':34}" + "".join(f"{kind:>10}" for kind in found))
    for part in ("query", *PARTS):
        print(f"{part:34}" + "".join(f"{medians[part]:10.0f}" for medians in found.values()))


if __name__ == "__main__":
    main()
