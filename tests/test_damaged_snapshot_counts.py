"""A snapshot keeps the blobs of the one before it that no event since touched, with their message counts copied
from its record. A damaged count was copied as it was (reads met the damage later, in the new snapshot too); it is
refused with ``StoreCorrupted`` before the command that takes the new snapshot writes anything."""

from __future__ import annotations

import struct
from collections.abc import Callable
from pathlib import Path

import lmdb
import pytest

from eventstore import ChatMessage, SessionStore, StoreCorrupted

from _damage import change_value

SNAPSHOT_EVERY = 5
#: Each message this long fills a third of a chunk's bytes: a chunk holds three.
TEXT = "x" * 5000

#: What takes the snapshot at version 20, after the appends to version 19 (if any).
COMMANDS: dict[str, tuple[int, Callable[[SessionStore], object]]] = {
    "append_many": (0, lambda store: store.append_many("a", [ChatMessage.user(f"n{n} {TEXT}") for n in range(5)])),
    "append": (4, lambda store: store.append("a", ChatMessage.user(f"n {TEXT}"))),
    "remove_last": (4, lambda store: store.remove_last("a")),
    "set_session_name": (4, lambda store: store.set_session_name("a", "renamed")),
}


def _store(path: Path) -> None:
    """Session "a" (stream 1) at version 15: 15 messages in five chunks of three, snapshots at 5, 10 and 15."""
    with SessionStore(path, durable=False, snapshot_every=SNAPSHOT_EVERY) as store:
        for number in range(15):
            store.append("a", ChatMessage.user(f"m{number} {TEXT}"))


def _plant(path: Path) -> None:
    """The first blob's count in the snapshot at 15 made 6: the blobs then end at 6, 9, 12, 15 and 18, and the
    next snapshot's kept blobs at 15, where a chunk begins, so the damage was not otherwise noticed."""

    def damaged(value: bytes) -> bytes:
        assert b'"counts":[3,3,3,3,3]' in value
        return value.replace(b'"counts":[3,3,3,3,3]', b'"counts":[6,3,3,3,3]')

    change_value(path, b"snapshots", struct.pack(">QQ", 1, 15), damaged)


def _databases(path: Path) -> dict[bytes, list[tuple[bytes, bytes]]]:
    """Every entry of every named database."""
    environment = lmdb.open(str(path), max_dbs=64, readonly=True, lock=False)
    try:
        with environment.begin() as txn:
            names = [bytes(key) for key, _ in txn.cursor()]
            return {name: [(bytes(key), bytes(value))
                           for key, value in txn.cursor(db=environment.open_db(name, txn=txn, create=False))]
                    for name in names}
    finally:
        environment.close()


def _with_store(path: Path, body: Callable[[SessionStore], object]) -> object:
    with SessionStore(path, durable=False, snapshot_every=SNAPSHOT_EVERY) as store:
        return body(store)


@pytest.mark.parametrize("command", sorted(COMMANDS))
def test_the_command_that_takes_the_next_snapshot_is_refused_writing_nothing(tmp_path: Path, command: str) -> None:
    _store(tmp_path)
    _plant(tmp_path)
    appends, act = COMMANDS[command]
    _with_store(tmp_path, lambda store: [store.append("a", ChatMessage.user(f"p{n} {TEXT}")) for n in range(appends)])
    before = _databases(tmp_path)
    with pytest.raises(StoreCorrupted, match="stream 1 is damaged: its blobs count 18 messages, not the 15 of"):
        _with_store(tmp_path, act)
    assert _databases(tmp_path) == before


def test_verify_names_the_damaged_snapshot_and_a_rebuild_of_the_messages_repairs_it(tmp_path: Path) -> None:
    _store(tmp_path)
    _plant(tmp_path)
    with SessionStore(tmp_path, durable=False, snapshot_every=SNAPSHOT_EVERY) as store:
        report = store.verify()
        assert report.problems == ["snapshot of 'a' at version 15: a snapshot of stream 1 is damaged: its blobs "
                                   "count 18 messages, not the 15 of its head"]
        assert report.damaged == {"messages"}
        store.rebuild_projections(["messages"])
        store.append_many("a", [ChatMessage.user(f"n{n} {TEXT}") for n in range(5)])
        assert store.verify().ok
        assert len(store.session_at("a", version=20).messages) == 20
