"""What every stored read model offers, and where each records how far it has read the log.

A read model is a fold plus the persistence of its state in its own key
spaces. The facade applies it inline, in the command's write transaction,
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
from collections.abc import Mapping, Sequence
from typing import Protocol, runtime_checkable

from eventstore.storage import ReadTransaction, Space, WriteTransaction

from .session import Change, SessionSnapshot

__all__ = ["ReadModel", "UpgradableReadModel", "Checkpoints", "Checkpoint", "OpenSpace"]

_CHECKPOINT = struct.Struct(">QQ")  # code version, position
Checkpoint = tuple[int, int]


class ReadModel(Protocol):
    """An inline projection persisted in the store's key spaces."""

    #: Stable name, used for checkpoints and ``rebuild_projections(names=...)``.
    name: str
    #: Bumped whenever the stored form or the fold changes: the model is then rebuilt on open.
    code_version: int

    def apply(self, txn: WriteTransaction, stream_id: int, events: Sequence[Change]) -> None:
        """Fold recorded events of one session, in order, into the stored state.

        A command's events come in one call, so a batch can read and write its state once.
        """

    def clear(self, txn: WriteTransaction) -> None:
        """Drop all stored state."""

    def check(self, txn: ReadTransaction, sessions: Mapping[int, SessionSnapshot]) -> list[str]:
        """Where the stored state differs from ``sessions`` (stream id → session folded from the log)."""


@runtime_checkable
class UpgradableReadModel(ReadModel, Protocol):
    """A read model that can bring the state an older code version stored up to its own, without the log."""

    def upgrade(self, txn: WriteTransaction, from_version: int) -> bool:
        """Convert in place the state that code version ``from_version`` stored (current with the log);
        ``False``, having written nothing, when it cannot: the model is then rebuilt from the log."""


class Checkpoints:
    """Per read model: the code version it was built with and the last position it applied."""

    def __init__(self, open_space: OpenSpace) -> None:
        self._db = open_space("projections.checkpoints")

    def get(self, txn: ReadTransaction, name: str) -> Checkpoint | None:
        """The model's checkpoint, ``None`` if it has none. A damaged one (of another size) reads as built by code
        version 0, which no code is: the model is rebuilt from the log instead of keeping the store from opening."""
        raw = txn.get(self._db, name.encode())
        if raw is None:
            return None
        return _CHECKPOINT.unpack(raw) if len(raw) == _CHECKPOINT.size else (0, 0)

    def put(self, txn: WriteTransaction, name: str, code_version: int, position: int) -> None:
        txn.put(self._db, name.encode(), _CHECKPOINT.pack(code_version, position))

    def delete(self, txn: WriteTransaction, name: str) -> None:
        txn.delete(self._db, name.encode())

    def all(self, txn: ReadTransaction) -> dict[str, Checkpoint]:
        return {bytes(k).decode(errors="replace"): _CHECKPOINT.unpack(v) for k, v in txn.scan(self._db)
                if len(v) == _CHECKPOINT.size}


class OpenSpace(Protocol):
    """``Storage.space``: a read model obtains its key spaces through it."""

    def __call__(self, name: str) -> Space: ...
