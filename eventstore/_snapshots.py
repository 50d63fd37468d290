"""The snapshot store: opaque bytes per (stream, version), kept beside the log, never in it.

A snapshot is derived data: dropping every snapshot loses nothing, it only
makes folding a session slower.
"""

from __future__ import annotations

import struct

from ._environment import Environment, Transaction

__all__ = ["SnapshotStore"]

_STREAM_VERSION = struct.Struct(">QQ")


class SnapshotStore:
    """Snapshots keyed by stream id and the version they fold up to."""

    def __init__(self, environment: Environment) -> None:
        self._db = environment.open_db(b"snapshots")

    def put(self, txn: Transaction, stream_id: int, version: int, data: bytes) -> None:
        txn.put(_STREAM_VERSION.pack(stream_id, version), data, db=self._db)

    def has(self, txn: Transaction, stream_id: int, version: int) -> bool:
        return txn.get(_STREAM_VERSION.pack(stream_id, version), db=self._db) is not None

    def latest(self, txn: Transaction, stream_id: int, up_to_version: int) -> tuple[int, bytes] | None:
        """The newest snapshot of the stream at or below ``up_to_version``: (version, bytes)."""
        cursor = txn.cursor(db=self._db)
        if cursor.set_range(_STREAM_VERSION.pack(stream_id, up_to_version + 1)):
            found = cursor.prev()
        else:
            found = cursor.last()
        if not found:
            return None
        found_stream, version = _STREAM_VERSION.unpack(cursor.key())
        if found_stream != stream_id:
            return None
        return version, bytes(cursor.value())

    def versions(self, txn: Transaction) -> set[tuple[int, int]]:
        """(stream id, version) of every snapshot."""
        return {_STREAM_VERSION.unpack(key) for key in txn.cursor(db=self._db).iternext(values=False)}

    def get(self, txn: Transaction, stream_id: int, version: int) -> bytes | None:
        raw = txn.get(_STREAM_VERSION.pack(stream_id, version), db=self._db)
        return None if raw is None else bytes(raw)

    def delete_stream(self, txn: Transaction, stream_id: int) -> None:
        """Drop every snapshot of a stream."""
        cursor = txn.cursor(db=self._db)
        if not cursor.set_range(_STREAM_VERSION.pack(stream_id, 0)):
            return
        while _STREAM_VERSION.unpack(cursor.key())[0] == stream_id:
            if not cursor.delete() or not cursor.key():
                break

    def count(self, txn: Transaction) -> int:
        return txn.stat(self._db)["entries"]

    def clear(self, txn: Transaction) -> None:
        txn.drop(self._db, delete=False)
