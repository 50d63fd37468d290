"""The LMDB engine against the storage conformance tests, and its own error mapping."""

from __future__ import annotations

import threading
from pathlib import Path

import lmdb
import pytest
from storage_conformance import StorageConformance

from eventstore import EventStoreError, StoreReadOnly
from eventstore.storage import Durability, Storage, WriteTransaction
from eventstore.storage import lmdb as lmdb_engine
from eventstore.storage.lmdb import Environment

from conftest import waited_for


class TestLmdbStorage(StorageConformance):
    release_waits_for_transactions = True

    def make_storage(self, tmp_path: Path, *, readonly: bool = False) -> Storage:
        # No flushes: what the tests check does not depend on them, and they would dominate the run time.
        return Environment.acquire(tmp_path, durability=Durability.OFF, readonly=readonly)


def test_room_made_ahead_spares_a_write_its_second_run(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """From a 256 KiB map, a write of 2 MiB fills the map and runs again once it has grown; with room made for its
    bytes first, the map is grown before it (doubled, as a full map grows) and its body runs once."""
    monkeypatch.setattr(lmdb_engine, "_INITIAL_MAP_SIZE", 256 << 10)
    values = [(b"k%05d" % number, bytes([number % 251]) * 2048) for number in range(1024)]

    def runs_of_a_write(path: Path, room: bool) -> tuple[int, int]:
        path.mkdir()
        storage = Environment.acquire(path, durability=Durability.OFF)
        try:
            space = storage.space("one")
            if room:
                storage.make_room(sum(len(key) + len(value) for key, value in values))
            grown = storage._env.info()["map_size"]
            runs = 0

            def write(txn: WriteTransaction) -> None:
                nonlocal runs
                runs += 1
                for key, value in values:
                    txn.put(space, key, value)

            storage.write(write)
            with storage.read() as txn:
                assert list(txn.scan(space)) == values
            return runs, grown
        finally:
            storage.release()

    runs, unchanged = runs_of_a_write(tmp_path / "as_it_comes", room=False)
    assert runs > 1 and unchanged == 256 << 10
    runs, grown = runs_of_a_write(tmp_path / "room_made", room=True)
    assert runs == 1 and grown > 2 * sum(len(key) + len(value) for key, value in values)
    assert grown & (grown - 1) == 0 and grown >> 18 > 1  # doubled from 256 KiB


def test_room_is_made_between_writes_not_while_another_threads_write_is_open(tmp_path: Path,
                                                                             monkeypatch: pytest.MonkeyPatch) -> None:
    """``make_room`` grows the map under the writers' lock, as a write grows a full map: not while another thread's
    write transaction is open, which the resize would wait for, and every transaction begun meanwhile with it. Here
    the room is made once the write commits."""
    monkeypatch.setattr(lmdb_engine, "_INITIAL_MAP_SIZE", 256 << 10)
    storage = Environment.acquire(tmp_path, durability=Durability.OFF)
    room = threading.Thread(target=storage.make_room, args=(4 << 20,))
    try:
        space = storage.space("one")
        waiting = threading.Event()
        acquire = storage._write_lock.acquire

        def acquiring(blocking: bool = True) -> bool:
            if blocking and threading.current_thread() is not threading.main_thread():
                waiting.set()
            return acquire(blocking)

        monkeypatch.setattr(storage._write_lock, "acquire", acquiring)

        def write(txn: WriteTransaction) -> None:
            txn.put(space, b"key", b"value")
            room.start()
            waited_for(lambda: storage._gate._resizing or waiting.is_set(), "make_room neither grew nor waited")
            assert not storage._gate._resizing, "the map grows while this write is open"
            with storage.read() as reading:
                assert reading.get(space, b"key") is None

        storage.write(write)
        room.join()
        assert storage._env.info()["map_size"] >= 2 * (4 << 20)
    finally:
        if room.ident is not None:
            room.join()
        storage.release()


class TestNoLmdbErrorEscapes:
    """Every py-lmdb error leaves the engine as the store's own error (lmdb.Error subclasses nothing of ours)."""

    def test_transaction_used_after_its_block(self, tmp_path):
        storage = Environment.acquire(tmp_path, durability=Durability.OFF)
        try:
            space = storage.space("one")
            with storage.read() as txn:
                pass
            for call in (lambda: txn.get(space, b"k"), lambda: txn.count(space), lambda: txn.snapshot_id(),
                         lambda: txn.last(space), lambda: txn.get_many(space, [b"k"]),
                         lambda: txn.get_each(space, [b"k"])):
                with pytest.raises(EventStoreError) as caught:
                    call()
                assert not isinstance(caught.value, lmdb.Error)
        finally:
            storage.release()

    def test_write_in_a_read_transaction(self, tmp_path):
        storage = Environment.acquire(tmp_path, durability=Durability.OFF)
        try:
            space = storage.space("one")
            with pytest.raises(StoreReadOnly), storage.read() as txn:
                txn.put(space, b"k", b"v")
        finally:
            storage.release()

    def test_failing_environment(self, tmp_path):
        """An LMDB failure when a transaction begins is an EventStoreError naming the store."""
        storage = Environment.acquire(tmp_path, durability=Durability.OFF)
        try:
            storage._env.close()
            with pytest.raises(EventStoreError, match=r"the store at .* failed") as caught, storage.read():
                pass
            assert not isinstance(caught.value, lmdb.Error)
        finally:
            storage.release()
