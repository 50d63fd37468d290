"""The events of a session's life, and the recorded envelope around each one.

An event says *what* changed; ``RecordedEvent`` adds *where and when*: the
global position, the session's version, the time and the hash chain link.
Events are frozen values with no I/O. Each event type has a stable name and a
schema version (see ``EVENT_TYPES``); when a type's fields change, bump its
version and add an upcaster in ``eventstore._codec``.
"""

from __future__ import annotations

import uuid
from collections.abc import Callable, Sequence
from datetime import UTC, datetime
from itertools import repeat
from typing import Any, ClassVar, assert_never, get_args

import attrs

from ._errors import InvalidArgument
from ._values import (
    ChatMessage,
    SessionState,
    TimestampedMessage,
    filled_instances,
    stored_payload_of,
    utc,
)

__all__ = [
    "MessageAppended",
    "messages_appended",
    "LastMessageRemoved",
    "LastMessageReplaced",
    "MessagesCleared",
    "MessagesReplaced",
    "SessionRenamed",
    "SessionStateChanged",
    "SessionDeleted",
    "SessionRestored",
    "SessionRedacted",
    "SessionForked",
    "REDACTED",
    "redacted_message",
    "redact_event",
    "without_creation_time",
    "SessionEvent",
    "RecordedEvent",
    "EVENT_CLASSES",
    "EVENT_TYPES",
]


# Validators: an event that cannot be stored faithfully must not reach the log
# (imports and replication build events directly), and a damaged stored event
# must not decode into a wrong one. Each raises ``InvalidArgument``, so a bad
# event built by a caller is a user mistake like any other.
Validator = Callable[[Any, Any, Any], None]


def _instance_of(*kinds: type, optional: bool = False) -> Validator:
    """A field that holds one of ``kinds`` (``None`` too when ``optional``)."""
    names = " or ".join(kind.__name__ for kind in kinds) + (" or None" if optional else "")

    def check(_instance: Any, attribute: Any, value: Any) -> None:
        if value is None and optional:
            return
        if not isinstance(value, kinds):
            raise InvalidArgument(f"{attribute.name} must be {names}, not {type(value).__name__}")

    return check


def _tuple_of(item: Validator) -> Validator:
    """A tuple whose every item passes ``item``."""

    def check(instance: Any, attribute: Any, value: Any) -> None:
        if not isinstance(value, tuple):
            raise InvalidArgument(f"{attribute.name} must be a tuple, not {type(value).__name__}")
        for element in value:
            item(instance, attribute, element)

    return check


def _count(_instance: Any, attribute: Any, value: Any) -> None:
    if type(value) is not int or value < 0:
        raise InvalidArgument(f"{attribute.name} must be a non-negative int, not {value!r:.60}")


def _non_empty_text(_instance: Any, attribute: Any, value: Any) -> None:
    if not isinstance(value, str) or not value:
        raise InvalidArgument(f"{attribute.name} must be a non-empty str, not {value!r:.60}")


def _rewritten_entry(_instance: Any, attribute: Any, value: Any) -> None:
    if not (isinstance(value, tuple) and len(value) == 2 and type(value[0]) is int and value[0] > 0
            and isinstance(value[1], str)):
        raise InvalidArgument(f"{attribute.name} holds (position, digest) pairs, not {value!r:.60}")


def _in_utc(value: datetime | None) -> datetime | None:
    """An aware time as UTC, so that every read model stores and shows it alike."""
    try:
        return None if value is None else utc(value)
    except OverflowError:  # 9999-12-31T23:59:59-14:00 is past year 9999 in UTC
        raise InvalidArgument(f"{value} is out of range in UTC") from None


def _state_in_utc(value: SessionState | None) -> SessionState | None:
    """A restored run state with the start of its turn in UTC, as its session's other times (the catalog stores
    the time's text: one in another zone would be refused there as damage)."""
    if isinstance(value, SessionState) and value.turn_started_at is not None:  # another type: the validator's
        return SessionState(value.state, value.turn_id, _in_utc(value.turn_started_at))
    return value


def _restored_state(instance: SessionRestored, attribute: Any, value: Any) -> None:
    """A restored run state, or ``None``: its fields are stored as they are, as a ``SessionStateChanged``'s."""
    _optional_state(instance, attribute, value)
    if value is not None:
        _non_empty_text(instance, attrs.fields(SessionState).state, value.state)
        _optional_text(instance, attrs.fields(SessionState).turn_id, value.turn_id)


def _restorable(instance: SessionRestored, _attribute: Any, _value: Any) -> None:
    if not instance.exists and (instance.messages or instance.name is not None or instance.state is not None
                                or instance.created_at is not None):
        raise InvalidArgument("a restore to a session that does not exist carries no messages, name, state or time")
    # A live session always has a creation time: without one, its metadata would have none to give.
    if instance.exists and instance.created_at is None:
        raise InvalidArgument("a restore to a live session carries the time the session was created")


_optional_text = _instance_of(str, optional=True)
_optional_state = _instance_of(SessionState, optional=True)
_message = _instance_of(ChatMessage)


@attrs.frozen
class MessageAppended:
    """A message was added at the end of the session."""

    type_name: ClassVar[str] = "MessageAppended"
    schema_version: ClassVar[int] = 2  # 2: a message may carry a payload

    message: ChatMessage = attrs.field(validator=_message)


_set_appended_message = MessageAppended.__dict__["message"].__set__


def messages_appended(messages: Sequence[ChatMessage]) -> list[MessageAppended]:
    """A ``MessageAppended`` of each message, as the class makes it, its validator's check included.

    When every item is a message (checked in one C pass), the events are built by C-level passes
    (``filled_instances``): a command appends many, and attrs' ``__init__`` runs Python code an event. Otherwise
    the class builds them, and its validator refuses the first item that is not a message."""
    if not all(map(isinstance, messages, repeat(ChatMessage))):
        return [MessageAppended(message) for message in messages]
    return filled_instances(MessageAppended, (_set_appended_message,), len(messages), lambda: (messages,))


@attrs.frozen
class LastMessageRemoved:
    """The last message was removed."""

    type_name: ClassVar[str] = "LastMessageRemoved"
    schema_version: ClassVar[int] = 1


@attrs.frozen
class LastMessageReplaced:
    """The last message was replaced (a streaming update); it keeps its original time."""

    type_name: ClassVar[str] = "LastMessageReplaced"
    schema_version: ClassVar[int] = 2  # 2: a message may carry a payload

    message: ChatMessage = attrs.field(validator=_message)


@attrs.frozen
class MessagesCleared:
    """Every message was removed; the session, its name and its state stay."""

    type_name: ClassVar[str] = "MessagesCleared"
    schema_version: ClassVar[int] = 1

    count: int = attrs.field(validator=_count)


def _times_in_utc(times: Any) -> Any:
    """A tuple of aware times (or ``None``) in UTC; anything else is left for the validator to refuse."""
    if isinstance(times, tuple) and all(isinstance(at, datetime) or at is None for at in times):
        return tuple(map(_in_utc, times))
    return times


def _appended_times(instance: MessagesReplaced, attribute: Any, value: Any) -> None:
    _tuple_of(_instance_of(datetime, optional=True))(instance, attribute, value)
    if len(value) != len(instance.messages):
        raise InvalidArgument(f"{attribute.name} holds one time or None per message")


@attrs.frozen
class MessagesReplaced:
    """The session's messages became exactly ``messages`` (``replace_messages``), creating it if needed.

    A message kept from the list before keeps the time it was appended (``appended``); one that is new there has
    ``None`` and reads as appended by this event.
    """

    type_name: ClassVar[str] = "MessagesReplaced"
    schema_version: ClassVar[int] = 1

    messages: tuple[ChatMessage, ...] = attrs.field(validator=_tuple_of(_message))
    appended: tuple[datetime | None, ...] = attrs.field(converter=_times_in_utc, validator=_appended_times)


@attrs.frozen
class SessionRenamed:
    """The session's human-readable name was set, or cleared (``None``)."""

    type_name: ClassVar[str] = "SessionRenamed"
    schema_version: ClassVar[int] = 1

    name: str | None = attrs.field(validator=_optional_text)


@attrs.frozen
class SessionStateChanged:
    """The session's run state changed; a ``"running"`` state starts its turn at the event's time."""

    type_name: ClassVar[str] = "SessionStateChanged"
    schema_version: ClassVar[int] = 1

    state: str = attrs.field(validator=_non_empty_text)
    turn_id: str | None = attrs.field(default=None, validator=_optional_text)


@attrs.frozen
class SessionDeleted:
    """The session was deleted; its key may start a fresh session later."""

    type_name: ClassVar[str] = "SessionDeleted"
    schema_version: ClassVar[int] = 1

    reason: str | None = attrs.field(default=None, validator=_optional_text)


@attrs.frozen
class SessionRestored:
    """The session was made equal to its state at ``restored_version`` (a deleted session may come back).

    The event carries that whole state, so folding it needs nothing else.
    """

    type_name: ClassVar[str] = "SessionRestored"
    schema_version: ClassVar[int] = 2  # 2: a message may carry a payload

    restored_version: int = attrs.field(validator=_count)
    exists: bool = attrs.field(validator=_instance_of(bool))
    messages: tuple[TimestampedMessage, ...] = attrs.field(validator=_tuple_of(_instance_of(TimestampedMessage)))
    name: str | None = attrs.field(validator=_optional_text)
    state: SessionState | None = attrs.field(converter=_state_in_utc, validator=_restored_state)
    created_at: datetime | None = attrs.field(converter=_in_utc, validator=_restorable)


@attrs.frozen
class SessionRedacted:
    """The content of every message of the session was made unrecoverable, for ``reason``.

    Earlier events keep their place, type and hash; their message content is
    replaced by ``REDACTED``.
    """

    type_name: ClassVar[str] = "SessionRedacted"
    schema_version: ClassVar[int] = 1

    reason: str = attrs.field(validator=_non_empty_text)
    #: (position, SHA-256 hex of the redacted payload) of every event this redaction rewrote:
    #: chained with this event, so that a redacted record cannot be changed unseen.
    rewritten: tuple[tuple[int, str], ...] = attrs.field(default=(), validator=_tuple_of(_rewritten_entry))


def _event_hash(_instance: Any, attribute: Any, value: Any) -> None:
    if not (isinstance(value, str) and len(value) == 64 and all(c in "0123456789abcdef" for c in value)):
        raise InvalidArgument(f"{attribute.name} must be a hex SHA-256, not {value!r:.70}")


def _positive(_instance: Any, attribute: Any, value: Any) -> None:
    if type(value) is not int or value < 1:
        raise InvalidArgument(f"{attribute.name} must be a positive int, not {value!r:.60}")


@attrs.frozen
class SessionForked:
    """The session started as a copy of ``source_key`` as it was at ``source_version`` (``fork``).

    It names the source's event at that version by its hash, and carries what it copied (the messages, with the
    times they were appended there, and the name), so that folding it needs nothing else and later changes to
    the source change nothing here. The source's history is not copied.
    """

    type_name: ClassVar[str] = "SessionForked"
    schema_version: ClassVar[int] = 1

    source_key: str = attrs.field(validator=_non_empty_text)
    source_version: int = attrs.field(validator=_positive)
    source_hash: str = attrs.field(validator=_event_hash)
    messages: tuple[TimestampedMessage, ...] = attrs.field(validator=_tuple_of(_instance_of(TimestampedMessage)))
    name: str | None = attrs.field(validator=_optional_text)


_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)


def without_creation_time(event: SessionRestored) -> SessionRestored:
    """``event`` as a restore to a live session recorded without the session's creation time: no command writes
    one, and building one is refused, but imports and ``replicate`` accepted them before their validator asked
    for it. The codec reads such a record as this, so that it encodes back to its own bytes (its digest and hash
    stay true); the folds of a store give it the creation time (``_folding.RestoredCreationTimes``)."""
    object.__setattr__(event, "created_at", None)  # past the validator, on a copy no one else holds yet
    return event


#: What a redacted message's content reads.
REDACTED = "[redacted]"

SessionEvent = (
    MessageAppended
    | LastMessageRemoved
    | LastMessageReplaced
    | MessagesCleared
    | MessagesReplaced
    | SessionRenamed
    | SessionStateChanged
    | SessionDeleted
    | SessionRestored
    | SessionRedacted
    | SessionForked
)

#: The registry of event types: every event class, in the order of ``SessionEvent``. Derived from the union,
#: so a new event type is registered by adding it there; mypy then names every ``match`` that must handle it.
EVENT_CLASSES: tuple[type[SessionEvent], ...] = get_args(SessionEvent)

#: Every event class by its stored type name.
EVENT_TYPES: dict[str, type[SessionEvent]] = {cls.type_name: cls for cls in EVENT_CLASSES}


@attrs.frozen
class RecordedEvent:
    """An event as the log recorded it.

    Attributes:
        position: global position, 1, 2, 3, ... gap-free in commit order.
        session_key: the session the event belongs to.
        version: the session's version after this event, 1-based; it keeps
            counting across deletion and reuse of the key.
        recorded_at: when the event was recorded (aware UTC; never earlier than
            the event before it).
        event: the typed event.
        event_id: a unique id.
        hash: hex SHA-256 linking this event to the one before it in the log.
        payload_digest: hex SHA-256 of the event's original payload (kept through redaction).
        redacted: whether the event's message content was redacted.
    """

    position: int
    session_key: str
    version: int
    recorded_at: datetime
    event: SessionEvent
    event_id: uuid.UUID
    hash: str
    payload_digest: str = ""
    redacted: bool = False



def redacted_message(message: ChatMessage) -> ChatMessage:
    """The message with its content replaced by ``REDACTED`` and its payload, if it has one, by ``{}``.

    A payload becomes ``{}``, not ``None``, so that the redacted event keeps its schema version (which the
    hash chain covers): messages with payloads are written in a later schema than those without.
    """
    return ChatMessage(message.role, REDACTED, None if stored_payload_of(message) is None else {})


def redact_event(event: SessionEvent) -> SessionEvent:
    """The event with the content and payload of every message it carries redacted (``redacted_message``)."""
    match event:
        case MessageAppended() | LastMessageReplaced():
            return attrs.evolve(event, message=redacted_message(event.message))
        case SessionRestored() if event.exists and event.created_at is None:  # stays as recorded
            messages = tuple(TimestampedMessage(redacted_message(m.message), m.created_at) for m in event.messages)
            return without_creation_time(attrs.evolve(event, messages=messages, created_at=_EPOCH))
        case SessionRestored() | SessionForked():
            messages = tuple(TimestampedMessage(redacted_message(m.message), m.created_at) for m in event.messages)
            return attrs.evolve(event, messages=messages)
        case MessagesReplaced():
            return attrs.evolve(event, messages=tuple(map(redacted_message, event.messages)))
        case (LastMessageRemoved() | MessagesCleared() | SessionRenamed() | SessionStateChanged() | SessionDeleted()
              | SessionRedacted()):
            return event  # no message content
        case _:
            assert_never(event)
