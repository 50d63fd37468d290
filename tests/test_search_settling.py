"""A term new to the index whose blocks have no message map is held by a batch as its columns once it settles
(``IndexWriter._held``), and its blocks are summarized only when something reads or changes them. Whatever reads,
appends, removals and clears follow in the batch, its reads and the stored bytes are those of the general path
(every block raised through its summary as it settles): every key and value of every ``search.*`` database, with
blocks small enough that a term spans several, terms stored whole or in blocks, and blocks gaining maps. The
messages where a term has a level of its own are read from their notes' bytes in C (``maps.posted_levels``), as
each note's bits say.

A term stored whole that a later batch only extends with sessions past its stored ones is spliced onto its stored
head (``IndexWriter._spliced``): the same comparison, by sha256 of every ``search.*`` key and value after each
catch-up, over catch-ups of new sessions with appends to earlier ones, removals, replacements, clears and queries
through pending events between. Such a term's head damaged (its blocks out of order, or cut short) stops a later
batch with ``StoreCorrupted`` on either path."""

from __future__ import annotations

import hashlib
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest
from hypothesis import example, given, settings
from hypothesis import strategies as st

from eventstore import ChatMessage, SessionQuery, SessionStore, StoreCorrupted, _deferred
from eventstore.storage import MemoryStorage, WriteTransaction
from projections.search import formats, writer
from projections.search.formats.keys import id_key, whole_head
from projections.search.formats.maps import posted_levels
from projections.search.grouping import POSTED_BLOCK

from conftest import FakeClock
from test_search import MAP_BANDS, run_script_step
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


#: Rounds of steps, each caught up: new sessions (past every stored one), commands on earlier sessions
#: (``run_script_step``; its number taken modulo the sessions so far), and queries of two words (the word's and the one
#: before) through the pending events.
new_session = st.tuples(st.just("new"), st.just(0), st.lists(texts, min_size=1, max_size=3))
later_steps = st.lists(st.lists(st.one_of(
    new_session, new_session,
    st.tuples(st.sampled_from(["append", "remove_last", "update_last", "clear"]), st.integers(0, 40),
              st.lists(texts, min_size=1, max_size=2)),
    st.tuples(st.just("search"), st.integers(0, len(WORDS) - 1), st.just([])),
), max_size=10), min_size=2, max_size=5).map(lambda rounds: [step for steps in rounds
                                                              for step in [*steps, ("catch_up", 0, [])]])


def digests(store: SessionStore) -> dict[str, str]:
    """The sha256 of every ``search.*`` database's keys and values (``stored_index``)."""
    return {name: hashlib.sha256(b"".join(len(key).to_bytes(4, "little") + key + len(value).to_bytes(4, "little")
                                          + value for key, value in items)).hexdigest()
            for name, items in stored_index(store).items()}


#: How a batch may splice terms stored whole: a run of terms together (``_splice_together``) and the others one by one
#: (``_splice``), as it does; one by one alone; or not at all (the general path).
SPLICING = ("together", "alone", "general")


@contextmanager
def splicing(mode: str) -> Iterator[list[str]]:
    """The writer splicing as ``mode`` says (``SPLICING``) while it is open; what it yields gains, for each term a
    settle spliced, how: ``"together"`` for each one ``_splice_together`` spliced, ``"alone"`` for each call of
    ``_splice`` that spliced, ``"not"`` for each that did not."""
    together, alone, found = writer.IndexWriter._splice_together, writer.IndexWriter._splice, list[str]()

    def counted_together(batch: writer.IndexWriter, run: list[tuple[int, object]], earlier: object) -> object:
        if mode != "together":
            return run
        left = together(batch, run, earlier)  # type: ignore[arg-type]
        found.extend(["together"] * (len(run) - len(left)))
        return left

    def counted_alone(batch: writer.IndexWriter, *args: object) -> bool:
        spliced = mode != "general" and alone(batch, *args)  # type: ignore[arg-type]
        found.append("alone" if spliced else "not")
        return spliced

    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(writer.IndexWriter, "_splice_together", counted_together)
        patch.setattr(writer.IndexWriter, "_splice", counted_alone)
        yield found


#: What a run of catch-ups gives: the digests after each catch-up, and each query's sessions and messages found.
Outcome = list[dict[str, str] | list[tuple[str, int]]]


def caught_up(script: list[Step]) -> Outcome:
    """The digests of the index after each catch-up of ``script`` (one more at its end), and what its queries
    found (of two words: the blocks' message maps are read)."""
    found: Outcome = []
    clock = FakeClock()
    with SessionStore.on_storage(MemoryStorage(Path("later")), clock=clock) as store:
        sessions = 0
        for command, number, step_texts in script:
            clock.advance(seconds=1)
            if command == "new":
                store.append_many(f"s{sessions:03}", [ChatMessage.user(text) for text in step_texts])
                sessions += 1
            elif command == "catch_up":
                store.catch_up()
                found.append(digests(store))
            elif command == "search":
                keyword = f"{WORDS[number]} {WORDS[number - 1]}"
                found.append([(hit.key, 0) for hit in store.search(SessionQuery(keyword, 3))])
                found.append([(hit.session_key, hit.index) for hit in store.search_messages(keyword, 3)])
            elif sessions:
                run_script_step(store, f"s{number % sessions:03}", step_texts, command)
        store.catch_up()
        assert store.verify().ok
        found.append(digests(store))
    return found


#: Sessions spread over blocks with maps, caught up, then later sessions appended over two catch-ups, with a removal,
#: a replacement and a query through pending events between.
LATER: list[Step] = [
    *(("new", 0, ["amber basil", "cedar amber" * (number % 2), "dill"]) for number in range(8)),
    ("catch_up", 0, []),
    *(("new", 0, ["amber elm", "basil"]) for _ in range(5)),
    ("catch_up", 0, []),
    *(("new", 0, ["amber cedar", "amber"]) for _ in range(3)),
    ("remove_last", 2, []), ("new", 0, ["dill amber"]), ("update_last", 9, ["elm elm"]), ("search", 0, []),
    ("new", 0, ["basil cedar"]), ("clear", 14, []), ("new", 0, ["amber"]),
]


def spliced_and_general(script: list[Step], block_bits: int, map_band: tuple[int, int], batch: int, settle: int,
                        whole: int) -> dict[str, tuple[Outcome, list[str]]]:
    """``caught_up(script)`` in each ``SPLICING`` mode, and how the terms that settled were spliced."""
    found = {}
    with pytest.MonkeyPatch.context() as patch, small_forms(block_bits, map_band, batch, writer._POSTED_FROM):
        patch.setattr(formats, "WHOLE_UP_TO", whole)
        patch.setattr(writer, "_SETTLE_EVERY", settle)
        for mode in SPLICING:
            with splicing(mode) as attempts:
                found[mode] = caught_up(script), attempts
    return found


@settings(max_examples=60, deadline=None)
@given(later_steps, st.sampled_from([formats.BLOCK_BITS, 1, 2]), st.sampled_from(MAP_BANDS),
       st.sampled_from([_deferred.DEFERRED_BATCH, 3]), st.sampled_from([writer._SETTLE_EVERY, 6]),
       st.sampled_from([formats.WHOLE_UP_TO, 6]))
@example(LATER, 1, (2, 1 << 20), _deferred.DEFERRED_BATCH, writer._SETTLE_EVERY, formats.WHOLE_UP_TO)
@example(LATER, 2, (3, 4), 3, 6, formats.WHOLE_UP_TO)
@example(LATER, 1, (2, 1 << 20), 3, 6, 6)
def test_a_term_stored_whole_extended_by_later_batches_stores_what_the_general_path_does(
        script: list[Step], block_bits: int, map_band: tuple[int, int], batch: int, settle: int,
        whole: int) -> None:
    found = spliced_and_general(script, block_bits, map_band, batch, settle, whole)
    assert found["together"][0] == found["alone"][0] == found["general"][0]
    assert "together" not in found["alone"][1] and {"together", "alone"}.isdisjoint(found["general"][1])


@pytest.mark.parametrize("map_band", [(2, 1 << 20), (1 << 20, 1 << 20)])
def test_later_sessions_are_spliced_onto_terms_stored_whole(map_band: tuple[int, int]) -> None:
    """The case the property test draws at random, spelled out: later catch-ups of new sessions splice terms stored
    whole (several settles of one batch; blocks with maps among them, or none), and fall back to the general path
    for a session appended to before, a removal and a replacement; the stored bytes are the general path's whether
    terms are spliced together or one by one."""
    found = spliced_and_general(LATER, 1, map_band, 3, 6, formats.WHOLE_UP_TO)
    assert found["together"][0] == found["alone"][0] == found["general"][0]
    assert {"together", "not"} <= set(found["together"][1])
    assert {"alone", "not"} <= set(found["alone"][1])


@contextmanager
def splicing_store(name: str, splice: bool, sessions_a_block: int) -> Iterator[SessionStore]:
    """A store in memory whose index has ``sessions_a_block`` sessions a block and a map in every block, its
    writer splicing later sessions onto the heads of terms stored whole, or (``splice`` false) taking the general
    path."""
    with pytest.MonkeyPatch.context() as patch, \
            small_forms(sessions_a_block, (1, 1 << 20), 1, writer._POSTED_FROM), \
            SessionStore.on_storage(MemoryStorage(Path(name)), clock=FakeClock()) as store:
        if not splice:
            patch.setattr(writer.IndexWriter, "_splice_together", lambda _batch, run, _earlier: run)
            patch.setattr(writer.IndexWriter, "_splice", lambda *_args: False)
        yield store


def append_amber(batch: writer.IndexWriter, sessions: range) -> None:
    """Sessions of two messages, ``amber basil`` then ``cedar amber`` in the odd ones (an empty message in the
    even)."""
    for sid in sessions:
        batch.append(sid, ["amber basil", "cedar amber" * (sid % 2)], sid)


def later_reads(splice: bool, peek: int | None) -> tuple[list[bool], list[object], Stored]:
    """A batch of later sessions on a stored index of terms stored whole in blocks that all have a map: whether
    ``amber`` was spliced as it settled, then every word's maps read first, then its count, blocks and summaries,
    and the stored index once it is written. ``peek``: a block of ``amber`` read alone before the appends (its
    summary kept by the batch), and, when that block is not its last, a removal there after they settle (instead
    of the reads)."""
    spliced: list[bool] = []
    found: list[object] = []
    with splicing_store("later", splice, sessions_a_block=1) as store:

        def appended(sessions: range, fresh: bool, txn: WriteTransaction) -> None:
            batch = store._search_index.prepare(txn, fresh=fresh)
            amber = batch.tid("amber")
            if not fresh and peek is not None:
                assert amber is not None
                found.append(batch.block_raw(amber, peek))
            append_amber(batch, sessions)
            batch.settle()
            amber = batch.tid("amber")
            assert amber is not None
            spliced.append(amber in batch._spliced)
            if not fresh and peek is not None and peek < 4:
                batch.remove_last(2 * peek + 1)  # a session of that block holding ``amber`` in its last message
            else:  # (reads take a spliced term to the general path: none after the removal, so that its write does)
                for word in WORDS:
                    tid = batch.tid(word)
                    if tid is not None:
                        found.append([batch.term_map(tid, block) for block in batch.blocks_of(tid)])
                    found.append(read(batch, word))
            batch.flush(txn)

        store._environment.write(lambda txn: appended(range(1, 9), True, txn))  # blocks 0 to 4 (2 sessions each)
        store._environment.write(lambda txn: appended(range(9, 14), False, txn))
        return spliced, found, stored_index(store)


@pytest.mark.parametrize(("peek", "splices"), [(None, True), (4, False), (1, True)])
def test_a_spliced_term_reads_and_stores_what_the_general_path_does(peek: int | None, splices: bool) -> None:
    """A term spliced onto its head is read through the batch as the general path leaves it: its maps (read before
    anything else of it), count, blocks and summaries. A term whose last block the batch read before is not
    spliced (the batch keeps that block's summary); one whose earlier block it read is, and a removal there then
    takes it to the general path before that block changes."""
    spliced, general = later_reads(True, peek), later_reads(False, peek)
    assert spliced[0] == [False, splices] and general[0] == [False, False]
    assert spliced[1:] == general[1:]


def blocks_read_between_splices(splice: bool) -> tuple[list[bool], list[object], Stored]:
    """A later batch that settles twice, each time with sessions past ``amber``'s stored ones (a block it already
    has, then new blocks), its count and blocks read through the batch after each settle (a spliced term keeps no
    list of its blocks: the read makes one, and the second splice extends it), then written: whether ``amber`` was
    spliced after each settle, what the reads found, and the stored index."""
    spliced: list[bool] = []
    found: list[object] = []
    with splicing_store("between", splice, sessions_a_block=2) as store:

        def appended(rounds: list[range], fresh: bool, txn: WriteTransaction) -> None:
            batch = store._search_index.prepare(txn, fresh=fresh)
            for sessions in rounds:
                append_amber(batch, sessions)
                batch.settle()
                amber = batch.tid("amber")
                assert amber is not None
                spliced.append(amber in batch._spliced)
                found.append((batch.df(amber), list(batch.blocks_of(amber))))
            batch.flush(txn)

        store._environment.write(lambda txn: appended([range(1, 7)], True, txn))  # blocks 0 and 1 (4 sessions each)
        store._environment.write(lambda txn: appended([range(7, 9), range(9, 19)], False, txn))
        return spliced, found, stored_index(store)


def test_a_spliced_terms_blocks_read_between_its_splices_are_the_general_paths() -> None:
    """A term spliced twice in one batch, its blocks read after each splice, reads and stores what the general
    path does (its block list, made from its head when read, gains the second splice's blocks)."""
    spliced, general = blocks_read_between_splices(True), blocks_read_between_splices(False)
    assert spliced[0] == [False, True, True] and general[0] == [False, False, False]
    assert spliced[1] == general[1] == [(9, [0, 1]), (12, [0, 1, 2]), (27, [0, 1, 2, 3, 4])]
    assert spliced[2] == general[2]


def _blocks_swapped(head: bytes) -> bytes:
    """A head stored whole with its first two block numbers (u16 each, after its 20-byte head) swapped."""
    return head[:20] + head[22:24] + head[20:22] + head[24:]


@pytest.mark.parametrize(("damage", "error"), [(_blocks_swapped, "out of order"),
                                               (lambda head: head[:-1], "wrong size")])
@pytest.mark.parametrize("splice", [True, False])
def test_a_later_batch_on_a_damaged_head_stored_whole_raises_store_corrupted(damage: Callable[[bytes], bytes],
                                                                            error: str, splice: bool) -> None:
    """A later batch of sessions past those of a term stored whole whose head is damaged (its blocks out of order,
    or cut short) raises ``StoreCorrupted`` as it settles, whether it would splice the term (``whole_end`` checks the
    head as ``Whole`` does) or take the general path, and writes nothing."""
    with splicing_store("damaged", splice, sessions_a_block=1) as store:

        def appended(sessions: range, fresh: bool, txn: WriteTransaction) -> None:
            batch = store._search_index.prepare(txn, fresh=fresh)
            append_amber(batch, sessions)
            batch.settle()
            batch.flush(txn)

        store._environment.write(lambda txn: appended(range(1, 7), True, txn))  # blocks 0 to 3 (2 sessions each)
        spaces = store._search_index._spaces
        with store._environment.read() as txn:
            amber = store._search_index.reader(txn).tid("amber")
            assert amber is not None
            stored = txn.get(spaces.summary, id_key(amber))
            assert stored is not None and whole_head(bytes(stored))
            damaged = damage(bytes(stored))
        store._environment.write(lambda txn: txn.put(spaces.summary, id_key(amber), damaged))
        with pytest.raises(StoreCorrupted, match=error):
            store._environment.write(lambda txn: appended(range(7, 9), False, txn))
        with store._environment.read() as txn:
            assert txn.get(spaces.summary, id_key(amber)) == damaged
