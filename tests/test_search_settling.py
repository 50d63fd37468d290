"""A term new to the index whose blocks have no message map is held by a batch as its columns once it settles
(``IndexWriter._held``), and its blocks are summarized only when something reads or changes them. Whatever reads,
appends, removals and clears follow in the batch, its reads and the stored bytes are those of the general path
(every block raised through its summary as it settles): every key and value of every ``search.*`` database, with
blocks small enough that a term spans several, terms stored whole or in blocks, and blocks gaining maps. The
messages where a term has a level of its own are read from their notes' bytes in C (``maps.posted_levels``), as
each note's bits say."""

from __future__ import annotations

from pathlib import Path

import pytest
from hypothesis import example, given, settings
from hypothesis import strategies as st

from eventstore import SessionStore
from eventstore.storage import MemoryStorage, WriteTransaction
from projections.search import formats, writer
from projections.search.formats.maps import posted_levels
from projections.search.grouping import POSTED_BLOCK

from conftest import FakeClock
from test_search import MAP_BANDS
from test_search_bulk_writer import Stored, small_forms, stored_index

WORDS = ["amber", "basil", "cedar", "dill", "elm"]
texts = st.lists(st.sampled_from(WORDS), min_size=1, max_size=4).map(" ".join)
steps = st.lists(st.one_of(
    st.tuples(st.just("append"), st.integers(1, 12), st.lists(texts, min_size=1, max_size=3)),
    st.tuples(st.sampled_from(["remove_last", "clear"]), st.integers(1, 12), st.just([])),
    st.tuples(st.just("settle"), st.just(0), st.just([])),
    st.tuples(st.just("read"), st.integers(0, len(WORDS) - 1), st.just([])),
), min_size=1, max_size=25)
Step = tuple[str, int, list[str]]
Read = tuple[int, list[int], list[bytes | None]]


def read(batch: writer.IndexWriter, word: str) -> Read | None:
    """The word's message count, blocks and their summaries, read through the batch."""
    tid = batch.tid(word)
    if tid is None:
        return None
    blocks = list(batch.blocks_of(tid))
    return batch.df(tid), blocks, [batch.block_raw(tid, block) for block in blocks]


def built(script: list[Step]) -> tuple[Stored, list[Read | None]]:
    """The index of ``script`` run in one batch of a fresh index and flushed, and what its reads found."""
    reads: list[Read | None] = []
    with SessionStore.on_storage(MemoryStorage(Path("held")), clock=FakeClock()) as store:

        def body(txn: WriteTransaction) -> None:
            batch = store._search_index.prepare(txn, fresh=True)
            for time, (command, sid, batch_texts) in enumerate(script, 1):
                if command == "append":
                    batch.append(sid, batch_texts, time)
                elif command == "settle":
                    batch.settle()
                elif command == "read":
                    reads.append(read(batch, WORDS[sid]))
                elif batch.message_count(sid):
                    getattr(batch, command)(sid)
            batch.flush(txn)

        store._environment.write(body)
        return stored_index(store), reads


#: Terms in several blocks, some sessions holding them in several messages: held after the first settle, then one
#: read, and all of them raised by more appends, a removal and a clear.
SPREAD: list[Step] = [
    *(("append", sid, ["amber basil", "cedar amber" * (sid % 2)]) for sid in range(1, 10)),
    ("settle", 0, []), ("read", 1, []),
    ("append", 11, ["amber dill elm"]), ("append", 2, ["basil basil"]), ("remove_last", 3, []), ("clear", 4, []),
]


@settings(max_examples=60, deadline=None)
@given(steps, st.sampled_from([formats.BLOCK_BITS, 1, 2]), st.sampled_from(MAP_BANDS),
       st.sampled_from([0, 2, formats.WHOLE_UP_TO]))
@example(SPREAD, 1, (formats.MAP_FROM, formats.MAP_UP_TO), formats.WHOLE_UP_TO)
@example(SPREAD[:11], 2, (formats.MAP_FROM, formats.MAP_UP_TO), formats.WHOLE_UP_TO)
@example(SPREAD, 1, (formats.MAP_FROM, formats.MAP_UP_TO), 2)
@example(SPREAD, 1, (3, 4), formats.WHOLE_UP_TO)
def test_a_held_term_reads_and_stores_what_the_general_path_does(script: list[Step], block_bits: int,
                                                                  map_band: tuple[int, int], whole: int) -> None:
    with pytest.MonkeyPatch.context() as patch, small_forms(block_bits, map_band, 1, writer._POSTED_FROM):
        patch.setattr(formats, "WHOLE_UP_TO", whole)
        held = built(script)
        patch.setattr(writer, "mapped_size", lambda _sessions: True)  # no term is held: every block raised
        assert held == built(script)


def test_a_term_is_held_until_its_blocks_are_read() -> None:
    """The case the property test draws at random, spelled out: a new term in blocks without a map is held after a
    settle, and a read of one of its blocks summarizes every block of it (then it is held no longer)."""
    with small_forms(1, (1 << 20, 1 << 20), 1, writer._POSTED_FROM), \
            SessionStore.on_storage(MemoryStorage(Path("held")), clock=FakeClock()) as store:

        def body(txn: WriteTransaction) -> None:
            batch = store._search_index.prepare(txn, fresh=True)
            for sid in (1, 2, 5):
                batch.append(sid, ["amber basil"], sid)
            batch.settle()
            amber = batch.tid("amber")
            assert amber is not None and amber in batch._held
            assert list(batch.blocks_of(amber)) == [0, 1, 2]
            assert batch.block_raw(amber, 1) is not None
            assert amber not in batch._held and batch.tid("basil") in batch._held
            batch.flush(txn)

        store._environment.write(body)


@given(st.lists(st.tuples(st.integers(0, (1 << 20) - 1), st.integers(0, 255), st.integers(0, (1 << 32) - 1))))
def test_posted_levels_are_each_notes_key_and_level(notes: list[tuple[int, int, int]]) -> None:
    values = [block << POSTED_BLOCK | level << 32 | key for block, level, key in notes]
    assert list(posted_levels(values)) == [(key, level) for _, level, key in notes]
