"""Facade bookkeeping committed with the events it guards: idempotency records and import receipts.

Neither is derived from the log, so neither is a projection; both are written
in the command's own transaction, so they can never disagree with the events.
"""

from __future__ import annotations

import hashlib
from typing import Any

import orjson

from ._codec import decode_value, encode_value
from .storage import ReadTransaction, Storage, WriteTransaction
from ._values import ImportReceipt

__all__ = ["IdempotencyRecords", "ImportReceipts"]


class IdempotencyRecords:
    """The result of every command given an idempotency key, by session key and idempotency key."""

    def __init__(self, storage: Storage) -> None:
        self._db = storage.space("facade.idempotency")

    @staticmethod
    def _key(session_key: str, idempotency_key: str) -> bytes:
        return hashlib.sha256(orjson.dumps([session_key, idempotency_key])).digest()

    def get(self, txn: ReadTransaction, session_key: str, idempotency_key: str) -> Any | None:
        raw = txn.get(self._db, self._key(session_key, idempotency_key))
        return None if raw is None else orjson.loads(raw)

    def put(self, txn: WriteTransaction, session_key: str, idempotency_key: str, outcome: Any) -> None:
        txn.put(self._db, self._key(session_key, idempotency_key), orjson.dumps(outcome))


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
