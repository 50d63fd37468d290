"""The snapshot store: opaque bytes per (stream, version), kept beside the log, never in it.

Beside each snapshot record, the store keeps content-addressed blobs per
stream: consecutive snapshots of a long session share the blobs of its
unchanged messages, so snapshot space grows with the messages, not with
messages × snapshots. A snapshot is derived data: dropping every snapshot
loses nothing, it only makes folding a session slower.
"""

from __future__ import annotations

import hashlib
import struct

from ._environment import Environment, Transaction
from ._errors import StoreCorrupted

__all__ = ["SnapshotStore"]

_STREAM_VERSION = struct.Struct(">QQ")
_STREAM = struct.Struct(">Q")
_DIGEST_BYTES = 16


class SnapshotStore:
    """Snapshots keyed by stream id and the version they fold up to."""

    def __init__(self, environment: Environment) -> None:
        self._db = environment.open_db(b"snapshots")
        self._blobs = environment.open_db(b"snapshots.blobs")

    def put_blob(self, txn: Transaction, stream_id: int, data: bytes) -> bytes:
        """Store ``data`` once per stream; return its digest."""
        digest = hashlib.sha256(data).digest()[:_DIGEST_BYTES]
        txn.put(_STREAM.pack(stream_id) + digest, data, db=self._blobs, overwrite=False)
        return digest

    def get_blob(self, txn: Transaction, stream_id: int, digest: bytes) -> bytes:
        data = txn.get(_STREAM.pack(stream_id) + digest, db=self._blobs)
        if data is None:
            raise StoreCorrupted(f"snapshot blob {digest.hex()} of stream {stream_id} is missing")
        return data

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
        """Drop every snapshot and blob of a stream."""
        prefix = _STREAM.pack(stream_id)
        for db in (self._db, self._blobs):
            cursor = txn.cursor(db=db)
            if not cursor.set_range(prefix):
                continue
            while cursor.key()[:_STREAM.size] == prefix:
                if not cursor.delete() or not cursor.key():
                    break

    def count(self, txn: Transaction) -> int:
        return txn.stat(self._db)["entries"]

    def clear(self, txn: Transaction) -> None:
        txn.drop(self._db, delete=False)
        txn.drop(self._blobs, delete=False)
