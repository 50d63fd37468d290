"""The codec: typed events and snapshots to bytes and back, through a cattrs schema.

Encoding an event gives a type name, a schema version and JSON payload bytes
(orjson: much faster than ``json``, which matters on every append).
Decoding reverses it, upcasting payloads written by an older schema version one
step at a time. Nothing here touches LMDB, and there is no pickle: stored bytes
only ever become the classes registered here.
"""

from __future__ import annotations

import gc
import threading
from collections.abc import Callable, Iterable, Iterator
from contextlib import AbstractContextManager, contextmanager, nullcontext
from datetime import datetime
from functools import cache
from typing import TYPE_CHECKING, Any, NamedTuple, TypeVar

import orjson

from ._errors import EventStoreError, IncompatibleStore, InvalidArgument, StoreCorrupted
from ._payload import payload_tree, read_payloads_with, stored_payload
from ._time import from_micros, stored_micros, to_micros
from ._values import ChatMessage, TimestampedMessage, stored_payload_of, trusted_message
from .events import (
    EVENT_TYPES,
    LastMessageReplaced,
    MessageAppended,
    SessionEvent,
    SessionRestored,
    without_creation_time,
)

if TYPE_CHECKING:
    from cattrs.preconf.orjson import OrjsonConverter

__all__ = [
    "EncodedEvent", "encode_event", "encode_events", "decode_event", "appended_content", "encode_value", "decode_value",
    "bulk_decoding", "pause_gc_while_decoding", "message_to_json", "message_from_json",
]

T = TypeVar("T")


def _read_payload(stored: bytes) -> Any:
    return orjson.loads(memoryview(stored))  # a view: orjson reads no subclass of bytes (``StoredPayload``)


# A message's payload is decoded on each read of it: orjson's reader takes half the time of the standard library's,
# and reads stored forms exactly as well (they hold no integer past 64 bits and no lone surrogate).
read_payloads_with(_read_payload)

#: Upcasters by (type name, schema version they read): each returns the payload
#: of the next version. Add one here whenever an event type's version is bumped.
UPCASTERS: dict[tuple[str, int], Callable[[dict[str, Any]], dict[str, Any]]] = {
    # Schema 2 lets a message carry a payload (a third item); a schema 1 payload is a schema 2 one without.
    (cls.type_name, 1): lambda data: data for cls in (MessageAppended, LastMessageReplaced, SessionRestored)
}

#: The event types whose schema 2 added message payloads, and whether an event of one carries none: such an
#: event is written as schema 1, byte for byte (and so hash for hash) as before payloads existed, and a store
#: without payloads stays readable by older code.
_PAYLOAD_FREE: dict[type[SessionEvent], Callable[[Any], bool]] = {
    MessageAppended: lambda event: stored_payload_of(event.message) is None,
    LastMessageReplaced: lambda event: stored_payload_of(event.message) is None,
    SessionRestored: lambda event: all(stored_payload_of(row.message) is None for row in event.messages),
}


@cache
def _converter() -> OrjsonConverter:
    """The cattrs converter, built on first use: importing cattrs and building the converter is a large part
    of importing the package, which processes that never encode or decode would pay for nothing."""
    from cattrs.preconf.orjson import make_converter

    converter = make_converter()
    # Times are stored as integer microseconds: compact, and exact to the datetime's resolution.
    converter.register_unstructure_hook(datetime, to_micros)
    # A message is a row [role, content], with its payload's stored JSON as a third item when it has one.
    converter.register_unstructure_hook(ChatMessage, lambda m: _message_row(m, [m.role, m.content]))
    # Stored messages were validated when written; decoding checks only their types.
    converter.register_structure_hook(ChatMessage, lambda row, _: _stored_message(row, 2))
    # Restored sessions carry thousands of messages: store each as a compact row, [role, content, µs(, payload)].
    converter.register_unstructure_hook(
        TimestampedMessage,
        lambda m: _message_row(m.message, [m.message.role, m.message.content, to_micros(m.created_at)]),
    )
    converter.register_structure_hook(
        TimestampedMessage, lambda row, _: TimestampedMessage(_stored_message(row, 3), _micros(row[2]))
    )
    for kind in (str, int, bool):
        converter.register_structure_hook(kind, _exactly(kind))
    converter.register_structure_hook(datetime, lambda value, _: _micros(value))
    return converter


@cache
def _undecodable() -> tuple[type[Exception], ...]:
    """What a payload that does not match its schema raises (cattrs' own errors are imported with the converter)."""
    from cattrs.errors import BaseValidationError

    return orjson.JSONDecodeError, BaseValidationError, EventStoreError, TypeError, ValueError, KeyError


def _exactly(kind: type) -> Callable[[Any, Any], Any]:
    """A structure hook that accepts only ``kind`` itself: cattrs would turn 5 into "5" and "no" into True,
    making damaged bytes decode to a wrong answer instead of failing."""

    def structure(value: Any, _: Any) -> Any:
        if type(value) is not kind:
            raise TypeError(f"expected {kind.__name__}, found {type(value).__name__}")
        return value

    return structure


def _message_row(message: ChatMessage, row: list[Any]) -> list[Any]:
    payload = stored_payload_of(message)
    if payload is not None:
        # The value, written again by orjson: an event's bytes are orjson's throughout, so that exports, which
        # read and write events with orjson, give back the bytes their digests were taken of.
        row.append(orjson.loads(bytes(payload)))
    return row


def _stored_message(row: Any, fields: int) -> ChatMessage:
    """The message of a stored row of ``fields`` items, or of one more: its payload."""
    if type(row) is not list or len(row) not in (fields, fields + 1):
        raise TypeError(f"a stored message is not a row of {fields} or {fields + 1} items")
    payload = stored_payload(row[fields]) if len(row) > fields else None
    return trusted_message(row[0], row[1], payload)


def message_to_json(message: ChatMessage) -> list[Any]:
    """A message as a JSON value, ``[role, content]`` and its payload's stored form if it has one (for a
    command's answer kept with its idempotency key)."""
    payload = stored_payload_of(message)
    return [message.role, message.content] + ([] if payload is None else [payload_tree(payload)])


def message_from_json(row: Any) -> ChatMessage:
    """The message ``message_to_json`` gave.

    Raises:
        StoreCorrupted: ``row`` is not such a value.
    """
    try:
        return _stored_message(row, 2)
    except (TypeError, IndexError) as exc:
        raise StoreCorrupted(f"a stored message does not decode: {exc}") from None


def _micros(value: Any) -> datetime:
    return from_micros(stored_micros(value))


class EncodedEvent(NamedTuple):
    """An event in its stored form: what the log keeps, without knowing the event classes. A tuple: every
    append and read of an event builds one."""

    type_name: str
    schema_version: int
    payload: bytes


#: Builds an ``EncodedEvent`` from a tuple in C, without the Python ``__new__`` a named tuple's call runs.
_new_encoded = tuple.__new__


def encode_event(event: SessionEvent) -> EncodedEvent:
    """Encode a typed event."""
    return encode_events((event,))[0]


def encode_events(events: Iterable[SessionEvent]) -> list[EncodedEvent]:
    """Encode typed events (a command's: a run of appends in one loop, with no Python call a message but its
    payload's look-up)."""
    encoded = []
    for event in events:
        if not isinstance(event, (MessageAppended, LastMessageReplaced)):
            encoded.append(converted_event(event))
            continue
        # A message event: the object the converter makes, built directly (its dispatch costs more than orjson's
        # encoding of a short message).
        message = event.message
        if stored_payload_of(message) is None:
            encoded.append(_new_encoded(EncodedEvent, (event.type_name, 1, orjson.dumps(
                {"message": [message.role, message.content]}))))
        else:
            encoded.append(_new_encoded(EncodedEvent, (event.type_name, event.schema_version, orjson.dumps(
                {"message": _message_row(message, [message.role, message.content])}))))
    return encoded


def converted_event(event: SessionEvent) -> EncodedEvent:
    """Encode a typed event through the cattrs schema (what ``encode_event`` does for all but the message
    events it builds directly, and the same bytes for those)."""
    payload = orjson.dumps(_converter().unstructure(event))
    cls = type(event)
    payload_free = _PAYLOAD_FREE.get(cls)
    return EncodedEvent(cls.type_name, 1 if payload_free and payload_free(event) else cls.schema_version, payload)


def decode_event(encoded: EncodedEvent) -> SessionEvent:
    """Decode an event, upcasting an older schema version.

    Raises:
        IncompatibleStore: an unknown type or a schema version newer than this code.
        StoreCorrupted: the payload does not match the schema.
    """
    cls = EVENT_TYPES.get(encoded.type_name)
    if cls is None:
        raise IncompatibleStore(f"unknown event type {encoded.type_name!r}")
    version = encoded.schema_version
    if version > cls.schema_version:
        raise IncompatibleStore(
            f"{encoded.type_name} schema version {version} is newer than this code knows "
            f"({cls.schema_version}); upgrade the eventstore package"
        )
    try:
        data = orjson.loads(encoded.payload)
        while version < cls.schema_version:
            upcast = UPCASTERS.get((encoded.type_name, version))
            if upcast is None:
                raise ValueError(f"its schema version {version} is one no version of eventstore wrote")
            data = upcast(data)
            version += 1
        event: SessionEvent = (_restore_without_creation_time(data) if cls is SessionRestored
                               and type(data) is dict and data.get("exists") is True and data.get("created_at") is None
                               else _converter().structure(data, cls))
    except _undecodable() as exc:
        raise StoreCorrupted(f"{encoded.type_name} payload does not decode: {_why(exc)}") from None
    return event


def _restore_without_creation_time(data: dict[str, Any]) -> SessionRestored:
    """A restore to a live session recorded without the session's creation time, read as recorded
    (``events.without_creation_time``), every other field checked."""
    return without_creation_time(_converter().structure({**data, "created_at": 0}, SessionRestored))


def _why(exc: BaseException) -> BaseException:
    """The error that says what is wrong: cattrs wraps a field's (a validator's refusal, a wrong type) in groups
    that name only the class ("While structuring SessionRestored")."""
    while isinstance(exc, BaseExceptionGroup) and exc.exceptions:
        exc = exc.exceptions[0]
    return exc


#: ``MessageAppended.schema_version`` as a module's name: ``appended_content`` reads it a message, and a class
#: attribute is looked up through its class each time.
_APPENDED_SCHEMA = MessageAppended.schema_version


def appended_content(payload: bytes, schema_version: int) -> str | None:
    """The content of a ``MessageAppended`` payload (either schema) whose message carries no payload of its own, read
    without building the event (indexing reads millions); ``None`` for anything else (a schema newer than this
    code's among them), which ``decode_event`` decodes (or says what is wrong with). Accepts only what
    ``decode_event`` accepts."""
    if schema_version > _APPENDED_SCHEMA:
        return None
    try:
        data = orjson.loads(payload)
    except orjson.JSONDecodeError:
        return None
    row = data.get("message") if type(data) is dict and len(data) == 1 else None
    if type(row) is not list or len(row) != 2:
        return None
    role, content = row
    return content if type(role) is str and role and type(content) is str else None


def encode_value(value: Any) -> bytes:
    """Encode any registered attrs value (a snapshot, a read-model record) as JSON bytes."""
    return orjson.dumps(_converter().unstructure(value))


def decode_value(data: bytes, cls: type[T]) -> T:
    """Decode bytes made by ``encode_value`` as ``cls``.

    Raises:
        StoreCorrupted: the bytes do not match the schema.
    """
    try:
        return _converter().structure(orjson.loads(data), cls)
    except _undecodable() as exc:
        raise StoreCorrupted(f"{cls.__name__} does not decode: {_why(exc)}") from None


class _CollectorPause:
    """Whether the host opted in, how many threads are inside a pause, and whether the collector was on
    when the first came in."""

    lock = threading.Lock()
    wanted = False
    depth = 0
    was_enabled = False


def pause_gc_while_decoding(enabled: bool) -> bool:
    """Opt in (or back out) to pausing Python's cyclic garbage collector while the store decodes in bulk; off by
    default.

    It covers loads of long sessions, listings' rows, and each catch-up and
    rebuild of the search index from start to end (``catch_up``,
    ``rebuild_projections``, a rebuild on open, and the catch-up a search
    runs first when the index is behind). What they build holds no reference
    cycles, so the collections their allocations trigger free nothing, yet
    they are a noticeable share of a long load (``benchmarks/bench_gc_pause.py``
    measures it) or catch-up (``benchmarks/index_floor.py --pause-gc``). The
    collector is process-wide, so the pause is: while one thread decodes or
    catches up, other threads see it off. That is the host's call to make,
    hence opt-in. Threads share one pause: the first in turns the collector
    off, the last out turns it back on if it was on before the first came in.
    A host that opts in should not turn the collector on or off itself while
    loads run. Returns the previous setting.

    Raises:
        InvalidArgument: ``enabled`` is not a bool.
    """
    if not isinstance(enabled, bool):
        raise InvalidArgument(f"enabled must be a bool, not {enabled!r:.60}")
    with _CollectorPause.lock:
        previous, _CollectorPause.wanted = _CollectorPause.wanted, enabled
    return previous


def bulk_decoding() -> AbstractContextManager[None]:
    """Around a decode that builds thousands of objects: pauses the collector if the host opted in
    (``pause_gc_while_decoding``), else changes nothing. Reference counting frees memory as usual."""
    # Read without the lock (the pause checks again under it): a short load is a few µs, and taking the
    # lock and a generator's context manager when nothing is to pause cost a µs or more of them.
    return _paused_decoding() if _CollectorPause.wanted else _NOT_PAUSED


_NOT_PAUSED = nullcontext()


@contextmanager
def _paused_decoding() -> Iterator[None]:
    pause = _CollectorPause
    with pause.lock:
        paused = pause.wanted  # this call undoes what it did, even if the setting changes meanwhile
        if paused:
            if pause.depth == 0:
                pause.was_enabled = gc.isenabled()
                gc.disable()
            pause.depth += 1
    try:
        yield
    finally:
        if paused:
            with pause.lock:
                pause.depth -= 1
                if pause.depth == 0 and pause.was_enabled:
                    gc.enable()
