"""Queries of the most common words answered from message-level maps: a design measured on a kept corpus, not built.

Usage (from the project root, on stores ``bench_scale --keep DIR`` built)::

    python -m benchmarks.bench_common_words --keep /tmp/scale --sessions 100000
    python -m benchmarks.bench_common_words --keep /tmp/scale20k --sessions 20000 --rounds 3

The index keeps, for each term and block of sessions, each session's best level and a tag; a session's score is
bounded by the sum of its terms' best levels, which may come from different messages. For the 100 most common
words that bound is loose, so the threshold path walks thousands of sessions and reads many from postings
(docs/search.md, "Left to do"). This benchmark measures what message-level data would give instead. It reads the
index's postings of the 100 most common words and each message's level (that of the terms it holds once, which
its length gives), and builds in memory, serialized as they would be stored (roaring bitmaps keyed like
``search.maps``, ``index << MAP_SHIFT | offset``):

* ``maps``: each term's message map in every block of sessions (the index stores one only for blocks of
  ``MAP_FROM`` to ``MAP_UP_TO`` sessions, so none for these words);
* ``classes``: each block's messages grouped by their level;
* ``repeats``: each term's messages that hold it at another level than the message's (it repeats there), by level.

From them a query is answered exactly: each term's best sessions by its level alone (``queries._best_of_term``,
as the shared-sessions path does); the messages holding two of the terms or more (the maps ANDed, in C), level by
level, best first, each level's messages in a few bitmap operations, stopping when the sum of the terms' weights
at the next level cannot reach the ``limit``-th score; then those where a term repeats, one by one, while their
bound can. The results are compared, query by query, with the index's own query and with a brute-force BM25 over
the same postings; both ways run in one process, in turn with FTS5's unranked query when the kept directory holds
bench_scale's SQLite store (``--bm25``: its ranked query too, once a query, in a pass of its own), CPU time a
query. Both ways of ours are timed from the index's view (``queries.search_sessions`` and the plan), without the
read transaction, the check that the index is current and the sessions' metadata that ``store.search`` adds.

It also counts the floor of any query that bounds a session by its terms' best levels (the threshold walk, or
block-max bounds, which bound blocks by the same levels): the sessions holding several terms whose bound reaches
the ``limit``-th score, which it must resolve, and how many of them hold a term in several messages (read from
postings). The maps, levels and repeats come from a dict of bytes standing for LMDB (the values a query would read
are counted), a message's level from its chunk, read through the index.
"""

from __future__ import annotations

import argparse
import heapq
import statistics
import sys
import time
from array import array
from collections import defaultdict
from collections.abc import Iterator
from itertools import combinations, repeat
from operator import mul
from pathlib import Path

from pyroaring import BitMap

from eventstore import SessionStore
from projections.search import queries
from projections.search.formats import BLOCK_BITS, CHUNK_MESSAGES, MAP_SHIFT, _Chunk, chunk_occurrences_of
from projections.search.planning import Plan, plan_query
from projections.search.reader import IndexReader
from projections.search.scoring import LEVEL_WEIGHTS, may_reach, ranked
from projections.search.tokenizer import parse_query

from .baselines import SqliteSessions
from .bench_scale import TOP_BAND, Corpus, Settings

LIMIT = 50
_OFFSET = (1 << BLOCK_BITS) - 1


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
            self.levels[sid] = bytes(_Chunk(raw).levels())
            for tid, occurrences in zip(tids, chunk_occurrences_of(raw, tids)):
                if occurrences:
                    found[tid].extend([sid << 16 | index << 8 | level for index, level in occurrences])
        self.of = found
        self.activity = view.activities(list(self.levels))

    def rows(self, tid: int) -> Iterator[tuple[int, int, int]]:
        for value in self.of[tid]:
            yield value >> 16, value >> 8 & 0xFF, value & 0xFF


class Stored:
    """What the design would store, serialized: ``maps`` and ``repeats`` by (term, block), ``classes`` by block."""

    def __init__(self, postings: Postings) -> None:
        self.maps: dict[tuple[int, int], bytes] = {}
        #: The messages where the term repeats (a bitmap) and its level in each, in the bitmap's order.
        self.repeats: dict[tuple[int, int], tuple[bytes, bytes]] = {}
        for tid in postings.of:
            keys: dict[int, list[int]] = defaultdict(list)
            own: dict[int, dict[int, int]] = defaultdict(dict)
            for sid, index, level in postings.rows(tid):
                block, key = sid >> BLOCK_BITS, index << MAP_SHIFT | sid & _OFFSET
                keys[block].append(key)
                if level != postings.levels[sid][index]:
                    own[block][key] = level
            for block, found in keys.items():
                self.maps[tid, block] = _serialized(found)
            for block, repeated in own.items():
                ordered = sorted(repeated)
                self.repeats[tid, block] = _serialized(ordered), bytes(map(repeated.__getitem__, ordered))
        by_level: dict[int, dict[int, list[int]]] = defaultdict(lambda: defaultdict(list))
        for sid, levels in postings.levels.items():
            for index, level in enumerate(levels):
                by_level[sid >> BLOCK_BITS][level].append(index << MAP_SHIFT | sid & _OFFSET)
        self.classes = {block: {level: _serialized(found) for level, found in groups.items()}
                        for block, groups in by_level.items()}

    def sizes(self) -> dict[str, int]:
        return {"maps": sum(map(len, self.maps.values())),
                "repeats": sum(len(raw) + len(levels) for raw, levels in self.repeats.values()),
                "classes": sum(len(raw) for groups in self.classes.values() for raw in groups.values())}


def _serialized(keys: list[int]) -> bytes:
    found = BitMap(keys)
    found.run_optimize()
    return bytes(found.serialize())


def by_message_maps(view: IndexReader, stored: Stored, plan: Plan, limit: int, reads: list[int]) -> list[int]:
    """The ``limit`` best sessions of ``plan`` (no phrases, several terms), exactly, from the maps, classes and
    repeats, and the levels of a few messages read from their chunks; ``reads`` counts the values read."""
    terms = plan.terms
    tables = [list(map(mul, repeat(term.weight), LEVEL_WEIGHTS)) for term in terms]
    scored = Scores(limit)
    for term, table in zip(terms, tables):  # each term's best sessions by its level alone
        for sid, score in queries._best_of_term(term.summary, table, limit).items():
            if score > scored.get(sid, 0.0):
                scored[sid] = score
    blocks = sorted({number for term in terms for number, _ in term.summary.blocks})
    work = []  # per block: its first session, the messages of several terms (where none repeats), maps, the others
    for number in blocks:
        maps = [BitMap.deserialize(raw) if (raw := stored.maps.get((term.tid, number))) else BitMap()
                for term in terms]
        reads[0] += len(terms)
        shared = BitMap()
        for one, other in combinations(maps, 2):
            shared |= one & other
        if not shared:
            continue
        repeats = [(BitMap.deserialize(pair[0]), pair[1]) if (pair := stored.repeats.get((term.tid, number)))
                   else (BitMap(), b"") for term in terms]
        reads[0] += len(terms) + 1  # the repeats (one value a term and block) and the block's classes
        odd = shared & BitMap.union(*(repeated for repeated, _ in repeats))
        work.append((number, shared - odd, maps, odd, repeats))
    below = -1  # the levels below this one hold no messages of two terms that can reach kth, only of three
    for level in sorted({level for number, *_ in work for level in stored.classes[number]}, reverse=True):
        kth = scored.kth
        if not may_reach(sum(table[level] for table in tables), kth):
            break  # no message whose terms are each there once can reach the limit-th score any more
        if not may_reach(max(one[level] + other[level] for one, other in combinations(tables, 2)), kth):
            below = level
            break
        for number, plain, maps, *_ in work:
            raw = stored.classes[number].get(level)
            found = plain & BitMap.deserialize(raw) if raw else None
            if found:
                _raise(scored, number, _groups(found, maps, tables, level, scored.kth))
    if below >= 0:  # the messages of every term below: few, each one's level read from its chunk
        for number, plain, maps, *_ in work:
            base = number << BLOCK_BITS
            every = BitMap.intersection(plain, *maps)
            for key in every:
                sid = base | key & _OFFSET
                level = message_level(view, sid, key >> MAP_SHIFT)
                reads[0] += 1
                score = sum(table[level] for table in tables)
                if level <= below and score > scored.get(sid, 0.0):
                    scored[sid] = score
    for number, _, maps, odd, repeats in work:  # messages where a term repeats, while their bound can reach
        if odd:
            _repeats(view, stored, tables, scored, number, maps, odd, repeats, reads)
    kth = scored.kth
    candidates = [sid for sid, score in scored.items() if score >= kth] if kth > 0 else list(scored)
    activity = view.activities(candidates)
    return ranked({sid: scored[sid] for sid in candidates}, lambda sid: (activity.get(sid, 0), sid), limit)


def message_level(view: IndexReader, sid: int, index: int) -> int:
    """The level of a session's message (that of the terms it holds once), read from its chunk of postings."""
    number, place = divmod(index, CHUNK_MESSAGES)
    raw = view.chunk(sid, number)
    assert raw is not None
    return _Chunk(raw).levels()[place]


class Scores(dict[int, float]):
    """Session → best score found, keeping the ``limit`` best in a heap as they rise (``kth``: the ``limit``-th)."""

    def __init__(self, limit: int) -> None:
        super().__init__()
        self.limit = limit
        self._best: dict[int, float] = {}  # the sessions in the heap
        self._heap: list[tuple[float, int]] = []

    def __setitem__(self, sid: int, score: float) -> None:
        super().__setitem__(sid, score)
        best, heap = self._best, self._heap
        if sid in best:  # a session of the heap rose: its entry is replaced (the heap is small)
            best[sid] = score
            self._heap = [(value, key) for key, value in best.items()]
            heapq.heapify(self._heap)
        elif len(heap) < self.limit:
            best[sid] = score
            heapq.heappush(heap, (score, sid))
        elif score > heap[0][0]:
            del best[heapq.heapreplace(heap, (score, sid))[1]]
            best[sid] = score

    @property
    def kth(self) -> float:
        return self._heap[0][0] if len(self._heap) >= self.limit else -1.0


def _groups(found: BitMap, maps: list[BitMap], tables: list[list[float]], level: int,
            kth: float) -> list[tuple[BitMap, float]]:
    """``found`` (messages of two terms or more at ``level``, each term once) cut by which terms they hold, each
    part with its score; parts that cannot reach ``kth`` are left out."""
    if len(maps) == 2:
        return [(found, tables[0][level] + tables[1][level])]
    inside = [found & one for one in maps]
    every = BitMap.intersection(*inside)
    parts = [(every, sum(table[level] for table in tables))]
    for (i, one), (j, other) in combinations(enumerate(inside), 2):
        score = tables[i][level] + tables[j][level]
        if may_reach(score, kth):
            parts.append(((one & other) - every, score))
    return [(keys, score) for keys, score in parts if keys and may_reach(score, kth)]


def _raise(scored: Scores, number: int, parts: list[tuple[BitMap, float]]) -> None:
    """Raise the sessions of the messages in ``parts`` to the parts' scores."""
    base = number << BLOCK_BITS
    get = scored.get
    for keys, score in parts:
        for key in keys:
            sid = base | key & _OFFSET
            if score > get(sid, 0.0):
                scored[sid] = score


#: A part of the messages where terms repeat this small is scored message by message, each one's level read from
#: its chunk; a larger one level by level of the block's messages, while its bound can reach.
_FEW = 64


def _repeats(view: IndexReader, stored: Stored, tables: list[list[float]], scored: Scores, number: int,
             maps: list[BitMap], odd: BitMap, repeats: list[tuple[BitMap, bytes]], reads: list[int]) -> None:
    """Score the messages of several terms where one repeats (``odd``), cut by which terms repeat in them: a
    part's bound takes those terms at the best level they repeat at in the block, the others at the messages'
    level, which falls as the levels are taken best first."""
    repeating = [odd & repeated for repeated, _ in repeats]
    tops = [max(levels, default=0) for _, levels in repeats]
    base = number << BLOCK_BITS
    classes = stored.classes[number]

    def score(key: int, level: int) -> float:
        total = 0.0
        for held, (repeated, levels), table in zip(maps, repeats, tables):
            if key in held:
                total += table[levels[repeated.rank(key) - 1] if key in repeated else level]
        return total

    for chosen in range(1, 1 << len(tables)):
        part = odd.copy()
        for place, keys in enumerate(repeating):
            if chosen >> place & 1:
                part &= keys
            else:
                part -= keys
        if not part:
            continue
        if len(part) <= _FEW:
            for key in part:
                sid = base | key & _OFFSET
                reads[0] += 1
                total = score(key, message_level(view, sid, key >> MAP_SHIFT))
                if total > scored.get(sid, 0.0):
                    scored[sid] = total
            continue
        for level in sorted(classes, reverse=True):
            bound = sum(table[max(level, top) if chosen >> place & 1 else level]
                        for place, (table, top) in enumerate(zip(tables, tops)))
            if not may_reach(bound, scored.kth):
                break
            found = part & BitMap.deserialize(classes[level])
            for key in found:
                sid = base | key & _OFFSET
                total = score(key, level)
                if total > scored.get(sid, 0.0):
                    scored[sid] = total


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
    args = parser.parse_args(argv)
    corpus = Corpus(Settings(sessions=args.sessions))
    sqlite_path = Path(args.keep) / "sqlite"
    fts = SqliteSessions(sqlite_path, durable=False) if sqlite_path.exists() else None
    runners = ["index", "maps"] + (["FTS5"] if fts is not None else [])
    with SessionStore(Path(args.keep) / "ours", readonly=True) as store:

        def run(view: IndexReader, _txn: object) -> None:
            start = time.process_time()
            postings = Postings(view, corpus.words[:TOP_BAND[1]])
            stored = Stored(postings)
            print(f"read and built in {time.process_time() - start:.1f} s of CPU; bytes: "
                  + ", ".join(f"{name} {size / 1e6:.1f} MB" for name, size in stored.sizes().items()), flush=True)
            for words in (2, 3):
                keywords = [keyword for keyword in corpus.queries(TOP_BAND, words, args.queries)
                            if _several_terms(plan_query(view, parse_query(keyword)))]  # what the design answers
                ours: dict[str, list[float]] = {keyword: [] for keyword in keywords}
                unranked: dict[str, list[float]] = {keyword: [] for keyword in keywords}
                theirs: dict[str, list[float]] = {keyword: [] for keyword in keywords}
                same = exact_ours = exact_theirs = 0
                floors: list[tuple[int, int]] = []
                reads = [0]
                for round_number in range(args.rounds):
                    for n, keyword in enumerate(keywords):
                        parsed = parse_query(keyword)
                        turn = (n + round_number) % len(runners)
                        for who in runners[turn:] + runners[:turn]:
                            begin = time.process_time()
                            if who == "FTS5":
                                assert fts is not None
                                fts.search(keyword, LIMIT)
                                unranked[keyword].append(time.process_time() - begin)
                            elif who == "index":
                                found = [sid for sid, _ in queries.search_sessions(view, parsed, LIMIT)]
                                theirs[keyword].append(time.process_time() - begin)
                            else:
                                plan = plan_query(view, parsed)
                                assert plan is not None
                                mine = by_message_maps(view, stored, plan, LIMIT, reads)
                                ours[keyword].append(time.process_time() - begin)
                        if round_number:
                            continue
                        same += found == mine
                        assert plan is not None
                        expected, best, sessions = brute_force(postings, plan, LIMIT)
                        exact_theirs += found == expected
                        exact_ours += mine == expected
                        floors.append(session_bound_floor(postings, plan, best, sessions, expected))
                peers = ""
                if fts is not None:
                    fastest = [min(times) * 1e3 for times in unranked.values()]
                    peers = f"; FTS5 unranked {statistics.median(fastest):.2f} ms"
                if fts is not None and args.bm25:  # in a pass of its own: it evicts the others' data from the caches
                    ranked_ms = []
                    for keyword in keywords:
                        begin = time.process_time()
                        fts.search_ranked(keyword, LIMIT)
                        ranked_ms.append((time.process_time() - begin) * 1e3)
                    peers += f", FTS5 bm25() {statistics.median(ranked_ms):.1f} ms (run once)"
                mine_ms = [min(times) * 1e3 for times in ours.values()]
                theirs_ms = [min(times) * 1e3 for times in theirs.values()]
                print(f"{words} words of the 100 most common ({len(keywords)} queries, best of {args.rounds}): "
                      f"CPU time a query, median (p90): index {statistics.median(theirs_ms):.2f} "
                      f"({_p90(theirs_ms):.2f}) ms, message maps {statistics.median(mine_ms):.2f} "
                      f"({_p90(mine_ms):.2f}) ms, {statistics.median(theirs_ms) / statistics.median(mine_ms):.1f}x; "
                      f"values read a query {reads[0] / len(keywords) / args.rounds:.0f}{peers}")
                print(f"  same sessions in the same order {same} of {len(keywords)}; as a brute-force BM25: index "
                      f"{exact_theirs}, message maps {exact_ours}")
                print("  sessions a bound by best levels leaves open (median): "
                      f"{statistics.median(open_ for open_, _ in floors):.0f}, of which with a term in several "
                      f"messages {statistics.median(spread for _, spread in floors):.0f}", flush=True)

        store._search.query(run)  # private: the index's view, to read its postings
    if fts is not None:
        fts.close()
    return 0


def _several_terms(plan: Plan | None) -> bool:
    return plan is not None and len(plan.terms) > 1 and not plan.phrases


def _p90(values: list[float]) -> float:
    return sorted(values)[int(len(values) * 0.9)]


if __name__ == "__main__":
    sys.exit(main())
