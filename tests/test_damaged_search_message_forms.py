"""Damage to the message path's stored forms (code version 6): any change to a term's message map
(``search.maps``), its repeated messages (``search.repeats``) or a block's messages by level (``search.levels``),
a value changed, removed or added, turns ``verify`` red, and a rebuild turns it green again; on LMDB and in memory."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from pyroaring import BitMap

from eventstore import ChatMessage, SessionStore
from eventstore.storage import MemoryStorage, Space, WriteTransaction
from projections.search import formats
from projections.search.formats import maps

from conftest import FakeClock

texts = st.lists(st.sampled_from(["the"] * 4 + ["of"] * 3 + ["and", "w1", "w2"]), min_size=1, max_size=9).map(
    " ".join)


def _pairs(store: SessionStore, space: Space) -> list[tuple[bytes, bytes]]:
    with store._environment.read() as txn:
        return [(bytes(key), bytes(value)) for key, value in txn.scan(space)]


def _changed_keys(keys: BitMap, draw: st.DrawFn) -> BitMap:
    """``keys`` with one removed, or one added that it lacks."""
    changed = BitMap(keys)
    if keys and draw(st.booleans()):
        changed.remove(draw(st.sampled_from(list(keys))))
    else:
        changed.add(draw(st.sampled_from([key for key in range(maps.LAST_KEYS + 4) if key not in keys][:64])))
    return changed


@st.composite
def damages(draw: st.DrawFn, store: SessionStore) -> tuple[Space, bytes, bytes | None]:
    """A change to one key of the message path's spaces: ``(space, key, new value or None to delete)``."""
    spaces = store._search_index._spaces
    space = draw(st.sampled_from([spaces.maps, spaces.repeats, spaces.levels]))
    pairs = _pairs(store, space)
    assert pairs, space  # the corpus below fills every one of them
    key, value = draw(st.sampled_from(pairs))
    how = draw(st.sampled_from(["change", "delete", "copy to another key"]))
    if how == "delete":
        return space, key, None
    if how == "copy to another key":  # another term's (a block, then a term id), or another level of the block
        stored = dict(pairs)
        others = [other for other in ((key[:4] + number.to_bytes(4, "big") if space is not spaces.levels
                                       else key[:-1] + bytes([number])) for number in range(1, 256))
                  if other not in stored]
        return space, draw(st.sampled_from(others)), value
    if space is spaces.repeats:
        keys, levels = maps.repeats_of_value(value)
        repeats = dict(zip(keys, levels))
        if draw(st.booleans()):
            message = draw(st.sampled_from(sorted(repeats)))
            repeats[message] = draw(st.sampled_from([level for level in range(1, 256) if level != repeats[message]]))
        else:
            changed = _changed_keys(BitMap(repeats), draw)
            repeats = {message: repeats.get(message, 1) for message in changed}
        if not repeats:
            return space, key, None
        ordered = sorted(repeats)
        return space, key, maps.repeats_value(BitMap(ordered), bytes(map(repeats.__getitem__, ordered)))
    return space, key, maps.map_value(_changed_keys(maps.map_of_value(value), draw))


@pytest.mark.usefixtures("terms_in_blocks")
@pytest.mark.parametrize("engine", ["lmdb", "memory"])
@settings(max_examples=40)
@given(sessions=st.lists(st.lists(texts, min_size=1, max_size=5), min_size=6, max_size=14), data=st.data())
def test_any_change_to_the_message_forms_is_reported(engine: str, sessions: list[list[str]], data: st.DataObject,
                                                     tmp_path_factory: pytest.TempPathFactory) -> None:
    saved = formats.MAP_FROM, formats.BLOCK_BITS
    formats.MAP_FROM, formats.BLOCK_BITS = 1, 2  # maps, repeats and levels in every block
    clock = FakeClock()
    store = (SessionStore(tmp_path_factory.mktemp("store"), clock=clock, durable=False) if engine == "lmdb"
             else SessionStore.on_storage(MemoryStorage(), clock=clock))
    try:
        with store:
            for number, texts_of in enumerate(sessions):
                clock.advance(seconds=1)
                store.append_many(f"s{number}", [ChatMessage.user(text) for text in texts_of])
            store.append_many("repeats", [ChatMessage.user("the the of w1"), ChatMessage.user("of of of the")])
            store.catch_up()
            assert store.verify().ok
            space, key, value = data.draw(damages(store))

            def damage(txn: WriteTransaction) -> None:
                if value is None:
                    txn.delete(space, key)
                else:
                    txn.put(space, key, value)

            store._environment.write(damage)
            assert not store.verify().ok, (space.name, key, value)
            store.rebuild_projections(["search"])
            assert store.verify().ok
    finally:
        formats.MAP_FROM, formats.BLOCK_BITS = saved
