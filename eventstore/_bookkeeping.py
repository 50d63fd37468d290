"""Facade bookkeeping committed with the events it guards: idempotency records and import receipts.

Neither is derived from the log, so neither is a projection; both are written
in the command's own transaction, so they can never disagree with the events.
"""

from __future__ import annotations

import hashlib
from typing import Any

import attrs
import orjson

from ._codec import decode_value, encode_value
from ._errors import StoreCorrupted
from ._values import ImportReceipt
from .storage import ReadTransaction, Storage, WriteTransaction

__all__ = ["IdempotencyRecord", "IdempotencyRecords", "ImportReceipts"]


@attrs.frozen
class IdempotencyRecord:
    """What a command given an idempotency key answered, and which call it was.

    ``command`` and ``digest`` (SHA-256 hex of the command's name and canonical
    arguments) are ``None`` in records written before they were kept.
    """

    result: Any
    version: int
    command: str | None = None
    digest: str | None = None


class IdempotencyRecords:
    """The result of every command given an idempotency key, by session key and idempotency key.

    Stored as a JSON object; older stores hold a ``[result, version]`` pair, read as a record without a command.
    """

    def __init__(self, storage: Storage) -> None:
        self._db = storage.space("facade.idempotency")

    @staticmethod
    def _key(session_key: str, idempotency_key: str) -> bytes:
        return hashlib.sha256(orjson.dumps([session_key, idempotency_key])).digest()

    def get(self, txn: ReadTransaction, session_key: str, idempotency_key: str) -> IdempotencyRecord | None:
        raw = txn.get(self._db, self._key(session_key, idempotency_key))
        if raw is None:
            return None
        try:
            stored = orjson.loads(raw)
            if isinstance(stored, list):
                result, version = stored
                return IdempotencyRecord(result, version)
            return IdempotencyRecord(stored["result"], stored["version"], stored["command"], stored["digest"])
        except (orjson.JSONDecodeError, ValueError, TypeError, KeyError):
            raise StoreCorrupted(f"the idempotency record of session {session_key!r:.80} does not decode") from None

    def put(self, txn: WriteTransaction, session_key: str, idempotency_key: str, record: IdempotencyRecord) -> None:
        txn.put(self._db, self._key(session_key, idempotency_key), orjson.dumps(attrs.asdict(record)))


class ImportReceipts:
    """One receipt per imported source, so that importing it again adds nothing."""

    def __init__(self, storage: Storage) -> None:
        self._db = storage.space("facade.imports")

    @staticmethod
    def _key(source: str) -> bytes:
        return hashlib.sha256(source.encode()).digest()  # sources may be longer than an LMDB key

    def get(self, txn: ReadTransaction, source: str) -> ImportReceipt | None:
        raw = txn.get(self._db, self._key(source))
        return None if raw is None else decode_value(raw, ImportReceipt)

    def put(self, txn: WriteTransaction, receipt: ImportReceipt) -> None:
        txn.put(self._db, self._key(receipt.source), encode_value(receipt))

    def all(self, txn: ReadTransaction) -> list[ImportReceipt]:
        return [decode_value(raw, ImportReceipt) for _, raw in txn.scan(self._db)]
