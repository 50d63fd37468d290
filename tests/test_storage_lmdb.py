"""The LMDB engine against the storage conformance tests, and its own error mapping."""

from __future__ import annotations

from pathlib import Path

import lmdb
import pytest
from storage_conformance import StorageConformance

from eventstore import EventStoreError, StoreReadOnly
from eventstore.storage import Durability, Storage
from eventstore.storage.lmdb import Environment


class TestLmdbStorage(StorageConformance):
    def make_storage(self, tmp_path: Path, *, readonly: bool = False) -> Storage:
        # No flushes: what the tests check does not depend on them, and they would dominate the run time.
        return Environment.acquire(tmp_path, durability=Durability.OFF, readonly=readonly)


class TestNoLmdbErrorEscapes:
    """Every py-lmdb error leaves the engine as the store's own error (lmdb.Error subclasses nothing of ours)."""

    def test_transaction_used_after_its_block(self, tmp_path):
        storage = Environment.acquire(tmp_path, durability=Durability.OFF)
        try:
            space = storage.space("one")
            with storage.read() as txn:
                pass
            for call in (lambda: txn.get(space, b"k"), lambda: txn.count(space), lambda: txn.snapshot_id(),
                         lambda: txn.last(space), lambda: txn.get_many(space, [b"k"])):
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
