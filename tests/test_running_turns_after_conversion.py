"""A store of an earlier catalog whose running-turn index disagrees with its rows converts to an index made from
the converted rows: no stray entry is left for ``verify`` to report or for the stuck-turn listing to return."""

from __future__ import annotations

import struct
from datetime import timedelta
from pathlib import Path

import lmdb
import orjson
import pytest

from eventstore import ChatMessage, SessionStore
from eventstore._time import to_micros

from conftest import FakeClock
from test_listing import _as_catalog_version

_TIME_ID = struct.Struct(">QQ")


def _turns(store: SessionStore) -> tuple[list[str], list[str]]:
    """The running sessions, latest turn first, and those stuck for more than 30 minutes, oldest first."""
    return ([metadata.key for metadata in store.list_running_sessions()],
            [metadata.key for metadata in store.list_stuck_sessions(30 * 60)])


def _with_another_running_entry(path: Path, stream_id: int, turn_started: int) -> None:
    """Move the running-index entry of ``stream_id`` to ``turn_started`` µs, beneath the store (closed)."""
    environment = lmdb.open(str(path), max_dbs=64)
    try:
        running = environment.open_db(b"catalog.running")
        with environment.begin(write=True, db=running) as txn:
            for key in list(txn.cursor().iternext(values=False)):
                if _TIME_ID.unpack(key)[1] == stream_id:
                    txn.delete(key)
            txn.put(_TIME_ID.pack(turn_started, stream_id), b"")
    finally:
        environment.close()


def _with_another_turn_in_the_row(path: Path, stream_id: int, turn_started: str) -> None:
    """Change the turn start that the version 3 row of ``stream_id`` holds, beneath the store (closed)."""
    environment = lmdb.open(str(path), max_dbs=64)
    try:
        sessions = environment.open_db(b"catalog.sessions")
        with environment.begin(write=True, db=sessions) as txn:
            key = struct.pack(">Q", stream_id)
            stored = txn.get(key)
            assert stored is not None
            row = orjson.loads(stored)
            row[5] = turn_started  # key, version, name, state, turn id, turn start, created, last activity, count
            txn.put(key, orjson.dumps(row))
    finally:
        environment.close()


@pytest.fixture
def running_store(store_path: Path, clock: FakeClock) -> Path:
    """Three sessions (streams 1 to 3): "old" running for an hour, "new" for a minute, "idle" never; as the
    catalog of code version 3 kept them."""
    with SessionStore(store_path, clock=clock) as store:
        for key in ("old", "new", "idle"):
            store.append(key, ChatMessage.user(key))
        store.set_session_state("old", "running", "turn 1")
        clock.advance(minutes=59)
        store.set_session_state("new", "running", "turn 2")
        clock.advance(minutes=1)
        assert (["new", "old"], ["old"]) == _turns(store)
    _as_catalog_version(store_path, 3)
    return store_path


def test_a_stray_running_entry_is_not_kept(running_store: Path, clock: FakeClock) -> None:
    """The index held "new"'s turn two hours back: it would be stuck, and listed before "old"."""
    _with_another_running_entry(running_store, 2, to_micros(clock() - timedelta(hours=2)))
    with SessionStore(running_store, clock=clock) as store:
        assert (["new", "old"], ["old"]) == _turns(store)
        assert store.verify().ok


def test_a_row_whose_turn_start_changed_is_indexed_at_that_turn(running_store: Path, clock: FakeClock) -> None:
    """The converted row says "old" started its turn a moment ago: it is listed so, and only so; rebuilding the
    catalog from the log makes it as the log says."""
    _with_another_turn_in_the_row(running_store, 1, (clock() - timedelta(seconds=5)).isoformat())
    with SessionStore(running_store, clock=clock) as store:
        assert (["old", "new"], []) == _turns(store)
        assert {"catalog.running: the entry of stream 1 ('old') differs from the log"} <= set(store.verify().problems)
        store.rebuild_projections(["catalog"])
        assert (["new", "old"], ["old"]) == _turns(store)
        assert store.verify().ok
