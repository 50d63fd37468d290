"""An earlier catalog whose rows were changed (still JSON, with other values) converts or is rebuilt from the log:
the store opens, lists as the log says and verifies."""

from __future__ import annotations

import struct
from collections.abc import Callable
from pathlib import Path

import pytest

from eventstore import ChatMessage, SessionStore

from _damage import change_value
from conftest import FakeClock
from test_listing import _as_catalog_version, put_first_catalog_row

TIME = '"2026-12-04T00:00:00+00:00"'
#: Rows as code version 3 kept them (key, version, name, state, turn id, turn start, created, last activity,
#: count), each changed in one field.
CHANGED_ROWS = {
    "key_not_text": f'[7, 1, null, null, null, null, {TIME}, {TIME}, 1]',
    "no_last_activity": f'["tg:1", 1, null, null, null, null, {TIME}, null, 1]',
    "count_not_a_number": f'["tg:1", 1, null, null, null, null, {TIME}, {TIME}, "1"]',
    "version_not_a_number": f'["tg:1", "1", null, null, null, null, {TIME}, {TIME}, 1]',
    "name_not_text": f'["tg:1", 1, 5, null, null, null, {TIME}, {TIME}, 1]',
    "state_not_text": f'["tg:1", 1, null, 3, null, null, {TIME}, {TIME}, 1]',
    "another_last_activity": f'["tg:1", 1, null, null, null, null, {TIME}, {TIME}, 1]',
}


@pytest.mark.parametrize("row", CHANGED_ROWS.values(), ids=CHANGED_ROWS.keys())
def test_an_earlier_catalog_with_a_changed_row_lists_what_the_log_says(store_path: Path, row: str) -> None:
    """A row whose fields are not of their types is damaged: the catalog is rebuilt from the log. One with another
    last activity than the row kept under it in ``catalog.activity`` leaves no row of the earlier form there."""
    with SessionStore(store_path) as store:
        for key in ("tg:1", "tg:2"):
            store.append(key, ChatMessage.user(key))
        expected = store.list_sessions_with_metadata()
    _as_catalog_version(store_path, 3)
    put_first_catalog_row(store_path, row.encode())  # beneath the store: its writable open converts
    with SessionStore(store_path) as store:
        listed = store.list_sessions_with_metadata()
        if row != CHANGED_ROWS["another_last_activity"]:
            assert expected == listed
        assert ["tg:1", "tg:2"] == sorted(metadata.key for metadata in listed)
        store.rebuild_projections(["catalog"])
        assert expected == store.list_sessions_with_metadata()


#: Changes to the second session's row, in the form an earlier catalog kept it, that no position can be made of.
UNPLACEABLE_ROWS = {
    "the_first_sessions_key": lambda row: row.replace(b'"tg:2"', b'"tg:1"'),
    "times_before_1970": lambda row: row.replace(b'"2026-', b'"1969-'),
    "a_negative_count": lambda row: row.replace(b'",1,', b'",-1,').replace(b',1]', b',-1]'),
}


@pytest.mark.parametrize("version", [2, 3, 4])
@pytest.mark.parametrize("change", UNPLACEABLE_ROWS.values(), ids=UNPLACEABLE_ROWS.keys())
def test_an_earlier_catalog_whose_row_has_no_place_is_rebuilt(store_path: Path, clock: FakeClock, version: int,
                                                              change: Callable[[bytes], bytes]) -> None:
    """A row that names another session's key, or holds times before the epoch or a negative message count (which
    no entry holds), is damage that a conversion cannot write: the store opens with its catalog rebuilt from the
    log, rather than failing to open (``ValueError`` from the appends in key order, ``struct.error`` from the
    position or the key entry)."""
    with SessionStore(store_path, clock=clock) as store:
        for key in ("tg:1", "tg:2"):
            store.append(key, ChatMessage.user(key))
            store.set_session_state(key, "running", "turn")
            clock.advance(seconds=1)
        expected = store.list_sessions_with_metadata()
    _as_catalog_version(store_path, version)
    change_value(store_path, b"catalog.sessions", struct.pack(">Q", 2), change)
    with SessionStore(store_path, clock=clock) as store:
        assert expected == store.list_sessions_with_metadata()
        assert store.verify().ok
