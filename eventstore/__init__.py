"""An event-sourced, append-only store of AI-assistant conversation sessions on LMDB.

Every change is an immutable event with a global position, a per-session
version and a time; read models folded from those events answer the queries.
The public API is re-exported here; the machinery lives in private modules.
"""

from ._errors import (
    EventStoreError,
    IncompatibleStore,
    InvalidArgument,
    InvalidMessage,
    InvalidSessionKey,
    StoreClosed,
    StoreCorrupted,
    ReplicationMismatch,
    SourceChanged,
    StoreBusy,
    StoreNotFound,
    StoreReadOnly,
    StoreInaccessible,
    StoreFull,
    StoreUsedAfterFork,
    InvalidVersion,
    WrongExpectedVersion,
)
from .storage import Durability
from ._store import DEFAULT_SEARCH_LIMIT, ProjectionCheckpoint, SessionStore, StoreStats
from ._values import (
    MAX_KEY_BYTES,
    ChatMessage,
    SessionMetadata,
    SessionQuery,
    SearchHit,
    SessionState,
    ImportOutcome,
    ImportReceipt,
    SessionView,
    TimestampedMessage,
    VerifyReport,
)
from .events import REDACTED, RecordedEvent

__all__ = [
    "ChatMessage",
    "TimestampedMessage",
    "SessionMetadata",
    "SessionQuery",
    "SearchHit",
    "SessionState",
    "SessionStore",
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
    "EventStoreError",
    "InvalidArgument",
    "InvalidSessionKey",
    "InvalidMessage",
    "StoreCorrupted",
    "IncompatibleStore",
    "StoreClosed",
    "StoreUsedAfterFork",
    "WrongExpectedVersion",
    "StoreFull",
    "StoreBusy",
    "InvalidVersion",
    "SourceChanged",
    "ReplicationMismatch",
    "StoreNotFound",
    "StoreReadOnly",
    "StoreInaccessible",
]
