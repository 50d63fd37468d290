"""A catalog row changed on disk into other valid JSON: a command on its session says the store is damaged, and a
rebuild of the catalog repairs it."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta, timezone
from pathlib import Path

import orjson
import pytest
from hypothesis import given
from hypothesis import strategies as st

from eventstore import ChatMessage, SessionStore, StoreCorrupted
from eventstore._time import MAX_MICROS, from_micros
from eventstore._values import SessionState
from eventstore.events import MessageAppended, SessionRestored
from projections.catalog import _decode_head, _encode_head
from projections.session import SessionHead

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


_MICROS = st.integers(min_value=0, max_value=MAX_MICROS).map(from_micros)


@given(created=_MICROS, last=_MICROS, started=st.none() | _MICROS, name=st.none() | st.text(),
       count=st.integers(min_value=0, max_value=2**64 - 1))
def test_a_row_writes_its_times_as_their_iso_text(created: datetime, last: datetime, started: datetime | None,
                                                  name: str | None, count: int) -> None:
    """The row's times are written by orjson from the datetimes: the same text as ``isoformat`` (which rows of
    earlier code hold, and the listing parses), for any time a store holds."""
    state = None if started is None else SessionState("running", "turn", started)
    head = SessionHead("tg:1", 3, True, name, state, created, last, count)
    iso = [None if moment is None else moment.isoformat() for moment in (created, last, started)]
    expected = ["tg:1", name, iso[0], iso[1], count, 3, None if state is None else "running",
                None if state is None else "turn", iso[2]]
    assert orjson.dumps(expected)[1:-1] == _encode_head(head)
    assert _decode_head(_encode_head(head)) == head


@pytest.mark.parametrize("zone", [timezone(timedelta(hours=-3)), timezone(timedelta(seconds=1))],
                         ids=["hours", "seconds"])
def test_an_imported_restores_turn_start_in_another_zone_is_stored_in_utc(store_path: Path, zone: timezone) -> None:
    """A restore imported with its turn's start in another zone: its row holds the start's UTC text, which the
    listings read and ``verify`` finds equal to the log's (it held the zone's text, refused as damage, or orjson's
    text of another time)."""
    started = datetime(2026, 12, 4, tzinfo=UTC)
    restored = SessionRestored(0, True, (), None, SessionState("running", "turn", started.astimezone(zone)), started)
    with SessionStore(store_path, clock=lambda: started + timedelta(days=1)) as store:
        store.import_sessions({"tg:1": [(started, MessageAppended(ChatMessage.user("first"))), (started, restored)]})
        assert ["tg:1"] == [metadata.key for metadata in store.list_running_sessions()]
        assert SessionState("running", "turn", started) == store.get_session_state("tg:1")
        assert store.verify().ok
