"""Random byte flips in a copy of a store's data file: the damage the garbage and damaged-commands tests apply."""

from __future__ import annotations

import shutil
from collections.abc import Callable
from pathlib import Path

import lmdb
from hypothesis import strategies as st

#: (database index, entry index, byte offset, XOR mask); the indexes are taken modulo what exists.
flips = st.lists(st.tuples(st.integers(0, 1000), st.integers(0, 10_000), st.integers(0, 100_000),
                           st.integers(1, 255)), min_size=1, max_size=3)


def damaged_copy(source: Path, copy: Path, sizes: dict[bytes, int],
                 damage: list[tuple[int, int, int, int]]) -> list[tuple[str, str, int, int]]:
    """Copy the store at ``source`` to ``copy`` and flip its bytes as ``damage`` says, among the named databases
    ``sizes`` counts the entries of; returns each change as (database, key in hex, offset, mask)."""
    shutil.rmtree(copy, ignore_errors=True)
    copy.mkdir()
    shutil.copy2(source / "data.mdb", copy / "data.mdb")
    names = sorted(sizes)
    changed = []
    environment = lmdb.open(str(copy), max_dbs=64)
    try:
        with environment.begin(write=True) as txn:
            for index, entry, offset, mask in damage:
                name = names[index % len(names)]
                database = environment.open_db(name, txn=txn, create=False)
                cursor = txn.cursor(db=database)
                cursor.first()
                for _ in range(entry % sizes[name]):
                    cursor.next()
                key, value = bytes(cursor.key()), bytearray(cursor.value())
                if not value:
                    continue
                value[offset % len(value)] ^= mask
                txn.put(key, bytes(value), db=database)
                changed.append((name.decode(), key.hex(), offset % len(value), mask))
    finally:
        environment.close()
    return changed


def _in_write(path: Path, database: bytes, edit: Callable[[lmdb.Transaction, lmdb._Database], None]) -> None:
    """Run ``edit`` in a write transaction of the store at ``path``, on its named ``database``."""
    environment = lmdb.open(str(path), max_dbs=64)
    try:
        with environment.begin(write=True) as txn:
            edit(txn, environment.open_db(database, txn=txn, create=False))
    finally:
        environment.close()


def change_value(path: Path, database: bytes, key: bytes, change: Callable[[bytes], bytes]) -> None:
    """Replace the value at ``key`` of the store's named ``database`` (it must be there) by ``change`` of it."""

    def edit(txn: lmdb.Transaction, handle: lmdb._Database) -> None:
        stored = txn.get(key, db=handle)
        assert stored is not None
        txn.put(key, change(bytes(stored)), db=handle)

    _in_write(path, database, edit)


def move_value(path: Path, database: bytes, key: bytes, new_key: bytes) -> None:
    """Move the value at ``key`` of the store's named ``database`` (it must be there) to ``new_key`` (a free key)."""

    def edit(txn: lmdb.Transaction, handle: lmdb._Database) -> None:
        value = txn.pop(key, db=handle)
        assert value is not None
        assert txn.put(new_key, value, db=handle, overwrite=False)

    _in_write(path, database, edit)


def end_key(path: Path, database: bytes, *, last: bool) -> bytes:
    """The first or the ``last`` key of the store's named ``database`` (it must hold one)."""
    environment = lmdb.open(str(path), max_dbs=64, readonly=True, lock=False)
    try:
        with environment.begin() as txn:
            cursor = txn.cursor(db=environment.open_db(database, txn=txn, create=False))
            assert cursor.last() if last else cursor.first()
            return bytes(cursor.key())
    finally:
        environment.close()
