"""A key of the event table of the wrong size (a position grown or cut short): ``verify`` reports it as log damage
(it failed with ``struct.error`` hashing position -1), and reads of the other sessions go on."""

from __future__ import annotations

import struct
from collections.abc import Callable
from pathlib import Path

import lmdb
import pytest

from eventstore import ChatMessage, SessionStore


@pytest.mark.parametrize("change", [lambda key: key + b"\x00", lambda key: key[:-1]], ids=["grown", "cut short"])
def test_an_event_key_of_the_wrong_size_is_log_damage(tmp_path: Path, change: Callable[[bytes], bytes]) -> None:
    path = tmp_path / "store"
    with SessionStore(path, durable=False) as store:
        store.append_many("a", [ChatMessage.user("alpha"), ChatMessage.user("beta")])
        store.append("b", ChatMessage.user("gamma"))
        loaded = store.load("b")
    environment = lmdb.open(str(path), max_dbs=64)
    with environment.begin(write=True) as txn:
        events = environment.open_db(b"log.events", txn=txn, create=False)
        key = struct.pack(">Q", 2)
        value = txn.get(key, db=events)
        assert value is not None
        txn.delete(key, db=events)
        txn.put(change(key), value, db=events)
    environment.close()
    with SessionStore(path, readonly=True) as store:
        report = store.verify()
        assert not report.ok and "log" in report.damaged
        assert any("a key of the event table is damaged" in problem for problem in report.problems)
        assert store.load("b") == loaded
