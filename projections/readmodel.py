"""What every LMDB read model offers, and where each records how far it has read the log.

A read model is a fold plus the persistence of its state in its own named
databases. The facade applies it inline, in the command's write transaction,
and saves its checkpoint (the global position it has applied, and the version
of its code) in that same transaction, so a read model can never be ahead of,
or silently behind, the log.

A deferred read model (``inline = False``, the search index) is not applied
by commands: its checkpoint may lag the log, and the facade catches it up
(writing data and checkpoint in one transaction) before reading it. A read
model whose checkpoint records another code version is rebuilt on open.
"""

from __future__ import annotations

import struct
from typing import Mapping, Protocol, Sequence

import lmdb

from .session import Change, SessionSnapshot

__all__ = ["ReadModel", "Checkpoints", "Checkpoint"]

_CHECKPOINT = struct.Struct(">QQ")  # code version, position
Checkpoint = tuple[int, int]


class ReadModel(Protocol):
    """An inline projection persisted in LMDB."""

    #: Stable name, used for checkpoints and ``rebuild_projections(names=...)``.
    name: str
    #: Bumped whenever the stored form or the fold changes: the model is then rebuilt on open.
    code_version: int

    def apply(self, txn: lmdb.Transaction, stream_id: int, events: Sequence[Change]) -> None:
        """Fold recorded events of one session, in order, into the stored state.

        A command's events come in one call, so a batch can read and write its state once.
        """

    def clear(self, txn: lmdb.Transaction) -> None:
        """Drop all stored state."""

    def check(self, txn: lmdb.Transaction, sessions: Mapping[int, SessionSnapshot]) -> list[str]:
        """Where the stored state differs from ``sessions`` (stream id → session folded from the log)."""


class Checkpoints:
    """Per read model: the code version it was built with and the last position it applied."""

    def __init__(self, open_db: "OpenDb") -> None:
        self._db = open_db(b"projections.checkpoints")

    def get(self, txn: lmdb.Transaction, name: str) -> Checkpoint | None:
        raw = txn.get(name.encode(), db=self._db)
        return None if raw is None else _CHECKPOINT.unpack(raw)

    def put(self, txn: lmdb.Transaction, name: str, code_version: int, position: int) -> None:
        txn.put(name.encode(), _CHECKPOINT.pack(code_version, position), db=self._db)

    def all(self, txn: lmdb.Transaction) -> dict[str, Checkpoint]:
        return {bytes(k).decode(): _CHECKPOINT.unpack(v) for k, v in txn.cursor(db=self._db)}


class OpenDb(Protocol):
    def __call__(self, name: bytes) -> lmdb._Database: ...
