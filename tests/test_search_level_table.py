"""The level of each message the message path looks up at once (``IndexReader.message_levels``): through the decoded
state's level table (``index._LevelTable``), carried across catch-ups with the changed blocks read again, and through
a batch of pending events, against a plain model of the blocks' messages by level as sessions are edited."""

from __future__ import annotations

import tempfile
from pathlib import Path

from hypothesis import example, given, settings
from hypothesis import strategies as st
from pyroaring import BitMap

from eventstore import SessionStore
from eventstore.storage import ReadTransaction
from projections.search.formats.maps import JOINED_SHIFT, MAP_SHIFT, levels_by_key
from projections.search.reader import IndexReader

from conftest import FakeClock
from test_search import run_script_step
from test_search_by_messages import message_path, texts

#: Blocks of 4 sessions: every joined key of the first blocks' first messages, where messages are and are not, and
#: of blocks past the last.
BLOCK_BITS = 2
KEYS = BitMap(number << JOINED_SHIFT | index << MAP_SHIFT | offset
              for number in range(6) for index in range(5) for offset in range(1 << BLOCK_BITS))
commands = st.sampled_from(["append"] * 6 + ["remove_last", "update_last", "clear", "delete", "catch_up"])


def _levels(store: SessionStore) -> tuple[list[int], list[int]]:
    """``message_levels`` of ``KEYS`` as queries read the index (a current one through its decoded state, one behind
    through its batch), and each key's level from a plain reader's (or a plain overlay's) joined levels."""
    index = store._search_index

    def run(view: IndexReader, txn: ReadTransaction) -> tuple[list[int], list[int]]:
        plain: IndexReader = IndexReader(index._spaces, index._term_ids, txn)
        if view.holds_unwritten_changes:
            plain = index.overlay(txn, store._search.pending(txn))
        level_of = {key: level for level in plain.level_blocks() for key in plain.joined_level(level)}
        return index._query_view(view).message_levels(KEYS).tolist(), [level_of.get(key, 0) for key in KEYS]

    return store._search.query(run)


@settings(max_examples=40, deadline=None)
@given(st.lists(st.tuples(st.integers(0, 17), st.lists(texts, min_size=1, max_size=4), commands),
                min_size=4, max_size=40))
# a catch-up that moves a block's messages to other levels, and pending events in one block after it
@example([(1, ["the of", "the the of and"], "append"), (5, ["of"], "append"), (0, [], "catch_up"),
          (1, ["the"], "update_last"), (0, [], "catch_up"), (5, ["of of"], "append")])
def test_the_levels_looked_up_are_the_blocks_messages_by_level(script: list[tuple[int, list[str], str]]) -> None:
    with message_path(1, BLOCK_BITS), tempfile.TemporaryDirectory() as directory:
        clock = FakeClock()
        with SessionStore(Path(directory), clock=clock, durable=False) as store:
            for number, batch, command in script:
                clock.advance(seconds=1)
                if command == "catch_up":
                    store.catch_up()
                else:
                    run_script_step(store, f"s{number}", batch, command)
                found, expected = _levels(store)
                assert found == expected


def test_a_blocks_levels_by_key() -> None:
    """Each key's level, 0 where no message is, up to the greatest key present."""
    found = levels_by_key([(3, BitMap([0, 5])), (7, BitMap([2])), (9, BitMap())])
    assert found.tolist() == [3, 0, 7, 0, 0, 3]
    assert levels_by_key([]).tolist() == []
