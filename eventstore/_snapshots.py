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
from collections.abc import Iterator

from ._errors import StoreCorrupted, unpack_stored
from .storage import ReadTransaction, Storage, WriteTransaction

__all__ = ["SnapshotStore"]

_STREAM_VERSION = struct.Struct(">QQ")
_STREAM = struct.Struct(">Q")
_DIGEST_BYTES = 16


class SnapshotStore:
    """Snapshots keyed by stream id and the version they fold up to."""

    def __init__(self, storage: Storage) -> None:
        self._db = storage.space("snapshots")
        self._blobs = storage.space("snapshots.blobs")

    def put_blob(self, txn: WriteTransaction, stream_id: int, data: bytes) -> bytes:
        """Store ``data`` once per stream; return its digest."""
        digest = hashlib.sha256(data).digest()[:_DIGEST_BYTES]
        txn.insert(self._blobs, _STREAM.pack(stream_id) + digest, data)
        return digest

    def get_blob(self, txn: ReadTransaction, stream_id: int, digest: bytes) -> bytes:
        data = txn.get(self._blobs, _STREAM.pack(stream_id) + digest)
        if data is None:
            raise StoreCorrupted(f"snapshot blob {digest.hex()} of stream {stream_id} is missing")
        return data

    def put(self, txn: WriteTransaction, stream_id: int, version: int, data: bytes) -> None:
        txn.put(self._db, _STREAM_VERSION.pack(stream_id, version), data)

    def has(self, txn: ReadTransaction, stream_id: int, version: int) -> bool:
        return txn.get(self._db, _STREAM_VERSION.pack(stream_id, version)) is not None

    def latest(self, txn: ReadTransaction, stream_id: int, up_to_version: int) -> tuple[int, bytes] | None:
        """The newest snapshot of the stream at or below ``up_to_version``: (version, bytes)."""
        found = txn.before(self._db, _STREAM_VERSION.pack(stream_id, up_to_version + 1))
        if found is None:
            return None
        found_stream, version = unpack_stored(_STREAM_VERSION, found[0], "a snapshot key")
        if found_stream != stream_id:
            return None
        return version, bytes(found[1])

    def stream_versions(self, txn: ReadTransaction, stream_id: int) -> list[int]:
        """The versions of the stream's snapshots, in order."""
        found = []
        for key in txn.scan_keys(self._db, _STREAM.pack(stream_id)):
            found_stream, version = unpack_stored(_STREAM_VERSION, key, "a snapshot key")
            if found_stream != stream_id:
                break
            found.append(version)
        return found

    def versions(self, txn: ReadTransaction) -> set[tuple[int, int]]:
        """(stream id, version) of every snapshot."""
        return {unpack_stored(_STREAM_VERSION, key, "a snapshot key") for key in txn.scan_keys(self._db)}

    def get(self, txn: ReadTransaction, stream_id: int, version: int) -> bytes | None:
        raw = txn.get(self._db, _STREAM_VERSION.pack(stream_id, version))
        return None if raw is None else bytes(raw)

    def delete_stream(self, txn: WriteTransaction, stream_id: int) -> None:
        """Drop every snapshot and blob of a stream."""
        for space in (self._db, self._blobs):
            txn.delete_range(space, _STREAM.pack(stream_id), _STREAM.pack(stream_id + 1))

    def count(self, txn: ReadTransaction) -> int:
        return txn.count(self._db)

    def blob_keys(self, txn: ReadTransaction) -> Iterator[tuple[int, bytes]]:
        """(stream id, digest) of every stored blob."""
        for key in txn.scan_keys(self._blobs):
            yield unpack_stored(_STREAM, key[:_STREAM.size], "a snapshot blob key")[0], bytes(key[_STREAM.size:])

    def clear(self, txn: WriteTransaction) -> None:
        txn.clear(self._db)
        txn.clear(self._blobs)
