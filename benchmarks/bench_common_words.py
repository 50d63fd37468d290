"""Queries of the most common words: the index's message-level path against the threshold path, FTS5 and a plain BM25.

Usage (from the project root, on stores ``bench_scale --keep DIR`` built)::

    python -m benchmarks.bench_common_words --keep /tmp/scale --sessions 100000
    python -m benchmarks.bench_common_words --keep /tmp/scale20k --sessions 20000 --rounds 3
    python -m benchmarks.bench_common_words --keep /tmp/scale --sessions 100000 --live /tmp/copy-of-scale/ours

A query of a few of the 100 most common words takes the message-level path (``queries._by_messages``: the terms'
message maps, the blocks' messages by level and the terms' repeated messages); before it was built such queries took
the threshold path (``queries._threshold``), which bounds a session by the sum of its terms' best levels and stops
at its work budget (``EXACT_WORK``). Both are run here in one process, query by query in turn with FTS5's unranked
query when the kept directory holds bench_scale's SQLite store (``--bm25``: its ranked query too, once a query, in a
pass of its own), CPU time a query, each through a reader of its own (nothing decoded by one is read by the other),
timed from the index's view (``queries.search_sessions``), without the read transaction, the check that the index
is current and the sessions' metadata that ``store.search`` adds. Their results are compared with each other and
with a brute-force BM25 over the terms' postings, read once from the index.

It also counts the floor of any query that bounds a session by its terms' best levels (the threshold walk, or
block-max bounds, which bound blocks by the same levels): the sessions holding several terms whose bound reaches
the ``limit``-th score, which it must resolve, and how many of them hold a term in several messages (read from
postings).
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import time
from array import array
from collections import defaultdict
from collections.abc import Iterator, Sequence
from pathlib import Path

from eventstore import SessionQuery, SessionStore
from eventstore.storage import ReadTransaction
from projections.search import queries
from projections.search.formats.chunks import chunk_levels, chunk_occurrences_of
from projections.search.planning import Plan, plan_query
from projections.search.reader import IndexReader
from projections.search.scoring import LEVEL_WEIGHTS, may_reach, ranked
from projections.search.tokenizer import QueryWord, parse_query

from .baselines import SqliteSessions
from .bench_scale import MID_BAND, TOP_BAND, Corpus, Settings

LIMIT = 50


class Postings:
    """The 100 most common words' postings (``sid << 16 | index << 8 | level``, u64), each message's level, the
    sessions' activity: read once from the index."""

    def __init__(self, view: IndexReader, words: list[str]) -> None:
        tids = [tid for tid in map(view.tid, words) if tid is not None]
        found = {tid: array("Q") for tid in tids}
        self.levels: dict[int, bytes] = {}
        for (sid, number), raw in view.stored_chunks():
            if number:  # the corpus's sessions have fewer messages than a chunk
                raise ValueError("sessions of more than one chunk of postings: not this benchmark's corpus")
            self.levels[sid] = chunk_levels(raw)
            for tid, occurrences in zip(tids, chunk_occurrences_of(raw, tids)):
                if occurrences:
                    found[tid].extend([sid << 16 | index << 8 | level for index, level in occurrences])
        self.of = found
        self.activity = view.activities(list(self.levels))

    def rows(self, tid: int) -> Iterator[tuple[int, int, int]]:
        for value in self.of[tid]:
            yield value >> 16, value >> 8 & 0xFF, value & 0xFF


def brute_force(postings: Postings, plan: Plan, limit: int) -> tuple[list[int], dict[int, dict[int, int]],
                                                                     dict[int, float]]:
    """A plain BM25 over the postings: the ``limit`` best sessions, each session's best level a term, scores."""
    messages: dict[tuple[int, int], float] = defaultdict(float)
    best: dict[int, dict[int, int]] = defaultdict(dict)
    for term in plan.terms:  # in plan order, as the index adds them
        for sid, index, level in postings.rows(term.tid):
            messages[sid, index] += term.weight * LEVEL_WEIGHTS[level]
            held = best[sid]
            held[term.tid] = max(held.get(term.tid, 0), level)
    sessions: dict[int, float] = defaultdict(float)
    for (sid, _), score in messages.items():
        if score > sessions[sid]:
            sessions[sid] = score
    return ranked(sessions, lambda sid: (postings.activity.get(sid, 0), sid), limit), best, sessions


def session_bound_floor(postings: Postings, plan: Plan, best: dict[int, dict[int, int]],
                        sessions: dict[int, float], top: list[int]) -> tuple[int, int]:
    """Sessions of several terms whose bound (the sum of their terms' best levels) reaches the ``limit``-th score,
    and how many of them hold a term in several messages."""
    kth = sessions[top[-1]]
    weights = {term.tid: term.weight for term in plan.terms}
    over = [sid for sid, held in best.items() if len(held) > 1
            and may_reach(sum(weights[tid] * LEVEL_WEIGHTS[level] for tid, level in held.items()), kth)]
    spread: set[int] = set()
    for term in plan.terms:
        seen: set[int] = set()
        for sid, _, _ in postings.rows(term.tid):
            if sid in seen:
                spread.add(sid)
            seen.add(sid)
    return len(over), sum(1 for sid in over if sid in spread)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--keep", required=True, help="a directory bench_scale --keep built (its corpus.json)")
    parser.add_argument("--sessions", type=int, required=True, help="the corpus's sessions (for its words)")
    parser.add_argument("--queries", type=int, default=40, help="queries of each kind")
    parser.add_argument("--rounds", type=int, default=1, help="passes over the queries (best of them a query)")
    parser.add_argument("--bm25", action="store_true", help="also time FTS5's bm25() query once a query")
    parser.add_argument("--live", metavar="STORE",
                        help="instead: time store.search as a live assistant gives it, on STORE (a writable copy of "
                        "the kept store: it gains messages), each query after an append (the index a few events "
                        "behind) or after a catch-up's commit")
    parser.add_argument("--catch-up-every", type=int, default=8, metavar="N",
                        help="with --live: catch the index up before every N-th query (default 8)")
    args = parser.parse_args(argv)
    corpus = Corpus(Settings(sessions=args.sessions))
    if args.live:
        return live(Path(args.live), corpus, args.queries, args.catch_up_every)
    sqlite_path = Path(args.keep) / "sqlite"
    fts = SqliteSessions(sqlite_path, durable=False) if sqlite_path.exists() else None
    runners = ["threshold", "messages"] + (["FTS5"] if fts is not None else [])
    with SessionStore(Path(args.keep) / "ours", readonly=True) as store:
        index = store._search_index  # private: the index's readers, to time each path from its own

        def run(view: IndexReader, txn: ReadTransaction) -> None:
            postings = Postings(view, corpus.words[:TOP_BAND[1]])
            for words in (2, 3):
                keywords = [keyword for keyword in corpus.queries(TOP_BAND, words, args.queries)
                            if _by_messages(plan_query(view, parse_query(keyword)))]
                times: dict[str, dict[str, list[float]]] = {who: {keyword: [] for keyword in keywords}
                                                            for who in runners}
                same = exact_messages = exact_threshold = 0
                floors: list[tuple[int, int]] = []
                for round_number in range(args.rounds):
                    for n, keyword in enumerate(keywords):
                        parsed = parse_query(keyword)
                        turn = (n + round_number) % len(runners)
                        found: dict[str, list[int]] = {}
                        for who in runners[turn:] + runners[:turn]:
                            begin = time.process_time()
                            if who == "FTS5":
                                assert fts is not None
                                fts.search(keyword, LIMIT)
                            else:
                                found[who] = _sessions(index.reader(txn), parsed, who == "threshold")
                            times[who][keyword].append(time.process_time() - begin)
                        if round_number:
                            continue
                        plan = plan_query(view, parsed)
                        assert plan is not None
                        expected, best, sessions = brute_force(postings, plan, LIMIT)
                        same += found["threshold"] == found["messages"]
                        exact_threshold += found["threshold"] == expected
                        exact_messages += found["messages"] == expected
                        floors.append(session_bound_floor(postings, plan, best, sessions, expected))
                fastest = {who: [min(samples) * 1e3 for samples in of.values()] for who, of in times.items()}
                peers = ""
                if fts is not None:
                    peers = f"; FTS5 unranked {statistics.median(fastest['FTS5']):.2f} ms"
                if fts is not None and args.bm25:  # in a pass of its own: it evicts the others' data from the caches
                    ranked_ms = []
                    for keyword in keywords:
                        begin = time.process_time()
                        fts.search_ranked(keyword, LIMIT)
                        ranked_ms.append((time.process_time() - begin) * 1e3)
                    peers += f", FTS5 bm25() {statistics.median(ranked_ms):.1f} ms (run once)"
                threshold, messages = fastest["threshold"], fastest["messages"]
                print(f"{words} words of the 100 most common ({len(keywords)} queries, best of {args.rounds}): "
                      f"CPU time a query, median (p90): threshold path {statistics.median(threshold):.2f} "
                      f"({_p90(threshold):.2f}) ms, message path {statistics.median(messages):.2f} "
                      f"({_p90(messages):.2f}) ms, {statistics.median(threshold) / statistics.median(messages):.1f}x"
                      f"{peers}")
                print(f"  same sessions in the same order {same} of {len(keywords)}; as a brute-force BM25: "
                      f"threshold path {exact_threshold}, message path {exact_messages}")
                print("  sessions a bound by best levels leaves open (median): "
                      f"{statistics.median(open_ for open_, _ in floors):.0f}, of which with a term in several "
                      f"messages {statistics.median(spread for _, spread in floors):.0f}", flush=True)

        store._search.query(run)  # private: the index's view, to read its postings
    if fts is not None:
        fts.close()
    return 0


def live(path: Path, corpus: Corpus, count: int, catch_up_every: int) -> int:
    """``store.search`` of the most common words' and mid-frequency queries on a store that keeps changing: before
    each query either a message is appended to an existing session (the index is then behind by a few events, and
    the query reads it through the batch that applies them in memory) or, every ``catch_up_every`` queries, the
    index catches up (a commit that writes it): CPU time a query, by kind and by what came before it."""
    keywords = {f"{words} words of {name}": corpus.queries(band, words, count)
                for band, name in ((TOP_BAND, "the 100 most common"), (MID_BAND, "ranks 100-2,000"))
                for words in (2, 3)}
    with SessionStore(path, durable=False) as store:
        store.catch_up()
        sessions = len(store.list_sessions())
        for number, (kind, queries_of_kind) in enumerate(keywords.items()):
            after: dict[str, list[float]] = {"an append": [], "a catch-up": []}
            for n, keyword in enumerate(queries_of_kind):
                if n % catch_up_every:
                    # Each kind appends to sessions of its own: runs again on one store spread their appends wider.
                    store.append(Corpus.key((n * 7919 + number * 104_729) % sessions), corpus.session()[0])
                    before = "an append"
                else:
                    store.catch_up()
                    before = "a catch-up"
                begin = time.process_time()
                store.search(SessionQuery(keyword))
                after[before].append((time.process_time() - begin) * 1e3)
            print(f"{kind} ({len(queries_of_kind)} queries, live store, load {os.getloadavg()[0]:.1f}): CPU time a "
                  "query, median (p90, max) " + ", ".join(
                      f"after {before} {statistics.median(ms):.2f} ({_p90(ms):.2f}, {max(ms):.1f}) ms"
                      for before, ms in after.items()), flush=True)
    return 0


def _sessions(view: IndexReader, words: Sequence[QueryWord], threshold: bool) -> list[int]:
    """The query's sessions, by the message path or (``threshold``) by the path such queries took before it."""
    routed = queries._messages_mapped
    if threshold:
        queries._messages_mapped = lambda plan: False
    try:
        return [sid for sid, _ in queries.search_sessions(view, words, LIMIT)]
    finally:
        queries._messages_mapped = routed


def _by_messages(plan: Plan | None) -> bool:
    """Whether the message path answers the plan."""
    return plan is not None and len(plan.terms) > 1 and not plan.phrases and queries._messages_mapped(plan) \
        and not queries._intersection_pays(plan)


def _p90(values: list[float]) -> float:
    return sorted(values)[int(len(values) * 0.9)]


if __name__ == "__main__":
    sys.exit(main())
