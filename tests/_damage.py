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


def change_value(path: Path, database: bytes, key: bytes, change: Callable[[bytes], bytes]) -> None:
    """Replace the value at ``key`` of the store's named ``database`` (it must be there) by ``change`` of it."""
    environment = lmdb.open(str(path), max_dbs=64)
    try:
        with environment.begin(write=True) as txn:
            handle = environment.open_db(database, txn=txn, create=False)
            stored = txn.get(key, db=handle)
            assert stored is not None
            txn.put(key, change(bytes(stored)), db=handle)
    finally:
        environment.close()
