"""An event-sourced, append-only store of AI-assistant conversation sessions on LMDB.

Every change is an immutable event with a global position, a per-session
version and a time; read models folded from those events answer the queries.
The public API is re-exported here; the machinery lives in private modules.

Names are imported on first use (PEP 562): ``import eventstore``, or importing
a pure module such as ``eventstore.events``, does not load LMDB, the codec or
the read models.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from ._codec import pause_gc_while_decoding
    from ._errors import (
        DictionaryDamaged,
        EventStoreError,
        FeedDiverged,
        IdempotencyKeyReused,
        IncompatibleStore,
        InvalidArgument,
        InvalidMessage,
        InvalidSessionKey,
        InvalidVersion,
        ReplicationMismatch,
        SessionExists,
        SessionNotFound,
        SourceChanged,
        StoreBusy,
        StoreClosed,
        StoreCorrupted,
        StoreFull,
        StoreGrowthBlocked,
        StoreInaccessible,
        StoreNotFound,
        StoreReadOnly,
        StoreUnavailable,
        StoreUsedAfterFork,
        TransactionError,
        WrongExpectedVersion,
    )
    from ._store import DEFAULT_SEARCH_LIMIT, ProjectionCheckpoint, SessionStore, StoreStats
    from ._values import (
        MAX_KEY_BYTES,
        ChatMessage,
        ImportOutcome,
        ImportReceipt,
        SearchHit,
        SessionMetadata,
        SessionPage,
        SessionQuery,
        SessionState,
        SessionView,
        TimestampedMessage,
        VerifyReport,
    )
    from .aio import AsyncSessionStore
    from .events import REDACTED, RecordedEvent
    from .storage import Durability

#: Each public name and the private module that defines it.
_HOMES: dict[str, str] = {
    **dict.fromkeys(
        ["ChatMessage", "TimestampedMessage", "SessionMetadata", "SessionQuery", "SearchHit", "SessionState",
         "SessionView", "VerifyReport", "ImportReceipt", "ImportOutcome", "MAX_KEY_BYTES"],
        "._values",
    ),
    **dict.fromkeys(["SessionStore", "StoreStats", "ProjectionCheckpoint", "DEFAULT_SEARCH_LIMIT"], "._store"),
    "SessionPage": "._values",
    "AsyncSessionStore": ".aio",
    "Durability": ".storage",
    "RecordedEvent": ".events",
    "REDACTED": ".events",
    "pause_gc_while_decoding": "._codec",
    **dict.fromkeys(["SessionExists", "SessionNotFound"], "._errors"),
    **dict.fromkeys(
        ["EventStoreError", "IdempotencyKeyReused", "InvalidArgument", "InvalidSessionKey", "InvalidMessage",
         "StoreCorrupted",
         "IncompatibleStore", "StoreClosed", "StoreUsedAfterFork", "WrongExpectedVersion", "StoreFull", "StoreBusy",
         "InvalidVersion", "SourceChanged", "ReplicationMismatch", "StoreNotFound", "StoreReadOnly",
         "StoreInaccessible", "TransactionError"],
        "._errors",
    ),
    "StoreUnavailable": "._errors",
    "FeedDiverged": "._errors",
    "DictionaryDamaged": "._errors",
    "StoreGrowthBlocked": "._errors",
}

__all__ = [
    "ChatMessage",
    "TimestampedMessage",
    "SessionMetadata",
    "SessionPage",
    "SessionQuery",
    "SearchHit",
    "SessionState",
    "SessionStore",
    "AsyncSessionStore",
    "Durability",
    "StoreStats",
    "ProjectionCheckpoint",
    "RecordedEvent",
    "SessionView",
    "VerifyReport",
    "REDACTED",
    "ImportReceipt",
    "ImportOutcome",
    "MAX_KEY_BYTES",
    "DEFAULT_SEARCH_LIMIT",
    "pause_gc_while_decoding",
    "EventStoreError",
    "InvalidArgument",
    "InvalidSessionKey",
    "InvalidMessage",
    "StoreCorrupted",
    "IncompatibleStore",
    "StoreClosed",
    "StoreUsedAfterFork",
    "WrongExpectedVersion",
    "IdempotencyKeyReused",
    "StoreFull",
    "StoreBusy",
    "StoreGrowthBlocked",
    "InvalidVersion",
    "SourceChanged",
    "ReplicationMismatch",
    "StoreNotFound",
    "StoreReadOnly",
    "StoreInaccessible",
    "TransactionError",
    "SessionExists",
    "SessionNotFound",
    "StoreUnavailable",
    "FeedDiverged",
    "DictionaryDamaged",
]


def __getattr__(name: str) -> Any:
    home = _HOMES.get(name)
    if home is None:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    value = getattr(importlib.import_module(home, __name__), name)
    globals()[name] = value  # later lookups skip this function
    return value


def __dir__() -> list[str]:
    return sorted({*globals(), *__all__})
