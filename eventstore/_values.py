"""The value types of the public API: messages, metadata, state and queries.

They are frozen, slotted attrs classes with no I/O. Datetimes are always
timezone-aware UTC.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Callable, Iterable, Mapping, Sequence
from datetime import UTC, datetime
from itertools import repeat
from operator import attrgetter
from typing import TYPE_CHECKING, Any, TypeVar

import attrs

from ._errors import InvalidArgument, InvalidMessage, InvalidSessionKey, StoreCorrupted
from ._payload import StoredPayload, freeze_payload, thaw_payload
from ._time import MAX_MICROS, MIN_MICROS, aware_micros
from ._time import from_micros as _from_micros

__all__ = [
    "ChatMessage",
    "TimestampedMessage",
    "SessionMetadata",
    "SessionPage",
    "SessionState",
    "SessionQuery",
    "SearchHit",
    "SessionView",
    "VerifyReport",
    "ImportReceipt",
    "ImportOutcome",
    "MAX_KEY_BYTES",
    "validate_key",
    "validate_text",
]

#: Longest accepted session key, in UTF-8 bytes.
MAX_KEY_BYTES = 1024


def validate_text(value: object, what: str, error: type[InvalidArgument] = InvalidArgument) -> str:
    """Return ``value`` if it is a ``str`` that encodes to UTF-8, else raise ``error``."""
    if not isinstance(value, str):
        raise error(f"{what} must be a str, not {type(value).__name__}")
    try:
        value.encode("utf-8")
    except UnicodeEncodeError as exc:
        # Lone surrogates cannot be stored as UTF-8; refuse them up front.
        raise error(f"{what} is not valid Unicode: {exc.reason}") from None
    return value


def validate_key(key: object) -> str:
    """Check a session key and return it.

    Raises:
        InvalidSessionKey: empty, containing NUL, over ``MAX_KEY_BYTES`` UTF-8 bytes, not a str.
    """
    validate_text(key, "session key", InvalidSessionKey)
    assert isinstance(key, str)
    if not key:
        raise InvalidSessionKey("session key must not be empty")
    if "\x00" in key:
        raise InvalidSessionKey("session key must not contain NUL")
    size = len(key.encode("utf-8"))
    if size > MAX_KEY_BYTES:
        raise InvalidSessionKey(f"session key is {size} UTF-8 bytes; the limit is {MAX_KEY_BYTES}")
    return key


# attrs types a field by its validator's ``value``, so that says ``str``; the checks still take any object.
def _check_role(_instance: object, _attribute: attrs.Attribute[str], value: str) -> None:
    validate_text(value, "message role", InvalidMessage)
    if not value:
        raise InvalidMessage("message role must not be empty")


def _check_content(_instance: object, _attribute: attrs.Attribute[str], value: str) -> None:
    validate_text(value, "message content", InvalidMessage)


@attrs.frozen(repr=False)
class ChatMessage:
    """One message of a conversation, equal by value.

    Args:
        role: who spoke: ``"user"``, ``"assistant"``, ``"system"``, ``"tool"`` or any non-empty str.
        content: the text, kept byte for byte.
        payload: structured data beside the text (a framework's item, say): a JSON object (str keys; values
            ``None``, bool, int, float, str, list, dict) kept exactly, strings that are not valid Unicode
            included. It is copied when the message is made; reading it gives a fresh copy each time.
            Equal payloads are equal as stored: ``1`` and ``1.0``, or two orders of the same keys, differ.

    Raises:
        InvalidMessage: a non-str or empty role, a non-str content, a payload that is not such a JSON object
            (NaN, a cycle, deeper than 64 levels, over 16 MiB stored: see ``eventstore._payload``).
    """

    role: str = attrs.field(validator=_check_role)
    content: str = attrs.field(validator=_check_content)
    # Held in its stored form (immutable JSON bytes); ``payload`` decodes a fresh object on each read.
    _stored_payload: StoredPayload | None = attrs.field(default=None, alias="payload",
                                                        converter=freeze_payload)

    @property
    def payload(self) -> dict[str, Any] | None:
        """The payload (a fresh copy: changing it changes no message), or ``None``."""
        stored = self._stored_payload
        return None if stored is None else thaw_payload(stored)

    def __repr__(self) -> str:
        payload = "" if self._stored_payload is None else f", payload={self.payload!r}"
        return f"ChatMessage(role={self.role!r}, content={self.content!r}{payload})"

    if not TYPE_CHECKING:  # hidden from the checker, which would otherwise accept any attribute name
        def __getattr__(self, name: str) -> Any:
            # Loads build messages in bulk (``trusted_messages``) and leave the payload slot of those without
            # one unset: one more pass to set it would cost about a tenth of a load. Unset reads as no payload.
            if name == "_stored_payload":
                return None
            raise AttributeError(f"'ChatMessage' object has no attribute {name!r}")

    @classmethod
    def user(cls, text: str, payload: Mapping[str, Any] | None = None) -> ChatMessage:
        """A message from the user."""
        return cls("user", text, payload)

    @classmethod
    def assistant(cls, text: str, payload: Mapping[str, Any] | None = None) -> ChatMessage:
        """A message from the assistant."""
        return cls("assistant", text, payload)

    @classmethod
    def system(cls, text: str, payload: Mapping[str, Any] | None = None) -> ChatMessage:
        """A system prompt."""
        return cls("system", text, payload)

    @classmethod
    def tool(cls, text: str, payload: Mapping[str, Any] | None = None) -> ChatMessage:
        """A tool result."""
        return cls("tool", text, payload)


_T = TypeVar("_T")
_new = object.__new__
_set_role: Callable[[ChatMessage, str], None] = ChatMessage.__dict__["role"].__set__
_set_content: Callable[[ChatMessage, str], None] = ChatMessage.__dict__["content"].__set__
_set_payload: Callable[[ChatMessage, StoredPayload | None], None] = ChatMessage.__dict__["_stored_payload"].__set__


def filled_instances(cls: type[_T], setters: Sequence[Callable[[_T, Any], None]], count: int,
                     columns: Callable[[], Sequence[Iterable[Any]]]) -> list[_T]:
    """``count`` new instances of the slotted ``cls``, then each field (by its setter) set from its column of
    ``columns()`` by a C-level ``map``: a frozen attrs ``__init__`` runs Python code per instance.

    The instances are made before ``columns`` is called: the collections their allocation sets off then scan
    empty instances, not the decoded columns (listing 100,000 sessions, 15 ms of the collector's CPU, not 45)."""
    made = list(map(_new, repeat(cls, count)))
    for set_field, column in zip(setters, columns(), strict=True):
        deque(map(set_field, made, column), maxlen=0)
    return made


#: The stored form of a message's payload (what events and chunks keep), ``None`` without one: the slot's getter
#: itself, in C (commands and read models take it for each message).
stored_payload_of: Callable[[ChatMessage], StoredPayload | None] = attrgetter("_stored_payload")


def trusted_message(role: Any, content: Any, payload: bytes | None = None) -> ChatMessage:
    """Build a ``ChatMessage`` from stored data, validated when it was written (``payload`` in stored form).

    Loading a long session builds thousands of messages, and the full validators
    would add substantially to the cost of ``load``; a type check still catches damaged data.

    Raises:
        StoreCorrupted: the stored role or content is not a str.
    """
    if type(role) is not str or type(content) is not str or not role:
        raise StoreCorrupted(f"a stored message has role {role!r:.40} and content of type {type(content).__name__}")
    message = _new(ChatMessage)
    _set_role(message, role)
    _set_content(message, content)
    _set_payload(message, None if payload is None else StoredPayload(payload))
    return message


def trusted_messages(roles: Sequence[str], contents: Iterable[str],
                     payloads: Mapping[int, bytes] | None = None) -> list[ChatMessage]:
    """Build many messages from stored columns whose types the caller has checked (non-empty str roles,
    str contents; ``payloads`` in stored form by index), by C-level ``map`` calls: no Python code runs per
    message without a payload."""
    messages = filled_instances(ChatMessage, (_set_role, _set_content), len(roles), lambda: (roles, contents))
    for index, payload in (payloads or {}).items():  # the others' payload slot stays unset: no payload
        _set_payload(messages[index], StoredPayload(payload))
    return messages


@attrs.frozen
class TimestampedMessage:
    """A message together with the time it was appended."""

    message: ChatMessage
    created_at: datetime


@attrs.frozen
class SessionState:
    """The run state of a session.

    Attributes:
        state: ``"idle"``, ``"running"``, ``"error"`` or any non-empty str.
        turn_id: the current or last turn, if the caller named one.
        turn_started_at: when the state became ``"running"``; ``None`` in any other state.
    """

    state: str
    turn_id: str | None = None
    turn_started_at: datetime | None = None


@attrs.frozen
class SessionMetadata:
    """What the store knows about a live session."""

    key: str
    name: str | None
    created_at: datetime
    last_activity: datetime
    message_count: int


_METADATA_SETTERS: tuple[Callable[[SessionMetadata, Any], None], ...] = tuple(
    SessionMetadata.__dict__[field.name].__set__ for field in attrs.fields(SessionMetadata))


def trusted_metadata(count: int, columns: Callable[[], Sequence[Iterable[Any]]]) -> list[SessionMetadata]:
    """``count`` ``SessionMetadata`` from stored columns, one a field in the fields' order, each of ``count``
    values whose types the caller has checked: made by C-level ``map`` calls, as the frozen ``__init__`` also makes
    a bound setter an instance (a second object for the cyclic collector) and a listing builds one a session."""
    return filled_instances(SessionMetadata, _METADATA_SETTERS, count, columns)


@attrs.frozen
class SessionPage:
    """A page of ``SessionStore.list_sessions_page``.

    Attributes:
        sessions: the page's sessions, most recent activity first.
        next_cursor: the ``cursor`` that continues after this page; ``None`` after the last page.
        total: how many live sessions there are (whose key starts with the prefix, if one was given),
            counted in the same read as the page.
    """

    sessions: tuple[SessionMetadata, ...]
    next_cursor: str | None
    total: int


@attrs.frozen
class SessionQuery:
    """A search: ``keyword`` words are OR-ed; at most ``limit`` sessions come back.

    Every query is answered in bounded time: its words count, in order, while
    the terms they match number at most 64 (later words are ignored, never an
    error), a prefix (``word*``) matches at most its 32 most frequent terms,
    and scoring stops at a work budget (see docs/search.md).
    """

    keyword: str | None = None
    limit: int | None = None


@attrs.frozen
class SearchHit:
    """A current message that matched a search (``SessionStore.search_messages``).

    Attributes:
        session_key: the session it belongs to.
        index: its position in ``load(session_key)``.
        message: the message itself.
        score: its relevance (BM25; higher is better).
        snippet: a short excerpt with the matched words in ``[`` ``]``.
    """

    session_key: str
    index: int
    message: ChatMessage
    score: float
    snippet: str


@attrs.frozen
class SessionView:
    """A whole session as it was at one version: what point-in-time reads and replay return.

    Attributes:
        key: the session key.
        version: the session's version (0 before its first event).
        exists: whether the session was live at that version.
        metadata: its metadata then (``None`` if it did not exist).
        name: its name then.
        state: its run state then (``"idle"`` if none was set; ``None`` if it did not exist).
        messages: its messages then, oldest first.
        timestamped: the same messages with the times they were appended.
        message_count: how many messages it has.
    """

    key: str
    version: int
    exists: bool
    metadata: SessionMetadata | None
    name: str | None
    state: SessionState | None
    # (message, µs appended) pairs; the datetimes are only built if asked for. A replay's views share theirs with
    # the step before (``projections.session.SharedEntries``): views compare and hash by the entries they hold.
    _entries: Sequence[tuple[ChatMessage, int]] = attrs.field(repr=False, alias="entries", eq=tuple)

    @property
    def messages(self) -> list[ChatMessage]:
        return [entry[0] for entry in self._entries]

    @property
    def timestamped(self) -> list[TimestampedMessage]:
        return [TimestampedMessage(message, _from_micros(micros)) for message, micros in self._entries]

    @property
    def message_count(self) -> int:
        """How many messages it has, without building the list (a replay step asks at every event)."""
        return len(self._entries)

    def messages_from(self, index: int) -> list[ChatMessage]:
        """Its messages from the ``index``-th (counted from 0) on: the tail an event edited, without copying the
        messages before it."""
        return [entry[0] for entry in self._entries[index:]]


@attrs.frozen
class VerifyReport:
    """What ``SessionStore.verify`` found.

    Attributes:
        ok: no problem found.
        events_checked: how many events of the log were checked.
        problems: one line per problem, naming the position or session.
        damaged: what the problems are in, which says what repairs them: ``"file"`` (the data file's pages) or
            ``"log"`` (the events, their chain and indexes): salvage the events into a new store; a read model's
            name (``"catalog"``, ``"messages"``, ``"search"``; a snapshot counts as ``"messages"``): rebuild it
            from the log; ``"dictionary"``: one stored form of the compression dictionary, the other intact
            (a writable open rewrites it).
    """

    ok: bool
    events_checked: int
    problems: list[str]
    damaged: frozenset[str] = frozenset()


@attrs.frozen
class ImportReceipt:
    """Proof that a source (a file, say) was imported: its name, size and SHA-256, and what it gave.

    Committed with the imported events, so importing the same source again can add nothing.
    """

    source: str
    size: int
    sha256: str
    sessions: int
    events: int


@attrs.frozen
class ImportOutcome:
    """What ``import_sessions`` did: its receipt, the keys it skipped because they exist, and
    whether the source had been imported before (then nothing was written)."""

    receipt: ImportReceipt
    skipped: tuple[str, ...]
    already_imported: bool


def utc(moment: object) -> datetime:
    """Return an aware datetime in UTC, refusing anything else and those whose UTC time no datetime can hold."""
    utc_micros(moment)
    assert isinstance(moment, datetime)  # utc_micros refuses anything else
    return moment.astimezone(UTC)


def utc_micros(moment: object) -> int:
    """``to_micros(utc(moment))``, with ``utc``'s checks but without building the UTC datetime (the same µs)."""
    micros = aware_micros(moment, "datetime")
    assert isinstance(moment, datetime)  # aware_micros refuses anything else
    if not MIN_MICROS <= micros <= MAX_MICROS:
        raise InvalidArgument(f"{moment.isoformat()} is out of range: in UTC it falls outside years 1 to 9999")
    return micros
