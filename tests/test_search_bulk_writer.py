"""The search index's writer keeps a batch's postings as flat arrays and groups them by term and session when it
settles (``grouping.group``, in numpy), and notes a session's messages for the message maps only for the terms the
batch holds in several of them (``writer._POSTED_FROM``); a term's one message in a session is read from its
entry's tag when the block has a map. The grouping is compared with a plain model of it, and the stored bytes with
those of the writer that noted every message: every key and value of every ``search.*`` database, through a rebuild
and through catch-ups in batches of several sizes, with term ids grouped a range at a time too. A removal of a
message whose postings are still in the batch's flat arrays drops them (``IndexWriter._unpost``); its stored bytes
are compared with those of grouping them and lowering each of its terms."""

from __future__ import annotations

import gc
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import numpy as np
import pytest
from hypothesis import example, given, settings
from hypothesis import strategies as st

from eventstore import ChatMessage, SessionQuery, SessionStore, _deferred
from projections.search import formats, grouping, writer
from projections.search.formats import arrays
from projections.search.formats.keys import META_GENERATION
from projections.search.formats.maps import MAP_SHIFT
from projections.search.formats.summaries import LAST_TAG
from projections.search.grouping import Postings, group

from conftest import FakeClock
from test_search import MAP_BANDS, VOCABULARY, run_script_step

#: A few distinct words, so that runs of appends repeat terms across messages and blocks gain maps.
texts = st.lists(st.sampled_from(VOCABULARY[:8]), min_size=1, max_size=6).map(" ".join)
steps = st.lists(st.tuples(st.sampled_from(["a", "b", "c", "d", "e"]), st.lists(texts, min_size=1, max_size=6),
                           st.sampled_from(["append"] * 4 + ["remove_last", "update_last", "clear", "redact",
                                                             "delete"])),
                 min_size=1, max_size=20)

Stored = dict[str, list[tuple[bytes, bytes]]]


def stored_index(store: SessionStore) -> Stored:
    """Every key and value of every ``search.*`` database but the generation (a rebuild draws a new one)."""
    spaces = store._search_index._spaces
    found: Stored = {}
    with store._environment.read() as txn:
        for space in spaces.all():
            found[space.name] = [(bytes(key), bytes(value)) for key, value in txn.scan(space)
                                 if not (space is spaces.meta and bytes(key) == META_GENERATION)]
    return found


@contextmanager
def small_forms(block_bits: int, map_band: tuple[int, int], batch: int, posted_from: int,
                sorted_bits: int = grouping.SORTED_BITS) -> Iterator[None]:
    """Blocks, map bands and catch-up batches small enough that a short script crosses them; with ``sorted_bits``,
    term ids grouped a range at a time."""
    saved = (formats.BLOCK_BITS, formats.MAP_FROM, formats.MAP_UP_TO, _deferred.DEFERRED_BATCH, writer._POSTED_FROM,
             grouping.SORTED_BITS)
    formats.BLOCK_BITS, (formats.MAP_FROM, formats.MAP_UP_TO) = block_bits, map_band
    _deferred.DEFERRED_BATCH, writer._POSTED_FROM, grouping.SORTED_BITS = batch, posted_from, sorted_bits
    try:
        yield
    finally:
        (formats.BLOCK_BITS, formats.MAP_FROM, formats.MAP_UP_TO, _deferred.DEFERRED_BATCH, writer._POSTED_FROM,
         grouping.SORTED_BITS) = saved


def builds(script: list[tuple[str, list[str], str]], caught_up_every: int | None, block_bits: int,
           map_band: tuple[int, int], batch: int, posted_from: int,
           sorted_bits: int = grouping.SORTED_BITS) -> tuple[Stored, Stored]:
    """The index of ``script`` (caught up every ``caught_up_every`` steps, and at the end), then rebuilt."""
    clock = FakeClock()
    with tempfile.TemporaryDirectory() as directory, \
            small_forms(block_bits, map_band, batch, posted_from, sorted_bits), \
            SessionStore(Path(directory), clock=clock, durable=False) as store:
        for number, (key, batch_texts, command) in enumerate(script, 1):
            clock.advance(seconds=1)
            run_script_step(store, key, batch_texts, command)
            if caught_up_every and number % caught_up_every == 0:
                store.catch_up()
        store.catch_up()
        assert store.verify().ok
        caught_up = stored_index(store)
        store.rebuild_projections(["search"])
        assert store.verify().ok
        return caught_up, stored_index(store)


class TestNotedFromTags:
    @settings(max_examples=40)
    @given(steps, st.sampled_from([None, 1, 3]), st.sampled_from([formats.BLOCK_BITS, 1]),
           st.sampled_from(MAP_BANDS), st.sampled_from([_deferred.DEFERRED_BATCH, 1, 5]))
    @example([("a", ["apple fig", "fig", "banana"], "append"), ("b", ["apple", "apple fig"], "append"),
              ("a", ["fig fig apple"], "append")], None, 1, (1, 1 << 20), 1 << 20)
    @example([("b", ["apple fig", "fig"], "append"), ("a", ["apple", "fig apple"], "append"),
              ("b", ["apple"], "append"), ("a", ["x"], "remove_last"), ("c", ["fig"], "append")], None, 1, (1, 2), 3)
    def test_the_stored_bytes_are_those_of_noting_every_message(self, script: list[tuple[str, list[str], str]],
                                                               caught_up_every: int | None, block_bits: int,
                                                               map_band: tuple[int, int], batch: int) -> None:
        """Noting only the terms a run holds in several messages stores exactly what noting every message did
        (``_POSTED_FROM = 1``), caught up (in one batch or several, sessions out of order and in several runs of a
        batch) and rebuilt, with blocks gaining, keeping and losing their maps."""
        every = builds(script, caught_up_every, block_bits, map_band, batch, posted_from=1)
        several = builds(script, caught_up_every, block_bits, map_band, batch, posted_from=writer._POSTED_FROM)
        assert every == several
        # Term ids grouped a range of a few ids at a time (the sessions' ranks and keys take the other bits).
        ranged = builds(script, caught_up_every, block_bits, map_band, batch, posted_from=writer._POSTED_FROM,
                        sorted_bits=grouping.KEY_BITS + 8)
        assert ranged == several

    @pytest.mark.usefixtures("terms_in_blocks")
    def test_a_run_of_one_message_a_term_gets_its_keys_from_the_tags(self) -> None:
        """Sessions whose terms are each in one message of their run, in a block with a map, still have every
        message in the term's map (none of them was noted a message at a time)."""
        script = [(f"s{number}", [f"apple {VOCABULARY[1 + number % 5]}", "fig"], "append") for number in range(12)]
        every = builds(script, None, formats.BLOCK_BITS, (1, 1 << 20), _deferred.DEFERRED_BATCH, posted_from=1)
        several = builds(script, None, formats.BLOCK_BITS, (1, 1 << 20), _deferred.DEFERRED_BATCH,
                         posted_from=writer._POSTED_FROM)
        assert every == several
        assert len(several[0]["search.maps"]) >= 2  # apple's and fig's maps at least


#: A message of a batch: its session, the level of the terms it holds once, its position, its terms (distinct) and
#: those with a level of their own there.
Message = tuple[int, int, int, list[int], list[tuple[int, int]]]
messages = st.lists(
    st.tuples(st.integers(0, 40), st.integers(1, 255), st.integers(0, LAST_TAG),
              st.sets(st.integers(1, 60), min_size=1, max_size=6).map(sorted),
              st.lists(st.tuples(st.integers(0, 5), st.integers(1, 255)), max_size=2)),
    min_size=1, max_size=40)


def postings_of(batch: list[Message]) -> Postings:
    postings = Postings()
    for sid, once, position, tids, own in batch:
        postings.tids.extend(tids)
        postings.codes.append(sid << 32 | once << 8 | position ^ LAST_TAG)
        postings.sizes.append(len(tids))
        for at, level in own:
            postings.own_tids.append(tids[at % len(tids)])
            postings.own_codes.append(sid << 32 | level << 8 | position ^ LAST_TAG)
    return postings


def modelled(batch: list[Message], block_bits: int, posted_from: int) -> list[tuple[int, list[int], int, list[int]]]:
    """What ``group`` derives, from a plain model: each term's entries, message count and posted messages."""
    best: dict[tuple[int, int], int] = {}  # (term, session) → greatest key: the level, then the first message
    held: dict[tuple[int, int], list[int]] = {}  # (term, session) → the positions of the messages holding it
    for sid, once, position, tids, own in batch:
        for tid in tids:
            best[tid, sid] = max(best.get((tid, sid), 0), once << 8 | position ^ LAST_TAG)
            held.setdefault((tid, sid), []).append(position)
        for at, level in own:
            tid = tids[at % len(tids)]
            best[tid, sid] = max(best[tid, sid], level << 8 | position ^ LAST_TAG)
    found: dict[int, tuple[list[int], int, list[int]]] = {}
    for tid, sid in sorted(best):
        notes, added, posted = found.setdefault(tid, ([], 0, []))
        positions = held[tid, sid]
        notes.append(sid << 32 | min(len(positions), 0xFFFF) << 16 | best[tid, sid] ^ LAST_TAG)
        if len(positions) >= posted_from:
            posted += [sid >> block_bits << 40 | position << MAP_SHIFT | sid & (1 << block_bits) - 1
                       for position in positions]
        found[tid] = notes, added + len(positions), posted
    return [(tid, notes, added, sorted(posted)) for tid, (notes, added, posted) in sorted(found.items())]


@contextmanager
def grouped_in(numpy: bool) -> Iterator[None]:
    """``group`` sorts every batch in numpy, or none (a few postings are grouped in plain Python)."""
    saved = grouping.NUMPY_FROM
    grouping.NUMPY_FROM = 0 if numpy else 1 << 62
    try:
        yield
    finally:
        grouping.NUMPY_FROM = saved


class TestGrouping:
    @given(messages, st.sampled_from([1, 3, 12]), st.sampled_from([1, 2, 3]),
           st.sampled_from([grouping.SORTED_BITS, grouping.KEY_BITS + 8]), st.booleans())
    @example([(7, 3, 0, [5], []), (7, 9, 1, [5], [(0, 12)]), (2, 9, 4, [5, 6], [])], 1, 2, grouping.SORTED_BITS, True)
    @example([(7, 3, 0, [5], []), (7, 9, 1, [5], [(0, 12)]), (2, 9, 4, [5, 6], [])], 1, 2, grouping.SORTED_BITS,
             False)
    def test_group_derives_what_a_plain_model_does(self, batch: list[Message], block_bits: int, posted_from: int,
                                                   sorted_bits: int, numpy: bool) -> None:
        """Each term's entries (best level, first message at it, how many messages), message count and posted
        messages are the model's, sessions in any order and in several messages, term ids in one range or in
        ranges of a few ids (``sorted_bits``: the sessions' ranks and keys take the other bits), sorted in numpy
        or, as a few postings are, in plain Python."""
        saved = grouping.SORTED_BITS
        grouping.SORTED_BITS = sorted_bits
        try:
            with grouped_in(numpy):
                grouped = list(group(postings_of(batch), block_bits, posted_from))
            found = [(tid, notes.tolist(), added, posted.tolist()) for tid, notes, _, added, posted in grouped]
        finally:
            grouping.SORTED_BITS = saved
        assert [(tid, notes, added, sorted(posted)) for tid, notes, added, posted in found] == \
            modelled(batch, block_bits, posted_from)
        for _, notes, columns, _, posted in grouped:  # in block order: the writer finds a block's messages by bisection
            assert columns == grouping.columns_of(arrays.packed_u64s(notes), block_bits)
            assert [message >> 40 for message in posted] == sorted(message >> 40 for message in posted)

    @given(st.lists(st.integers(0, 2**32 - 1)), st.sampled_from([np.uint32, np.uint64]))
    @example([7, 3, 7, 0, 3], np.uint32)
    def test_distinct_values_come_once_ascending(self, values: list[int], dtype: type[np.unsignedinteger]) -> None:
        """``arrays.distinct`` (``numpy.unique`` without its import of ``numpy.ma``): each value once, ascending, of
        the array's own type."""
        found = arrays.distinct(np.array(values, dtype=dtype))
        assert found.dtype == dtype
        assert found.tolist() == sorted(set(values))

    @pytest.mark.parametrize("numpy", [True, False])
    def test_a_term_in_more_messages_of_a_session_than_a_note_counts(self, numpy: bool) -> None:
        """A session whose batch holds a term in more messages than a note's two bytes count gives the term its
        whole message count, and a note that says several messages (it is capped, not wrapped)."""
        many = (1 << 16) + 5
        batch: list[Message] = [(3, 2, min(position, LAST_TAG), [9], []) for position in range(many)]
        with grouped_in(numpy):
            [(tid, notes, _, added, _)] = list(group(postings_of(batch), formats.BLOCK_BITS, 2))
        assert (tid, added) == (9, many)
        assert [note >> 16 for note in notes] == [3 << 16 | 0xFFFF]


@contextmanager
def unposting(enabled: bool, within: int = writer._UNPOST_WITHIN) -> Iterator[None]:
    """A removal drops its message's postings from the batch's flat arrays when they are among the last
    ``within`` messages' (``IndexWriter._unpost``); not ``enabled``, it always groups them and lowers its terms."""
    saved_unpost, saved_within = writer.IndexWriter._unpost, writer._UNPOST_WITHIN
    if not enabled:
        writer.IndexWriter._unpost = lambda self, sid, tids, levels: False  # type: ignore[method-assign]
    writer._UNPOST_WITHIN = within
    try:
        yield
    finally:
        writer.IndexWriter._unpost, writer._UNPOST_WITHIN = saved_unpost, saved_within  # type: ignore[method-assign]


#: Messages with terms of their own (which the batch gives ids a removal may leave unheld), and messages where a
#: word repeats (a level of its own for it there).
streamed_texts = st.one_of(
    texts,
    st.integers(0, 40).map(lambda number: f"rare{number} apple"),
    st.tuples(st.sampled_from(VOCABULARY[:8]), st.integers(2, 9), st.sampled_from(VOCABULARY[:8]))
    .map(lambda drawn: " ".join([drawn[0]] * drawn[1] + [drawn[2]] * 3)),
)
streamed = st.lists(st.tuples(st.sampled_from(["a", "b", "c"]),
                              st.one_of(st.lists(streamed_texts, min_size=1, max_size=4),
                                        streamed_texts.map(lambda text: [text] * (LAST_TAG + 2))),
                              st.sampled_from(["append"] * 2 + ["update_last"] * 4 + ["remove_last"] * 2
                                              + ["clear", "redact", "delete"])),
                    min_size=1, max_size=25)


class TestRemovalsOfUngroupedMessages:
    @settings(max_examples=40)
    @given(streamed, st.sampled_from([None, 1, 3]), st.sampled_from([formats.BLOCK_BITS, 1]),
           st.sampled_from(MAP_BANDS), st.sampled_from([_deferred.DEFERRED_BATCH, 1, 5]),
           st.sampled_from([writer._UNPOST_WITHIN, 1]))
    # the batch's last message replaced several times in a row, a word repeating in it
    @example([("a", ["apple fig"], "append"), ("a", ["fig fig fig banana"], "update_last"),
              ("a", ["fig banana banana banana"], "update_last"), ("a", ["rare1 apple"], "update_last")],
             None, formats.BLOCK_BITS, (1, 1 << 20), _deferred.DEFERRED_BATCH, writer._UNPOST_WITHIN)
    # a word repeating in a replaced message and in no later version of it, then in another session's message
    @example([("a", ["apple fig"], "append"), ("a", ["fig fig fig banana"], "update_last"),
              ("a", ["banana"], "update_last"), ("b", ["fig"], "append")],
             None, formats.BLOCK_BITS, (1, 1 << 20), _deferred.DEFERRED_BATCH, writer._UNPOST_WITHIN)
    # a removal then an append, and a replacement of a message that is not the batch's last (another session's
    # follows it), in the window and past it
    @example([("a", ["apple", "rare2 apple"], "append"), ("a", ["x"], "remove_last"), ("a", ["fig"], "append"),
              ("b", ["cherry cherry fig"], "append"), ("a", ["rare3 apple"], "update_last"),
              ("b", ["date"], "update_last")],
             None, 1, (1, 2), _deferred.DEFERRED_BATCH, 1)
    @example([("a", ["apple", "rare2 apple"], "append"), ("a", ["x"], "remove_last"), ("a", ["fig"], "append"),
              ("b", ["cherry cherry fig"], "append"), ("a", ["rare3 apple"], "update_last"),
              ("b", ["date"], "update_last")],
             None, 1, (1, 2), _deferred.DEFERRED_BATCH, writer._UNPOST_WITHIN)
    def test_the_stored_bytes_are_those_of_lowering_each_term(self, script: list[tuple[str, list[str], str]],
                                                              caught_up_every: int | None, block_bits: int,
                                                              map_band: tuple[int, int], batch: int,
                                                              within: int) -> None:
        """A removal (``remove_last``, ``update_last``) of a message whose postings are still in the batch's flat
        arrays drops them, and stores exactly what grouping them and lowering each of its terms stored: caught up
        in one batch or several, sessions interleaved (the message followed by other sessions' in the arrays, or
        further back than the window), and rebuilt."""
        with unposting(enabled=False):
            lowered = builds(script, caught_up_every, block_bits, map_band, batch, writer._POSTED_FROM)
        with unposting(enabled=True, within=within):
            dropped = builds(script, caught_up_every, block_bits, map_band, batch, writer._POSTED_FROM)
        assert dropped == lowered

    @pytest.mark.parametrize("interleaved", [False, True])
    def test_a_streamed_reply_is_grouped_once(self, interleaved: bool, monkeypatch: pytest.MonkeyPatch) -> None:
        """A rebuild of sessions whose replies are replaced as they stream groups the batch's postings once, when
        it settles, whether each session's events come together or several sessions stream at once."""
        calls: list[int] = []

        def counted(postings: Postings, block_bits: int, posted_from: int) -> Iterator[grouping.Term]:
            calls.append(len(postings))
            return group(postings, block_bits, posted_from)

        with tempfile.TemporaryDirectory() as directory, \
                SessionStore(Path(directory), clock=FakeClock(), durable=False) as store:
            keys = [f"s{number}" for number in range(3)]
            # step 0 appends a session's question and the reply's first words, each later step replaces the reply
            order = ([(key, step) for step in range(6) for key in keys] if interleaved
                     else [(key, step) for key in keys for step in range(6)])
            for key, step in order:
                if step:
                    store.update_last(key, ChatMessage.assistant("cherry date " * step))
                else:
                    store.append_many(key, [ChatMessage.user("apple fig"), ChatMessage.assistant("cherry")])
            monkeypatch.setattr(writer, "group", counted)
            store.rebuild_projections(["search"])
            assert calls == [12]  # the user's message and the last reply of each session: 2 terms each
            assert sorted(found.key for found in store.search(SessionQuery("date", 5))) == keys
            assert store.verify().ok


class TestReadsMidBatch:
    def test_a_read_of_one_term_leaves_the_others_to_settle_once(self, store: SessionStore,
                                                                monkeypatch: pytest.MonkeyPatch) -> None:
        """A term read through a batch (as a removal reads its message's terms) settles alone: another term's block
        is raised once for all the batch's entries, so it stores what a batch without the read stores (its level
        groups keep the order one raise gives them)."""
        monkeypatch.setattr(formats, "GROUPED_FROM", 1)  # blocks keep their sessions in level groups
        long_text = "apple " + " ".join(VOCABULARY[2:10])
        for number in range(40):
            store.append(f"s{number:02}", ChatMessage.user(long_text if number != 39 else "kiwi " + long_text))
        store.catch_up()

        def apple_block(read_between: bool) -> bytes | None:
            with store._environment.read() as txn:
                batch = store._search_index.prepare(txn)
                sids = [sid for sid, _ in batch.stored_sessions()]
                apple, kiwi = batch.tid("apple"), batch.tid("kiwi")
                assert apple is not None and kiwi is not None
                batch.append(sids[30], ["apple"], 1)  # a higher level: the session moves to another level group
                if read_between:
                    batch.df(kiwi)
                batch.append(sids[5], ["apple"], 1)
                batch.settle()
                return batch.block_raw(apple, 0)

        assert apple_block(read_between=True) == apple_block(read_between=False)


class TestWhatTheCollectorWalks:
    def test_a_batch_keeps_its_sessions_and_terms_in_forms_the_collector_does_not_walk(
            self, store: SessionStore) -> None:
        """A long catch-up's full collections walk every tracked object, so what a batch keeps for each session and
        term it changes is numbers, bytes and tuples of them (which the collector stops tracking), not sets, lists
        or dicts of lists: the chunks a session changed are the bits of an int, its unencoded postings tuples."""
        with store._environment.read() as txn:
            batch = store._search_index.prepare(txn, fresh=True)
            for sid in range(1, 41):  # 70 messages: two chunks each
                batch.append(sid, [f"apple w{sid} x{number % 9} y{number}" for number in range(70)], sid)
            batch.remove_last(40)  # the last message, taken back out of the postings not yet encoded
            states = batch._sessions
            gc.collect()
            gc.collect()  # a tuple of tuples is untracked once its own tuples are
            assert all(state.appended for state in states.values())
            assert not any(gc.is_tracked(state.appended) or gc.is_tracked(state.chunks) for state in states.values())
            assert {tuple(state.changed_chunks()) for state in states.values()} == {(0, 1)}
            assert [len(state.appended[1]) for sid, state in sorted(states.items()) if sid in (39, 40)] == [6, 5]
            batch.settle()
            gc.collect()
            gc.collect()  # a new term's columns and counts are tuples in a tuple
            kept = [batch._dirty, batch._held, batch._blocks, batch._dfs, batch._tids, batch._key_tids]
            assert all(kept) and not any(map(gc.is_tracked, kept))
            assert batch.written_bytes() > 0
