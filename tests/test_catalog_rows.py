"""A catalog row changed on disk into other valid JSON: a command on its session says the store is damaged, and a
rebuild of the catalog repairs it."""

from __future__ import annotations

from pathlib import Path

import pytest

from eventstore import ChatMessage, SessionStore, StoreCorrupted

from test_listing import put_first_catalog_row

TIME = '"2026-12-04T00:00:00+00:00"'
#: Rows in the current form (key, name, created, last activity, count, version, state, turn id, turn start), each
#: changed in one field.
CHANGED_ROWS = {
    "key_not_text": f'7,null,{TIME},{TIME},1,1,null,null,null',
    "no_creation": f'"tg:1",null,null,{TIME},1,1,null,null,null',
    "no_last_activity": f'"tg:1",null,{TIME},null,1,1,null,null,null',
    "count_not_a_number": f'"tg:1",null,{TIME},{TIME},"1",1,null,null,null',
    "state_not_text": f'"tg:1",null,{TIME},{TIME},1,1,3,null,null',
}


@pytest.mark.parametrize("row", CHANGED_ROWS.values(), ids=CHANGED_ROWS.keys())
def test_a_command_on_a_session_whose_row_was_changed_says_the_store_is_damaged(store_path: Path, row: str) -> None:
    with SessionStore(store_path) as store:
        store.append("tg:1", ChatMessage.user("first"))
    put_first_catalog_row(store_path, row.encode())
    with SessionStore(store_path) as store:
        with pytest.raises(StoreCorrupted, match="session catalog is damaged"):
            store.append("tg:1", ChatMessage.user("second"))
        assert not store.verify().ok
        store.rebuild_projections(["catalog"])
        store.append("tg:1", ChatMessage.user("second"))
        assert ["first", "second"] == [message.content for message in store.load("tg:1")]
        assert store.verify().ok
