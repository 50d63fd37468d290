"""The floor of a ranked search in Python: the least a ranked answer costs with today's stored forms.

Issue 16 asks for 2- and 3-word queries of mid-frequency words within 1.5x of FTS5's unranked query at 100,000
sessions. This measures, on bench_scale's kept stores and queries, the process CPU time a query takes for FTS5's
unranked query (ZeroClaw's), our ``search()``, and floor rows that each add to the one before:

* (a) the reads a ranked answer cannot avoid with today's stored forms, nothing decoded but the ids and block
  numbers that find the next value: the index's message count, each query term's id (``search.terms``) and head
  (``search.summary``: the whole term, or the list of its blocks, then each block's summary and message map in
  ``search.blocks`` and ``search.maps``), the postings of the open sessions (below) and the answer's 50 catalog rows
  (two ``getmulti``: the sessions' positions, then their rows); which sessions those are comes from an earlier,
  untimed pass;
* (b) that, and the least work that turns those bytes into the answer, in numpy: each term's sessions, weights and
  tags as arrays; each term's best sessions (at or above the weight its ``limit``-th best reaches) and the sessions
  where two terms share a message (their message maps' keys ANDed; in a block without a map, every session that
  holds both); every candidate scored by its best message as far as the tags tell (a tag names the message holding
  a term's best level: equal tags add up); an open session (a term in several messages, and another term in a
  message it shares) whose bound reaches the ``limit``-th score scored from its postings; the ``limit`` best (ties
  at the cut in any order: no activity read);
* (c) that, and the results' metadata objects from their rows (``catalog._metadata``, what ``search()`` returns);
* the same as (c) with each query's terms already decoded in memory (what a perfect cache would leave).

FTS5 ranked by ``bm25()`` runs in a pass of its own after, as bench_scale runs it (its long queries would evict the
others' data from the CPU's caches). Every other row runs each query once, interleaved query by query in an order
that rotates: each row finds in the CPU's caches what the rows before it read of the same query, which bench_scale's
loop does not (``search_cold`` runs the floor rows in whole passes over the queries, as that loop meets them).
The floor's answers are compared with ``search()``'s as sets of the sessions at top scores (the sessions above the
cut must be ``search()``'s, and ``search()``'s others must tie at the cut), and the run fails if one differs.
``python -m benchmarks.search_floor KEPT_DIR [--queries N]`` where ``KEPT_DIR`` is bench_scale's ``--keep``
directory (its stores are opened read-only; use a copy).
"""

from __future__ import annotations

import argparse
import functools
import os
import platform
import sqlite3
import statistics
import sys
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

import lmdb
import numpy as np
import numpy.typing as npt
from pyroaring import BitMap

import projections.catalog as catalog
import projections.search.formats as formats
from eventstore import SessionQuery, SessionStore
from eventstore._errors import StoreCorrupted
from eventstore.storage.lmdb import Environment
from projections.search.formats.arrays import U32
from projections.search.formats.chunks import CHUNK_MESSAGES, chunk_occurrences
from projections.search.formats.keys import (
    META_MESSAGES,
    block_key,
    blocks_of_value,
    chunk_key,
    count_of_value,
    id_key,
    whole_head,
)
from projections.search.formats.maps import JOINED_SHIFT, mapped_size
from projections.search.formats.summaries import LAST_TAG, SUMMARY_HEAD
from projections.search.formats.wholes import _HEAD as WHOLE_HEAD
from projections.search.scoring import LEVEL_WEIGHTS, idf
from projections.search.tokenizer import term_key, tokenize

from .baselines import SqliteSessions
from .bench_scale import MID_BAND, Corpus, kept_settings

#: Sessions an answer holds: ``search()``'s default, FTS5's ``LIMIT``.
LIMIT = 50
#: The rows printed, in order.
ROWS = ("FTS5 unranked", "ours: search()", "floor (a): the reads", "floor (b): + the answer",
        "floor (c): + the results' metadata", "floor, terms decoded in memory", "FTS5 bm25")
_LEVEL_WEIGHTS = np.array(LEVEL_WEIGHTS)
_NONE = np.empty(0, dtype=np.uint32)
_OFFSET_BITS = np.uint32((1 << formats.BLOCK_BITS) - 1)
#: Relative slack of a tie: the library sums a session's weights in another order (``scoring.may_reach``).
_TOLERANCE = 1e-9

#: The stored bytes of a query: the index's message count, and each term's id, head, and blocks and their message
#: maps (none for a term stored whole; ``None`` for a block without a map).
Reads = tuple[bytes, list[tuple[int, bytes, list[bytes], list[bytes | None]]]]
#: A session's chunks of postings (``search.docs``), in order.
Chunks = Callable[[int], list[bytes]]


@dataclass(frozen=True)
class Term:
    """A query term decoded: its id and idf, its sessions (ascending), their weights for it (idf × level weight)
    and their tags."""

    tid: int
    idf: float
    sids: npt.NDArray[np.uint32]
    weights: npt.NDArray[np.float64]
    tags: npt.NDArray[np.uint8]
    #: Its message maps' keys, joined (``block << JOINED_SHIFT | index << MAP_SHIFT | offset``).
    keys: BitMap
    #: Its sessions in blocks without a message map (few sessions there).
    unmapped: npt.NDArray[np.uint32]


@dataclass(frozen=True)
class Answer:
    """The ``limit`` best sessions by score (ties at the cut in no particular order), the sessions above the cut
    and those at it, and the open sessions scored from their postings."""

    best: list[int]
    above: frozenset[int]
    tied: frozenset[int]
    opened: list[int]


class Floor:
    """The floor's reads and work on one store's LMDB environment (its named databases opened read-only)."""

    def __init__(self, store: SessionStore) -> None:
        environment = store._environment  # the floor reads the pages themselves, below the storage protocol
        if not isinstance(environment, Environment):
            raise TypeError("the floor reads a store on LMDB")
        self.env: lmdb.Environment = environment._env
        self.meta, self.terms, self.summary, self.blocks, self.maps, self.docs, self.positions, self.rows = (
            environment.space(name).handle
            for name in ("search.meta", "search.terms", "search.summary", "search.blocks", "search.maps",
                         "search.docs", "catalog.sessions", "catalog.activity"))

    def read(self, txn: lmdb.Transaction[bytes], words: Sequence[bytes]) -> Reads:
        """(a): the message count, and each term's head and blocks, undecoded but for the ids that find them."""
        heads: list[tuple[int, bytes, list[bytes], list[bytes | None]]] = []
        for tid, head in self.heads(txn, words):
            blocks, maps = ([], []) if whole_head(head) else self.blocks_of(txn, tid, blocks_of_value(head))
            heads.append((tid, head, blocks, maps))
        return self.messages(txn), heads

    def messages(self, txn: lmdb.Transaction[bytes]) -> bytes:
        """The index's message count, as stored."""
        return _stored(txn.get(META_MESSAGES, db=self.meta))

    def heads(self, txn: lmdb.Transaction[bytes], words: Sequence[bytes]) -> list[tuple[int, bytes]]:
        """The id and head of each of ``words`` the index holds."""
        found = []
        for word in words:
            entry = txn.get(word, db=self.terms)
            if entry is not None:
                tid = U32.unpack_from(entry)[0]
                found.append((tid, _stored(txn.get(id_key(tid), db=self.summary))))
        return found

    def blocks_of(self, txn: lmdb.Transaction[bytes], tid: int,
                  numbers: Sequence[int]) -> tuple[list[bytes], list[bytes | None]]:
        """Term ``tid``'s summaries in blocks ``numbers`` and their message maps (``None``: a block without one)."""
        keys = [block_key(number, tid) for number in numbers]
        blocks = [_stored(txn.get(key, db=self.blocks)) for key in keys]
        return blocks, [txn.get(key, db=self.maps) if mapped_size(U32.unpack_from(raw)[0]) else None
                        for key, raw in zip(keys, blocks)]

    def chunks(self, txn: lmdb.Transaction[bytes], sid: int) -> list[bytes]:
        """Session ``sid``'s chunks of postings, in order."""
        cursor, prefix = txn.cursor(db=self.docs), id_key(sid)
        found: list[bytes] = []
        if cursor.set_range(chunk_key(sid, 0)):
            for key, value in cursor.iternext():
                if not bytes(key).startswith(prefix):
                    break
                found.append(bytes(value))
        return found

    def rows_of(self, txn: lmdb.Transaction[bytes], sids: Sequence[int]) -> list[bytes]:
        """The catalog rows of ``sids``, in that order: their positions in one ``getmulti``, their rows in another."""
        keys = [catalog._ID.pack(sid) for sid in sids]
        positions = dict(txn.cursor(db=self.positions).getmulti(keys))
        rows = dict(txn.cursor(db=self.rows).getmulti(positions.values()))
        return [bytes(rows[positions[key]]) for key in keys]


def _stored(value: bytes | None) -> bytes:
    """A value the index must hold."""
    if value is None:
        raise StoreCorrupted("the search index lacks a value its other values name")
    return value


def words_of(query: str) -> list[bytes]:
    """The query's distinct terms as index keys, in order."""
    return [term_key(word) for word in dict.fromkeys(tokenize(query))]


def decoded(reads: Reads) -> list[Term]:
    """(b), first half: each term's sessions, weights and tags as arrays."""
    count, heads = reads
    messages = count_of_value(META_MESSAGES, count)
    terms = []
    for tid, head, blocks, maps in heads:
        if blocks:
            df = U32.unpack_from(head)[0]
            sizes = [U32.unpack_from(raw)[0] for raw in blocks]
            keys = BitMap.union(BitMap(), *(BitMap.deserialize(raw).shift(number << JOINED_SHIFT)
                                            for number, raw in zip(blocks_of_value(head), maps) if raw is not None))
            at = SUMMARY_HEAD.size
            offsets = np.frombuffer(b"".join(raw[at:at + 2 * n] for raw, n in zip(blocks, sizes)), dtype="<u2")
            levels = np.frombuffer(b"".join(raw[at + 2 * n:at + 3 * n] for raw, n in zip(blocks, sizes)),
                                   dtype=np.uint8)
            tags = np.frombuffer(b"".join(raw[at + 3 * n:at + 4 * n] for raw, n in zip(blocks, sizes)),
                                 dtype=np.uint8)
            numbers = np.array(blocks_of_value(head), dtype=np.uint32)
            counts: npt.NDArray[np.uint32] | list[int] = sizes
        else:
            df, _, blocks_held, n, _ = WHOLE_HEAD.unpack_from(head)
            numbers = np.frombuffer(head, dtype="<u2", count=blocks_held, offset=WHOLE_HEAD.size)
            counts = np.frombuffer(head, dtype="<u2", count=blocks_held, offset=WHOLE_HEAD.size + 2 * blocks_held)
            at = WHOLE_HEAD.size + 4 * blocks_held
            offsets = np.frombuffer(head, dtype="<u2", count=n, offset=at)
            levels = np.frombuffer(head, dtype=np.uint8, count=n, offset=at + 2 * n)
            tags = np.frombuffer(head, dtype=np.uint8, count=n, offset=at + 3 * n)
            keys = BitMap.deserialize(head[at + 4 * n:])
        sids = np.repeat(numbers.astype(np.uint32) << np.uint32(formats.BLOCK_BITS), counts) | offsets
        unmapped = np.repeat(np.asarray(counts) < formats.MAP_FROM, counts)
        weight = idf(messages, df)
        terms.append(Term(tid, weight, sids, _LEVEL_WEIGHTS[levels] * weight, tags, keys,
                          sids[unmapped] if unmapped.any() else sids[:0]))
    return terms


def ranked(terms: Sequence[Term], chunks: Chunks, limit: int = LIMIT) -> Answer:
    """(b), second half: the candidates (each term's best sessions and the sessions terms share), each scored by
    its best message as far as the tags tell, the open ones that may reach the cut from their postings
    (``chunks``), and the ``limit`` best."""
    if not terms:
        return Answer([], frozenset(), frozenset(), [])
    chosen = []
    for term in terms:
        size = len(term.sids)
        if size > limit:
            least = np.partition(term.weights, size - limit)[size - limit]
            chosen.append(term.sids[term.weights >= least])
        else:
            chosen.append(term.sids)
    # The sessions where two terms share a message: their maps' keys ANDed; in blocks without a map, every session
    # that holds another term too (it stays open).
    unknown = []
    for first, term in enumerate(terms):
        for other in terms[first + 1:]:
            keys = np.array((term.keys & other.keys).to_array(), dtype=np.uint32)
            chosen.append(keys >> np.uint32(JOINED_SHIFT) << np.uint32(formats.BLOCK_BITS) | keys & _OFFSET_BITS)
        for other in terms:
            if other is not term and len(term.unmapped):
                at = np.minimum(np.searchsorted(other.sids, term.unmapped), len(other.sids) - 1)
                unknown.append(term.unmapped[other.sids[at] == term.unmapped])
    shared = np.unique(np.concatenate([_NONE, *chosen[len(terms):], *unknown]))
    candidates = np.unique(np.concatenate([*chosen[:len(terms)], shared]))
    weights = np.zeros((len(terms), len(candidates)))
    places = np.empty((len(terms), len(candidates)), dtype=np.int16)
    spread = np.zeros(len(candidates), dtype=bool)
    for number, term in enumerate(terms):
        at = np.minimum(np.searchsorted(term.sids, candidates), len(term.sids) - 1)
        held = term.sids[at] == candidates
        weights[number] = np.where(held, term.weights[at], 0.0)
        # A tag's low 7 bits name the message of the term's best level (LAST_TAG: that one or a later one), its high
        # bit that several messages hold the term. A best message unnamed counts alone: a place no other term has.
        index = term.tags[at] & LAST_TAG
        places[number] = np.where(held & (index < LAST_TAG), index, -1 - number)
        spread |= held & (term.tags[at] >= LAST_TAG)
    # A session's score as the tags tell: its best message, the terms whose tags name one message added up. It is
    # exact unless a term is in several messages and another term in the session too (open: at most the sum).
    scores = np.max([np.sum(weights * (places == place), axis=0) for place in places], axis=0)
    bounds = weights.sum(axis=0)
    order = np.argsort(-scores, kind="stable")[:limit]
    cut = scores[order[-1]] if len(order) == limit else 0.0
    # Scores only rise when open sessions are resolved, so those whose bound cannot reach this cut stay below.
    opened = np.flatnonzero(spread & (bounds > scores * (1 + _TOLERANCE)) & (bounds * (1 + _TOLERANCE) >= cut)
                            & np.isin(candidates, shared, assume_unique=True))
    for place in opened.tolist():
        scores[place] = exact_score(terms, chunks(int(candidates[place])))
    if len(opened):
        order = np.argsort(-scores, kind="stable")[:limit]
        cut = scores[order[-1]]
    tied = np.abs(scores - cut) <= cut * _TOLERANCE
    above = scores > cut * (1 + _TOLERANCE)
    return Answer(candidates[order].tolist(), frozenset(candidates[above].tolist()),
                  frozenset(candidates[tied].tolist()), candidates[opened].tolist())


def exact_score(terms: Sequence[Term], chunks: list[bytes]) -> float:
    """A session's score from its postings: its best message's sum of the terms' weights."""
    scores: dict[int, float] = {}
    for number, raw in enumerate(chunks):
        for term in terms:
            for index, level in chunk_occurrences(raw, term.tid):
                message = number * CHUNK_MESSAGES + index
                scores[message] = scores.get(message, 0.0) + term.idf * LEVEL_WEIGHTS[level]
    return max(scores.values(), default=0.0)


def agrees(answer: Answer, found: Sequence[str], keys_of: Callable[[Sequence[int]], list[str]]) -> bool:
    """Whether ``search()``'s sessions (``found``, by key) are the floor's at top scores: every session above the
    cut, and the rest among those that tie at it, as many as the floor's."""
    above = set(keys_of(sorted(answer.above)))
    return (len(found) == len(answer.best) and above <= set(found)
            and set(found) <= above | set(keys_of(sorted(answer.tied))))


def floor_answer(floor: Floor, txn: lmdb.Transaction[bytes], query: str, limit: int = LIMIT) -> Answer:
    """Rows (a) and (b) of ``query``, read in ``txn``."""
    return ranked(decoded(floor.read(txn, words_of(query))), functools.partial(floor.chunks, txn), limit)


def checked(store: SessionStore, query: str, limit: int = LIMIT) -> bool:
    """Whether the floor's answer to ``query`` is ``search()``'s at top scores (``agrees``)."""
    floor = Floor(store)
    with floor.env.begin(buffers=False) as txn:
        answer = floor_answer(floor, txn, query, limit)
        found = [row.key for row in store.search(SessionQuery(query, limit))]
        return agrees(answer, found, lambda sids: [row.key for row in catalog._metadata(floor.rows_of(txn, sids))])


def stats(samples: list[int]) -> tuple[float, float]:
    """Median and p99, µs."""
    ordered = sorted(samples)
    return statistics.median(ordered) / 1e3, ordered[min(len(ordered) - 1, round(0.99 * (len(ordered) - 1)))] / 1e3


@dataclass(frozen=True)
class Measured:
    """One kind of query: CPU ns a query by row, and by query the open sessions the floor read from postings and
    whether a term is stored in blocks; how many of the floor's answers differ from ``search()``'s."""

    samples: dict[str, list[int]]
    opened: list[int]
    in_blocks: list[bool]
    differ: int


def by_form(measured: Measured, row: str, blocked: bool) -> list[int]:
    """The row's samples of the queries with a term stored in blocks (``blocked``), or of the others."""
    return [sample for sample, held in zip(measured.samples[row], measured.in_blocks, strict=True) if held == blocked]


def measure(kept: Path, words: int, count: int) -> Measured:
    """Each row's CPU time a query of ``count`` queries of ``words`` words, on the stores kept in ``kept``."""
    settings = kept_settings(kept)
    queries = Corpus(settings).queries(MID_BAND, words, count)
    samples: dict[str, list[int]] = {row: [] for row in ROWS}
    clock = time.process_time_ns
    sqlite_store = SqliteSessions(kept / "sqlite", durable=False)
    with SessionStore(kept / "ours", readonly=True) as store:
        floor = Floor(store)
        # A first pass, untimed: each query's answer (for (a)'s reads) and its terms decoded (for the last row).
        with floor.env.begin(buffers=False) as txn:
            reads = [floor.read(txn, words_of(query)) for query in queries]
            prepared = [decoded(read) for read in reads]
            answers = [ranked(terms, functools.partial(floor.chunks, txn)) for terms in prepared]

        def floor_a(number: int) -> None:
            with floor.env.begin(buffers=False) as txn:
                floor.read(txn, words_of(queries[number]))
                for sid in answers[number].opened:
                    floor.chunks(txn, sid)
                floor.rows_of(txn, answers[number].best)

        def floor_b(number: int) -> None:
            with floor.env.begin(buffers=False) as txn:
                floor.rows_of(txn, floor_answer(floor, txn, queries[number]).best)

        def floor_c(number: int) -> None:
            with floor.env.begin(buffers=False) as txn:
                catalog._metadata(floor.rows_of(txn, floor_answer(floor, txn, queries[number]).best))

        def cached(number: int) -> None:
            with floor.env.begin(buffers=False) as txn:
                best = ranked(prepared[number], functools.partial(floor.chunks, txn)).best
                catalog._metadata(floor.rows_of(txn, best))

        found: dict[int, list[str]] = {}

        def ours(number: int) -> None:
            found[number] = [row.key for row in store.search(SessionQuery(queries[number]))]

        runs: dict[str, Callable[[int], object]] = {
            "FTS5 unranked": lambda number: sqlite_store.search(queries[number]),
            "ours: search()": ours, "floor (a): the reads": floor_a, "floor (b): + the answer": floor_b,
            "floor (c): + the results' metadata": floor_c, "floor, terms decoded in memory": cached}
        names = list(runs)
        for number in range(len(queries)):
            shift = number % len(names)
            for name in names[shift:] + names[:shift]:
                start = clock()
                runs[name](number)
                samples[name].append(clock() - start)
        for number in range(len(queries)):  # apart: its long queries would evict the others' data from the caches
            start = clock()
            sqlite_store.search_ranked(queries[number])
            samples["FTS5 bm25"].append(clock() - start)
        with floor.env.begin(buffers=False) as txn:
            differ = sum(not agrees(answer, found[number],
                                    lambda sids: [row.key for row in catalog._metadata(floor.rows_of(txn, sids))])
                         for number, answer in enumerate(answers))
    sqlite_store.close()
    print(f"{words} words done, load {os.getloadavg()[0]:.1f}", file=sys.stderr)
    return Measured(samples, [len(answer.opened) for answer in answers],
                    [any(blocks for _, _, blocks, _ in heads) for _, heads in reads], differ)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.search_floor", description=__doc__.split("\n")[0])
    parser.add_argument("kept", type=Path, help="bench_scale's --keep directory (a copy: it is opened read-only)")
    parser.add_argument("--queries", type=int, default=200, help="queries of each kind (default 200)")
    args = parser.parse_args(argv)
    if args.queries < 1:
        parser.error("--queries must be at least 1")
    started = time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime())
    load = os.getloadavg()[0]
    results = {words: measure(args.kept, words, args.queries) for words in (2, 3)}
    print(f"search floor, {started}, load average {load:.1f} → {os.getloadavg()[0]:.1f}; {args.queries} queries of "
          "each kind (ranks 100-2,000), each once; process CPU time a query, µs, median (p99)")
    print(f"Python {platform.python_version()}, SQLite {sqlite3.sqlite_version}, {os.cpu_count()} CPUs")
    print()
    print("| process CPU time a query | 2 words | / FTS5 unranked | 3 words | / FTS5 unranked |")
    print("|---|---|---|---|---|")
    for row in ROWS:
        cells = []
        for measured in results.values():
            median, p99 = stats(measured.samples[row])
            cells += [f"{median:,.0f} ({p99:,.0f})", f"{median / stats(measured.samples['FTS5 unranked'])[0]:.2f}x"]
        print(f"| {row} | " + " | ".join(cells) + " |")
    print()
    forms = ((False, "all whole"), (True, "one in blocks"))
    print("| by the terms' stored form, median µs (/ FTS5 unranked) | " + " | ".join(
        f"{words} words, {title} ({len(by_form(measured, ROWS[0], blocked))})"
        for words, measured in results.items() for blocked, title in forms) + " |")
    print("|---|---|---|---|---|")
    for row in ROWS[:2] + ROWS[4:6]:
        cells = []
        for measured in results.values():
            for blocked, _ in forms:
                chosen, fts5 = by_form(measured, row, blocked), by_form(measured, ROWS[0], blocked)
                cells.append(f"{statistics.median(chosen) / 1e3:,.0f} "
                             f"({statistics.median(chosen) / statistics.median(fts5):.2f}x)" if chosen else "-")
        print(f"| {row} | " + " | ".join(cells) + " |")
    print()
    failed = False
    for words, measured in results.items():
        print(f"{words} words: open sessions scored from their postings a query, median "
              f"{statistics.median(measured.opened):g}, mean {statistics.mean(measured.opened):.1f}; the floor's "
              f"answer differs from search()'s sessions at top scores for {measured.differ} of {args.queries} queries")
        failed |= measured.differ > 0
    return 1 if failed else 0


if __name__ == "__main__":
    raise SystemExit(main())
