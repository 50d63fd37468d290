"""The level of each message the message path looks up at once (``IndexReader.message_levels``): through the decoded
state's level table (``index._LevelTable``), in either form, patched across catch-ups and through a batch of pending
events with the changed sessions' levels, against a plain model of the blocks' messages by level as sessions are
edited; and the table's bytes where sessions are long."""

from __future__ import annotations

import tempfile
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import TypeVar

from hypothesis import example, given, settings
from hypothesis import strategies as st
from pyroaring import BitMap

from eventstore import ChatMessage, SessionStore
from eventstore.storage import ReadTransaction
from projections.search import index as search_index
from projections.search.formats.maps import JOINED_SHIFT, MAP_SHIFT, keyed_levels
from projections.search.formats.summaries import LAST_TAG
from projections.search.index import CachedReader, _LevelTable
from projections.search.reader import IndexReader

from conftest import FakeClock
from test_search import run_script_step
from test_search_by_messages import message_path, texts

#: Blocks of 4 sessions: every joined key of the first blocks' first messages, where messages are and are not, and
#: of blocks past the last.
BLOCK_BITS = 2
KEYS = BitMap(number << JOINED_SHIFT | index << MAP_SHIFT | offset
              for number in range(6) for index in range(5) for offset in range(1 << BLOCK_BITS))
Step = TypeVar("Step")
commands = st.sampled_from(["append"] * 6 + ["remove_last", "update_last", "clear", "delete", "catch_up"])


def _levels(store: SessionStore, keys: BitMap = KEYS) -> tuple[list[int], list[int]]:
    """``message_levels`` of ``keys`` as queries read the index (a current one through its decoded state, one behind
    through its batch), and each key's level from a plain reader's (or a plain overlay's) joined levels."""
    index = store._search_index

    def run(view: IndexReader, txn: ReadTransaction) -> tuple[list[int], list[int]]:
        plain: IndexReader = IndexReader(index._spaces, index._term_ids, txn)
        if view.holds_unwritten_changes:
            plain = index.overlay(txn, store._search.pending(txn))
        level_of = {key: level for level in plain.level_blocks() for key in plain.joined_level(level)}
        return index._query_view(view).message_levels(keys).tolist(), [level_of.get(key, 0) for key in keys]

    return store._search.query(run)


@contextmanager
def table_form(settings: tuple[int, int, int]) -> Iterator[None]:
    """The level table's ``_DENSE_UP_TO``, ``_PATCHED_UP_TO`` and ``_PATCHES_UP_TO`` set to ``settings``."""
    saved = [getattr(search_index, name) for name in _TABLE_SETTINGS]
    for name, value in zip(_TABLE_SETTINGS, settings):
        setattr(search_index, name, value)
    try:
        yield
    finally:
        for name, value in zip(_TABLE_SETTINGS, saved):
            setattr(search_index, name, value)


def levels_checked_through(script: Sequence[tuple[int, Step, str]], form: tuple[int, int, int],
                           texts_of: Callable[[int, Step], list[str]], keys: BitMap) -> None:
    """``script`` run on a store of blocks of ``1 << BLOCK_BITS`` sessions, its level table in ``form``: each step
    a session's number, what ``texts_of`` makes its messages of, and a command of ``run_script_step`` (or
    ``catch_up``); after each, the levels of ``keys`` looked up are a plain reader's."""
    with message_path(1, BLOCK_BITS), table_form(form), tempfile.TemporaryDirectory() as directory:
        clock = FakeClock()
        with SessionStore(Path(directory), clock=clock, durable=False) as store:
            for number, step, command in script:
                clock.advance(seconds=1)
                if command == "catch_up":
                    store.catch_up()
                else:
                    run_script_step(store, f"s{number}", texts_of(number, step), command)
                found, expected = _levels(store, keys)
                assert found == expected


_TABLE_SETTINGS = ("_DENSE_UP_TO", "_PATCHED_UP_TO", "_PATCHES_UP_TO")
#: Every block as entries, as arrays (patched, laid out again at every patch), the defaults, a table read afresh.
FORMS = [(0, 512, 4096), (1 << 30, 512, 4096), (1 << 30, 512, 0), (5, 512, 4096), (5, 1, 4096)]


@settings(max_examples=60, deadline=None)
@given(st.lists(st.tuples(st.integers(0, 17), st.lists(texts, min_size=1, max_size=4), commands),
                min_size=4, max_size=40), st.sampled_from(FORMS))
# a catch-up that moves a block's messages to other levels, and pending events in one block after it
@example([(1, ["the of", "the the of and"], "append"), (5, ["of"], "append"), (0, [], "catch_up"),
          (1, ["the"], "update_last"), (0, [], "catch_up"), (5, ["of of"], "append")], FORMS[0])
# the same as arrays patched: the patch of a session whose message moved level, and one that shrank
@example([(1, ["the of", "the the of and"], "append"), (5, ["of"], "append"), (0, [], "catch_up"),
          (1, ["the"], "update_last"), (5, [], "remove_last"), (0, [], "catch_up"), (5, ["of of"], "append")],
         FORMS[1])
def test_the_levels_looked_up_are_the_blocks_messages_by_level(script: list[tuple[int, list[str], str]],
                                                               form: tuple[int, int, int]) -> None:
    levels_checked_through(script, form, lambda _number, batch: batch, KEYS)


#: Every joined key of the first two blocks, up to the first key past the maps' range (``LAST_TAG``).
LONG_KEYS = BitMap(number << JOINED_SHIFT | index << MAP_SHIFT | offset
                   for number in range(2) for index in range(LAST_TAG + 1) for offset in range(1 << BLOCK_BITS))


@settings(max_examples=20, deadline=None)
@given(st.lists(st.tuples(st.integers(0, 7), st.integers(1, 90), commands), min_size=2, max_size=12),
       st.sampled_from(FORMS))
# a session of two chunks and one past the maps' range, then their last messages changed, caught up and pending
@example([(1, 70, "append"), (2, 90, "append"), (2, 60, "append"), (0, 1, "catch_up"), (1, 1, "update_last"),
          (2, 1, "remove_last"), (0, 1, "catch_up"), (2, 1, "update_last")], FORMS[1])
def test_the_levels_of_long_sessions_are_patched_from_each_of_their_chunks(
        script: list[tuple[int, int, str]], form: tuple[int, int, int]) -> None:
    """Sessions of several chunks of postings, some past ``LAST_TAG`` messages (whose later messages have no level):
    the level table patched with their levels, across catch-ups and through a batch, against a plain reader's."""
    words = ["the of", "of of the", "the the the of", "w1 the", "and"]
    levels_checked_through(script, form, lambda number, size: [words[(number + index) % len(words)]
                                                              for index in range(size)], LONG_KEYS)


def test_a_blocks_levels_by_key() -> None:
    """Each message's key and level, level by level."""
    keys, levels = keyed_levels([(3, BitMap([0, 5])), (7, BitMap([2])), (9, BitMap())])
    assert (keys.tolist(), levels.tolist()) == ([0, 5, 2], [3, 3, 7])
    assert [found.tolist() for found in keyed_levels([])] == [[], []]


def test_a_store_of_long_sessions_keeps_its_level_table_within_the_budget(scratch_store: SessionStore) -> None:
    """Blocks of 4 sessions, one of ``LAST_TAG`` messages in each: a block's array would span ``LAST_TAG`` rows of
    4,096 keys (about 512 KiB; 70 blocks, over the decoded state's 32 MiB), so each is kept as entries, 5 bytes a
    message, and the table stays with the decoded state."""
    store = scratch_store
    with message_path(1, BLOCK_BITS):
        for number in range(70 << BLOCK_BITS):
            long = number % (1 << BLOCK_BITS) == 0
            store.append_many(f"s{number}", [ChatMessage.user(f"the of w{index % 7}")
                                             for index in range(LAST_TAG if long else 2)])
        store.catch_up()

        def read(view: IndexReader, _txn: object) -> tuple[_LevelTable, int, bool]:
            assert isinstance(view, CachedReader)
            table = view._decoded.level_table(view)
            return table, view.messages(), view._decoded._entries.get(search_index._LEVEL_TABLE) is table

        table, messages, kept = store._search.query(read)
    assert messages == 70 * (LAST_TAG + 3 * 2)
    assert table.cost() <= 5 * messages + 4096, "at most the entries' 5 bytes a message"
    assert kept
