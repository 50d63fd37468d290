"""A stored form measured before it is built: a term stored in blocks keeping its blocks but the last in one value.

Issue 16's 3-word mid-frequency queries at 100,000 sessions miss 1.5x FTS5's unranked query, most of all those with
a term stored in blocks (past ``formats.WHOLE_UP_TO``): some 25 blocks and 25 message maps a term, a value each. The
candidate keeps such a term's blocks below the index's last block in one "cold" value, laid out as a head stored
whole (``formats.wholes``: its blocks' columns and their maps' keys joined), and its last block (where new sessions
land) apart, as today. This writes the cold values of a kept store's terms into a scratch LMDB beside it (the store
is opened read-only) and measures, on bench_scale's mid-frequency queries, process CPU time a query:

* the floor rows of ``search_floor`` with today's reads and with the cold values', beside FTS5's unranked query, each
  row in whole passes over the queries (the rows' order rotating from pass to pass; a query's time is its median
  over the passes). bench_scale's loop meets a query's data cold in the CPU's caches; ``search_floor`` runs its rows
  query by query, so that each finds the pages and arrays of the rows before it warm;
* ``search()`` in bench_scale's loop (ours and FTS5 interleaved query by query, after other queries, untimed), in
  alternating child processes: today's reader, and one that reads a term with a cold value as a term stored whole
  composed of the cold value and its blocks past it (``composed``). Both must return the same sessions in the same
  order.

``python -m benchmarks.search_cold KEPT_DIR`` where ``KEPT_DIR`` is bench_scale's ``--keep`` directory (use a copy).
"""

from __future__ import annotations

import argparse
import functools
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager, nullcontext
from pathlib import Path
from typing import Any

import lmdb
import numpy as np
from pyroaring import BitMap

import projections.catalog as catalog
import projections.search.formats as formats
from eventstore import SessionQuery, SessionStore
from eventstore.storage.lmdb import Environment
from projections.search.formats.arrays import U32
from projections.search.formats.keys import (
    META_MESSAGES,
    block_key,
    block_of,
    blocks_of_value,
    count_of_value,
    df_of_value,
    id_key,
    id_of_key,
    whole_head,
)
from projections.search.formats.maps import JOINED_SHIFT, map_of_value
from projections.search.formats.summaries import SUMMARY_HEAD, Block
from projections.search.formats.wholes import Whole, whole_of_blocks, whole_value
from projections.search.reader import IndexReader
from projections.search.scoring import idf

from .baselines import SqliteSessions
from .bench_scale import MID_BAND, Corpus, kept_settings
from .search_floor import _LEVEL_WEIGHTS, Floor, Reads, Term, _stored, decoded, ranked, words_of

#: The floor rows, in the order printed.
ROWS = (
    "FTS5 unranked",
    "floor, terms decoded in memory",
    "reads, today",
    "reads, cold values",
    "floor (c), today",
    "floor (c), cold values",
)
#: What the scratch LMDB may grow to (the cold values of a 100,000-session store take about 75 MB).
_SCRATCH_SIZE = 1 << 33


def kept_queries(kept: Path, words: int, count: int) -> list[str]:
    """bench_scale's ``count`` mid-frequency queries of ``words`` words for the stores kept in ``kept``."""
    settings = kept_settings(kept)
    return Corpus(settings).queries(MID_BAND, words, count)


def cold_values(store: SessionStore) -> Iterator[tuple[int, bytes]]:
    """``(term id, cold value)`` of each term stored in blocks with a block below the index's last block: those
    blocks' summaries and maps in the layout of a head stored whole."""
    floor = Floor(store)
    sessions = lmdb_handle(store, "search.sessions")
    with floor.env.begin(buffers=False) as txn:
        cursor = txn.cursor(db=sessions)
        if not cursor.last():
            return
        last = block_of(id_of_key(cursor.key(), "search.sessions"))
        for key, head in txn.cursor(db=floor.summary):
            if whole_head(head):
                continue
            tid = id_of_key(key, "search.summary")
            numbers = [number for number in blocks_of_value(head) if number < last]
            if numbers:
                held = []
                for number in numbers:
                    found = txn.get(block_key(number, tid), db=floor.maps)
                    held.append(
                        (
                            number,
                            Block(_stored(txn.get(block_key(number, tid), db=floor.blocks))),
                            None if found is None else map_of_value(found),
                        )
                    )
                yield tid, whole_of_blocks(df_of_value(head), held)


def lmdb_handle(store: SessionStore, name: str) -> lmdb._Database:
    """The named database ``name`` of a store on LMDB, read below the storage protocol."""
    environment = store._environment
    if not isinstance(environment, Environment):
        raise TypeError("the cold values are read from a store on LMDB")
    return environment.space(name).handle


def write_scratch(path: Path, values: Iterator[tuple[int, bytes]]) -> tuple[int, int]:
    """Store ``values`` in a new LMDB at ``path``: how many, and their bytes."""
    env = lmdb.open(os.fsencode(path), map_size=_SCRATCH_SIZE, subdir=True)
    count = size = 0
    with env.begin(write=True) as txn:
        for tid, value in values:
            txn.put(id_key(tid), value)
            count += 1
            size += len(value)
    env.close()
    return count, size


class ColdFloor(Floor):
    """The floor's reads, and the cold values' in their scratch LMDB."""

    def __init__(self, store: SessionStore, scratch: lmdb.Environment) -> None:
        super().__init__(store)
        self.scratch = scratch

    def read_cold(self, txn: lmdb.Transaction[bytes], words: Sequence[bytes]) -> Reads:
        """As ``read``, but a term with a cold value reads it and its blocks past it alone: its entry lists the cold
        value first (``None``: it has none), then those blocks, its maps ``None`` first."""
        found: list[tuple[int, bytes, list[bytes | None], list[bytes | None]]] = []
        with self.scratch.begin(buffers=False) as cold_txn:
            for tid, head in self.heads(txn, words):
                if whole_head(head):
                    found.append((tid, head, [], []))
                    continue
                cold = cold_txn.get(id_key(tid))
                numbers = blocks_of_value(head)[0 if cold is None else U32.unpack_from(cold, 8)[0] :]
                blocks, maps = self.blocks_of(txn, tid, numbers)
                found.append((tid, head, [cold, *blocks], [None, *maps]))
        return self.messages(txn), found  # type: ignore[return-value]  # a cold value may be None


def decoded_cold(reads: Reads) -> list[Term]:
    """``search_floor.decoded`` of ``read_cold``'s reads: a cold value's columns, then those of the blocks past it."""
    count, heads = reads
    terms = []
    for tid, head, blocks, maps in heads:
        if not blocks:
            terms += decoded((count, [(tid, head, blocks, maps)]))
            continue
        cold: bytes | None = blocks[0]
        numbers = list(blocks_of_value(head))
        whole = None if cold is None else Whole(cold)
        held = 0 if whole is None else len(whole.block_numbers())
        columns = [] if whole is None else [whole.span(0, held)]
        counts = [] if whole is None else list(whole.counts(0, held))
        keys = [] if whole is None else [whole.keys()]
        at = SUMMARY_HEAD.size
        for number, raw, found in zip(numbers[held:], blocks[1:], maps[1:]):
            n = U32.unpack_from(raw)[0]
            columns.append((raw[at : at + 2 * n], raw[at + 2 * n : at + 3 * n], raw[at + 3 * n : at + 4 * n]))
            counts.append(n)
            if found is not None:
                keys.append(BitMap.deserialize(found).shift(number << JOINED_SHIFT))
        offsets, levels, tags = (
            np.frombuffer(b"".join(column[part] for column in columns), dtype=dtype)
            for part, dtype in ((0, "<u2"), (1, np.uint8), (2, np.uint8))
        )
        sids = np.repeat(np.array(numbers, dtype=np.uint32) << np.uint32(formats.BLOCK_BITS), counts) | offsets
        unmapped = np.repeat(np.array(counts) < formats.MAP_FROM, counts)
        weight = idf(count_of_value(META_MESSAGES, count), df_of_value(head))
        terms.append(
            Term(
                tid,
                weight,
                sids,
                _LEVEL_WEIGHTS[levels] * weight,
                tags,
                BitMap.union(BitMap(), *keys),
                sids[unmapped] if unmapped.any() else sids[:0],
            )
        )
    return terms


def measure_floor(
    kept: Path, scratch: lmdb.Environment, words: int, count: int, rounds: int
) -> tuple[dict[str, list[int]], list[bool]]:
    """Each floor row's CPU ns a query (its median over ``rounds`` passes), and which queries have a term stored in
    blocks. Fails if the cold values' answer differs from today's."""
    queries = kept_queries(kept, words, count)
    clock = time.process_time_ns
    sqlite_store = SqliteSessions(kept / "sqlite", durable=False)
    with SessionStore(kept / "ours", readonly=True) as store:
        floor = ColdFloor(store, scratch)
        with floor.env.begin(buffers=False) as txn:
            reads = [floor.read(txn, words_of(query)) for query in queries]
            prepared = [decoded(read) for read in reads]
            chunks = functools.partial(floor.chunks, txn)
            for query, terms in zip(queries, prepared):
                today = ranked(terms, chunks)
                cold = ranked(decoded_cold(floor.read_cold(txn, words_of(query))), chunks)
                if (today.above, today.tied, len(today.best)) != (cold.above, cold.tied, len(cold.best)):
                    raise AssertionError(f"the cold values answer {query!r} otherwise")

        def answered(
            read: Callable[[lmdb.Transaction[bytes], Sequence[bytes]], Reads],
            decode: Callable[[Reads], list[Term]],
            number: int,
        ) -> None:
            with floor.env.begin(buffers=False) as txn:
                answer = ranked(decode(read(txn, words_of(queries[number]))), functools.partial(floor.chunks, txn))
                catalog._metadata(floor.rows_of(txn, answer.best))

        def in_memory(number: int) -> None:
            with floor.env.begin(buffers=False) as txn:
                answer = ranked(prepared[number], functools.partial(floor.chunks, txn))
                catalog._metadata(floor.rows_of(txn, answer.best))

        def reading(read: Callable[[lmdb.Transaction[bytes], Sequence[bytes]], Reads], number: int) -> None:
            with floor.env.begin(buffers=False) as txn:
                read(txn, words_of(queries[number]))

        runs: dict[str, Callable[[int], object]] = {
            "FTS5 unranked": lambda number: sqlite_store.search(queries[number]),
            "floor, terms decoded in memory": in_memory,
            "reads, today": functools.partial(reading, floor.read),
            "reads, cold values": functools.partial(reading, floor.read_cold),
            "floor (c), today": functools.partial(answered, floor.read, decoded),
            "floor (c), cold values": functools.partial(answered, floor.read_cold, decoded_cold),
        }
        times: dict[str, list[list[int]]] = {row: [[] for _ in queries] for row in ROWS}
        for round_ in range(rounds):
            shift = round_ % len(ROWS)
            for row in ROWS[shift:] + ROWS[:shift]:
                for number in range(len(queries)):
                    start = clock()
                    runs[row](number)
                    times[row][number].append(clock() - start)
    sqlite_store.close()
    return (
        {row: [int(statistics.median(each)) for each in times[row]] for row in ROWS},
        [any(blocks for _, _, blocks, _ in heads) for _, heads in reads],
    )


def composed(reader: IndexReader, tid: int, head: bytes, cold: bytes) -> Whole:
    """Term ``tid`` as a term stored whole, from its cold value and its blocks past it read through ``reader``."""
    stored = Whole(cold)
    held = len(stored.block_numbers())
    numbers = blocks_of_value(head)
    columns, counts, keys = [stored.span(0, held)], list(stored.counts(0, held)), [stored.keys()]
    for number in numbers[held:]:
        block = Block(_stored(reader.txn.get(reader.spaces.blocks, block_key(number, tid))))
        columns.append((block.sids_raw(), block.best_levels(), block.tags()))
        counts.append(block.sessions)
        found = reader.txn.get(reader.spaces.maps, block_key(number, tid))
        if found is not None:
            keys.append(map_of_value(found).shift(number << JOINED_SHIFT))
    whole = Whole(whole_value(df_of_value(head), numbers, counts, columns, BitMap()))
    whole._keys = BitMap.union(*keys)  # joined here rather than serialized and read back
    return whole


@contextmanager
def cold_reader(scratch: lmdb.Environment) -> Iterator[None]:
    """While inside, index readers read a term with a cold value in ``scratch`` as ``composed`` gives it."""
    plain = IndexReader._whole

    def whole(self: IndexReader, tid: int) -> Whole | None:
        head = self.head(tid)
        if head is None or whole_head(head) or tid in self._wholes:
            return plain(self, tid)
        with scratch.begin(buffers=False) as txn:
            cold = txn.get(id_key(tid))
        if cold is None:
            return None
        found = self._wholes[tid] = composed(self, tid, head, cold)
        return found

    IndexReader._whole = whole  # type: ignore[method-assign]
    try:
        yield
    finally:
        IndexReader._whole = plain  # type: ignore[method-assign]


def search_loop(kept: Path, scratch_dir: Path | None, words: int, count: int) -> dict[str, Any]:
    """bench_scale's loop of ``search()`` and FTS5's unranked query over the ``words``-word queries, after other
    queries, untimed (the 2-word ones before the 3-word ones, as bench_scale runs them; 4-word ones before the
    2-word ones, which must not meet their own queries' cached terms); with the cold values in ``scratch_dir`` if
    given. CPU ns a query, and the keys ``search()`` found."""
    queries = kept_queries(kept, words, count)
    warming = kept_queries(kept, 4 if words == 2 else 2, count)
    clock = time.process_time_ns
    sqlite_store = SqliteSessions(kept / "sqlite", durable=False)
    times: dict[str, list[int]] = {"ours": [], "FTS5": []}
    found: list[list[str]] = []
    scratch = None if scratch_dir is None else lmdb.open(os.fsencode(scratch_dir), readonly=True, lock=False)
    with (
        SessionStore(kept / "ours", readonly=True) as store,
        cold_reader(scratch) if scratch is not None else nullcontext(),
    ):
        runners: dict[str, Callable[[str], list[Any]]] = {
            "ours": lambda query: [row.key for row in store.search(SessionQuery(query))],
            "FTS5": sqlite_store.search,
        }
        for query in warming:
            for run in runners.values():
                run(query)
        order = list(runners)
        for number, query in enumerate(queries):
            for runner in order[number % 2 :] + order[: number % 2]:
                start = clock()
                result = runners[runner](query)
                times[runner].append(clock() - start)
                if runner == "ours":
                    found.append(result)
    sqlite_store.close()
    if scratch is not None:
        scratch.close()
    return {"times": times, "found": found}


def cell(mine: Sequence[int], peer: Sequence[int]) -> str:
    """The median of ``mine`` in µs and its ratio to ``peer``'s; ``-`` when there is none."""
    if not mine:
        return "-"
    return f"{statistics.median(mine) / 1e3:,.0f} ({statistics.median(mine) / statistics.median(peer):.2f}x)"


def by_form(values: Sequence[int], in_blocks: Sequence[bool], blocked: bool) -> list[int]:
    return [value for value, held in zip(values, in_blocks, strict=True) if held == blocked]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.search_cold", description=__doc__.split("\n")[0])
    parser.add_argument("kept", type=Path, help="bench_scale's --keep directory (a copy: it is opened read-only)")
    parser.add_argument("--queries", type=int, default=200, help="queries of each kind (default 200)")
    parser.add_argument("--rounds", type=int, default=5, help="passes of each floor row (default 5)")
    parser.add_argument("--pairs", type=int, default=3, help="pairs of search() processes (default 3)")
    parser.add_argument("--child", choices=("today", "cold"), help=argparse.SUPPRESS)
    parser.add_argument("--scratch", type=Path, help=argparse.SUPPRESS)
    parser.add_argument("--words", type=int, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.child:
        measured = search_loop(args.kept, args.scratch if args.child == "cold" else None, args.words, args.queries)
        print(json.dumps(measured))
        return 0
    if min(args.queries, args.rounds, args.pairs) < 1:
        parser.error("--queries, --rounds and --pairs must be at least 1")
    started = time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime())
    load = os.getloadavg()[0]
    with tempfile.TemporaryDirectory(prefix="search-cold-") as scratch_dir:
        with SessionStore(args.kept / "ours", readonly=True) as store:
            values, size = write_scratch(Path(scratch_dir), cold_values(store))
        print(
            f"search with cold values, {started}, load average {load:.1f}; {values:,} terms stored in blocks have a "
            f"cold value, {size / 1e6:,.1f} MB ({size / max(values, 1) / 1e3:,.0f} KB each)"
        )
        print()
        scratch = lmdb.open(os.fsencode(scratch_dir), readonly=True, lock=False)
        print(
            f"Floor rows, each in {args.rounds} passes over {args.queries} queries; process CPU time a query, µs, "
            "median (/ FTS5 unranked)"
        )
        print()
        print("| row | 2 words | 2 words, a term in blocks | 3 words | 3 words, a term in blocks |")
        print("|---|---|---|---|---|")
        floors = {words: measure_floor(args.kept, scratch, words, args.queries, args.rounds) for words in (2, 3)}
        scratch.close()
        for row in ROWS:
            cells = []
            for times, in_blocks in floors.values():
                fts5 = times["FTS5 unranked"]
                cells += [
                    cell(times[row], fts5),
                    cell(by_form(times[row], in_blocks, True), by_form(fts5, in_blocks, True)),
                ]
            print(f"| {row} | " + " | ".join(cells) + " |")
        print()
        print(
            f"search() in bench_scale's loop, {args.pairs} pairs of processes, today's reader and the cold values' "
            "alternating; process CPU time a query, µs, median (/ FTS5 unranked in the same process)"
        )
        print()
        print("| process | words | every query | a term in blocks | all whole |")
        print("|---|---|---|---|---|")
        differ = 0
        for words in (2, 3):
            in_blocks = floors[words][1]
            for _ in range(args.pairs):
                found = {}
                for mode in ("today", "cold"):
                    completed = subprocess.run(
                        [
                            sys.executable,
                            "-m",
                            "benchmarks.search_cold",
                            str(args.kept),
                            "--child",
                            mode,
                            "--scratch",
                            scratch_dir,
                            "--words",
                            str(words),
                            "--queries",
                            str(args.queries),
                        ],
                        check=True,
                        capture_output=True,
                        text=True,
                    )
                    measured = json.loads(completed.stdout)
                    found[mode] = measured["found"]
                    ours, fts5 = measured["times"]["ours"], measured["times"]["FTS5"]
                    cells = [
                        cell(ours, fts5),
                        *(
                            cell(by_form(ours, in_blocks, blocked), by_form(fts5, in_blocks, blocked))
                            for blocked in (True, False)
                        ),
                    ]
                    print(f"| {mode} (load {os.getloadavg()[0]:.1f}) | {words} | " + " | ".join(cells) + " |")
                differ += sum(today != cold for today, cold in zip(found["today"], found["cold"], strict=True))
        print()
        print(f"search() with the cold values answers otherwise than today's for {differ} queries")
    return 1 if differ else 0


if __name__ == "__main__":
    raise SystemExit(main())
