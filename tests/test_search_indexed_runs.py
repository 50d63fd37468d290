"""The search index's writer collects runs of appends and indexes many at once (``IndexWriter._append_pending``):
their terms cut together (``tokenizer.term_keys_of``), then counted, given levels and packed over whole arrays
(``grouping.indexed``). That is compared with its plain path, a message at a time as the writer went before
(which a few messages take), and the stored bytes with those of indexing each run as it comes, with the batch
settling inside a collection of runs too."""

from __future__ import annotations

from array import array
from collections.abc import Iterator
from contextlib import contextmanager
from unittest import mock

import numpy as np
from hypothesis import example, given, settings
from hypothesis import strategies as st

from eventstore import ChatMessage, SessionStore, _deferred
from projections.search import formats, grouping, writer
from projections.search.formats.summaries import LAST_TAG
from projections.search.grouping import BETWEEN, Postings, group, indexed
from projections.search.scoring import impact
from projections.search.tokenizer import BETWEEN_KEYS, term_keys, term_keys_of

from test_search import MAP_BANDS
from test_search_bulk_writer import builds, steps

#: Texts of ASCII words, punctuation, NULs, other scripts and nothing at all.
any_texts = st.lists(st.text(alphabet=st.sampled_from(["a", "B", "7", " ", ".", "\x00", "é", "ß", "日", "_", "-"]),
                             max_size=12), max_size=6)


class TestTermKeysOf:
    @given(any_texts)
    @example(["a\x00b", "c"])
    @example(["", "", ""])
    @example([])
    def test_each_texts_keys_in_turn_with_a_separator_between(self, texts: list[str]) -> None:
        """The texts' ``term_keys`` one after the other, ``BETWEEN_KEYS`` between two texts' (whether they are cut
        joined or one at a time: a text with a NUL or a letter past ASCII), and no key is ``BETWEEN_KEYS``."""
        expected: list[bytes] = []
        for number, text in enumerate(texts):
            expected += ([BETWEEN_KEYS] if number else []) + term_keys(text)
        assert term_keys_of(texts) == expected
        assert BETWEEN_KEYS not in [key for text in texts for key in term_keys(text)]


#: Runs of messages: a session, its messages before the run, and each message's term ids in order (repeats and
#: empty messages among them; ids past 65,536 too, which a chunk stores apart).
runs = st.lists(
    st.tuples(st.integers(1, 40), st.integers(0, LAST_TAG + 3),
              st.lists(st.lists(st.one_of(st.integers(1, 6), st.integers(65_530, 65_540)), max_size=12),
                       max_size=5)),
    min_size=1, max_size=8)
Run = tuple[int, int, list[list[int]]]


class TestIndexed:
    @given(runs, st.sampled_from([formats.BLOCK_BITS, 1, 3]))
    # a word twice in a message of three (a level of its own for half its terms), messages at the last tag's
    # position and past it (no map key)
    @example([(5, 0, [[1, 1, 2], [3]]), (9, LAST_TAG + 1, [[2, 3, 2, 3, 4]]), (11, LAST_TAG - 1, [[2, 2, 5], [6, 6]])],
             formats.BLOCK_BITS)
    @example([(5, 0, [[], [65_536, 2, 65_536]]), (5, 2, [[]])], 1)
    def test_numpy_derives_what_a_message_at_a_time_does(self, batch: list[Run], block_bits: int) -> None:
        """The flat arrays' postings and codes, each message's packed postings, the runs' ends, the notes of
        postings at another level than their chunk's, and the messages by block and level are those the plain path
        derives a message at a time (the writer's before: a dict of counts, ``chunk_posted``), a session in several
        runs of the batch too."""
        ids: list[int] = []
        for _, _, texts in batch:
            for message in texts:
                ids += [*message, BETWEEN]
        found = []
        # In numpy, or a message at a time in plain Python (as a few messages are); the ids as the writer gives
        # them (an int64 array, read in place), as an ``array`` or as a list.
        for numpy, given_ids in ((True, np.array(ids[:-1], dtype=np.int64)),
                                 (False, np.array(ids[:-1], dtype=np.int64)), (True, ids[:-1]),
                                 (True, array("q", ids[:-1])), (False, array("q", ids[:-1]))):
            with mock.patch.object(grouping, "INDEXED_NUMPY_FROM", 1 if numpy else 1 << 62):
                found.append(indexed(given_ids, [sid for sid, _, _ in batch],
                                     [first for _, first, _ in batch], [len(texts) for _, _, texts in batch],
                                     block_bits))
        many, *others = found
        for other in others:
            for name in Postings.__slots__:
                assert getattr(many.postings, name) == getattr(other.postings, name), name
            assert (many.messages, many.ends, many.repeated, many.levels) == \
                (other.messages, other.ends, other.repeated, other.levels)

    def test_a_message_at_a_time_by_hand(self) -> None:
        """One message of session 5 (block 0 of blocks of 4,096): "fig" twice and "apple" once in three words."""
        fig, apple = 7, 3
        found = indexed([fig, apple, fig], [5], [0], [1], 12)
        once, twice = impact(1, 3), impact(2, 3)
        assert once != twice
        # half of its terms at a level of their own: the chunk stores the most common level (a tie: the greatest)
        common = max(once, twice)
        other = once if common == twice else twice
        assert found.messages == [(bytes([apple, 0, fig, 0]), (), common, (1 if common == once else 0,),
                                   bytes([other]))]
        assert list(found.postings.tids) == [apple, fig] and list(found.postings.sizes) == [2]
        assert list(found.postings.codes) == [5 << 32 | once << 8 | LAST_TAG]
        assert list(found.postings.own_tids) == [fig]
        assert list(found.postings.own_codes) == [5 << 32 | twice << 8 | LAST_TAG]
        assert found.levels == [(0, common, [5])]
        assert found.ends == [2]


@contextmanager
def collected(every: int, settle_every: int) -> Iterator[None]:
    """Runs of appends indexed once ``every`` messages are collected, the batch settled every ``settle_every``
    postings."""
    with mock.patch.multiple(writer, _APPEND_EVERY=every, _SETTLE_EVERY=settle_every):
        yield


@contextmanager
def grouped_sizes() -> Iterator[list[int]]:
    """How many postings each grouping of the batch takes (where the batch settled, or a read grouped them)."""
    sizes: list[int] = []

    def counted(postings: Postings, block_bits: int, posted_from: int) -> Iterator[grouping.Term]:
        sizes.append(len(postings))
        return group(postings, block_bits, posted_from)

    with mock.patch.object(writer, "group", counted):
        yield sizes


class TestCollectedRuns:
    @settings(max_examples=40)
    @given(steps, st.sampled_from([None, 1, 3]), st.sampled_from([formats.BLOCK_BITS, 1]),
           st.sampled_from(MAP_BANDS), st.sampled_from([_deferred.DEFERRED_BATCH, 5]),
           st.sampled_from([writer._SETTLE_EVERY, 3, 8]))
    @example([("a", ["apple fig", "fig fig"], "append"), ("b", ["fig"], "append"), ("a", ["date"], "append"),
              ("c", ["apple apple apple"], "append"), ("b", ["x"], "remove_last")],
             None, formats.BLOCK_BITS, (1, 1 << 20), _deferred.DEFERRED_BATCH, 3)
    def test_the_stored_bytes_are_those_of_indexing_each_run_alone(self, script: list[tuple[str, list[str], str]],
                                                                  caught_up_every: int | None, block_bits: int,
                                                                  map_band: tuple[int, int], batch: int,
                                                                  settle_every: int) -> None:
        """Runs of appends indexed together (all of a batch's, or a few messages' at a time) store exactly what
        indexing each run as it comes stores: caught up in one batch or several and rebuilt, with removals, clears
        and redactions between them, and with the batch settling after a run inside a collection (a few
        postings): each grouping takes the postings it took then."""
        found = {}
        for every in (1, 1 << 20, 3):
            with collected(every, settle_every), grouped_sizes() as sizes:
                found[every] = builds(script, caught_up_every, block_bits, map_band, batch, writer._POSTED_FROM), sizes
        assert found[1 << 20] == found[1]
        assert found[3] == found[1]

    def test_reads_through_a_batch_see_its_collected_appends(self, store: SessionStore) -> None:
        """A read of the batch (a term's id and count, a session's messages and time) indexes the runs collected
        before it, and sees what indexing each run as it comes shows; a session's time after its run is the touch's."""
        store.append("s0", ChatMessage.user("apple"))
        store.catch_up()

        def seen() -> tuple[object, ...]:
            with store._environment.read() as txn:
                batch = store._search_index.prepare(txn)
                [(old, _)] = batch.stored_sessions()
                batch.append(old, ["fig fig apple"], 5)
                batch.append(old + 1, ["apple kiwi"], 6)
                batch.touch(old + 1, 7)
                batch.append(old + 2, ["kiwi"], 8)
                kiwi = batch.tid("kiwi")
                assert kiwi is not None
                first = (kiwi, batch.df(kiwi), batch.session(old + 1), batch.message_count(old))
                batch.append(old + 2, ["date"], 9)
                batch.touch(old, 10)  # not the last run's session: the runs are indexed first
                batch.settle()
                return (*first, batch.session(old), batch.session(old + 2), batch.df(batch.tid("apple") or 0),
                        batch.chunks(old))

        with collected(1, writer._SETTLE_EVERY):
            alone = seen()
        with collected(1 << 20, writer._SETTLE_EVERY):
            together = seen()
        assert together == alone
        assert together[1:5] == (2, (1, 7), 2, (2, 10))
