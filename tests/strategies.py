"""Hypothesis strategies shared by the property-based tests: messages, keys and event histories."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime, timedelta

from hypothesis import strategies as st

from eventstore import ChatMessage, RecordedEvent, TimestampedMessage
from eventstore.events import (
    LastMessageRemoved,
    LastMessageReplaced,
    MessageAppended,
    MessagesCleared,
    MessagesReplaced,
    SessionDeleted,
    SessionEvent,
    SessionForked,
    SessionRenamed,
    SessionStateChanged,
)

__all__ = [
    "KEYS",
    "STATES",
    "texts",
    "roles",
    "json_texts",
    "json_payloads",
    "messages",
    "session_keys",
    "names",
    "turn_ids",
    "events_for",
    "histories",
]

#: A small alphabet of session keys, so that commands collide on the same sessions.
#: The last one is exactly 1024 UTF-8 bytes of two-byte characters (the longest allowed key).
KEYS = ("a", "b", "ключ", "é" * 512)

#: Run states: "running" starts a turn, the others do not.
STATES = ("idle", "running", "error")

_START = datetime(2026, 1, 1, tzinfo=UTC)

#: Message text: any Unicode that encodes to UTF-8 (no lone surrogates), short enough to keep examples fast.
texts = st.text(st.characters(exclude_categories=["Cs"]), max_size=20)
roles = st.sampled_from(("user", "assistant", "system", "tool"))
#: Payload strings: any code points, lone surrogates and NUL included (frameworks produce them), and the tags
#: of the payload's stored form, which must come back as plain strings.
json_texts = (st.text(st.characters(categories=["Cs", "Cc", "L", "N", "P", "S", "Zs"]), max_size=8)
              | st.sampled_from(("$str", "$int", "$obj", "$", "")))
_json_scalars = (st.none() | st.booleans() | st.integers() | st.integers(2**63 - 2, 2**64 + 2).map(lambda n: -n)
                 | st.integers(2**64 - 2, 2**64 + 2) | st.floats(allow_nan=False, allow_infinity=False) | json_texts)
#: JSON objects as a message's payload: nested, with every kind of value the stored form must keep exactly.
json_payloads = st.dictionaries(json_texts, st.recursive(
    _json_scalars, lambda inner: st.lists(inner, max_size=3) | st.dictionaries(json_texts, inner, max_size=3),
    max_leaves=8), max_size=4)
messages = st.builds(ChatMessage, roles, texts, st.none() | st.none() | json_payloads)
session_keys = st.sampled_from(KEYS)
#: Names as callers pass them: the empty string clears the name.
names = st.sampled_from(("", "trip", "work", "Ünïcode name"))
turn_ids = st.none() | st.sampled_from(("t1", "t2", "t3"))


@st.composite
def replacements(draw: st.DrawFn) -> MessagesReplaced:
    """A ``MessagesReplaced``: some messages, each kept (with a time it was appended) or new."""
    replacing = tuple(draw(st.lists(messages, max_size=3)))
    return MessagesReplaced(replacing, tuple(draw(st.none() | st.just(_START)) for _ in replacing))


@st.composite
def forks(draw: st.DrawFn) -> SessionForked:
    """A ``SessionForked``: a session started as a copy of another one's messages (a fresh session's first event)."""
    copied = tuple(TimestampedMessage(message, _START) for message in draw(st.lists(messages, max_size=3)))
    return SessionForked("source", draw(st.integers(1, 5)), "0" * 64, copied, draw(st.none() | names.filter(bool)))


def events_for(message_count: int) -> st.SearchStrategy[SessionEvent]:
    """One event that is valid for a session holding ``message_count`` messages."""
    choices: list[st.SearchStrategy[SessionEvent]] = [
        st.builds(MessageAppended, messages),
        replacements(),
        st.builds(SessionRenamed, st.none() | names.filter(bool)),
        st.builds(SessionStateChanged, st.sampled_from(STATES), turn_ids),
        st.builds(SessionDeleted, st.none() | st.just("stale")),
    ]
    if message_count:
        choices += [
            st.just(LastMessageRemoved()),
            st.builds(LastMessageReplaced, messages),
            st.just(MessagesCleared(message_count)),
        ]
    return st.one_of(choices)


@st.composite
def histories(draw: st.DrawFn, key: str = "session", max_size: int = 30) -> list[RecordedEvent]:
    """A valid recorded history of one session: versions 1.., times that never decrease."""
    size = draw(st.integers(0, max_size))
    recorded: list[RecordedEvent] = []
    count = 0
    moment = _START
    for version in range(1, size + 1):
        event = draw(forks() if version == 1 and draw(st.booleans()) else events_for(count))
        if isinstance(event, MessageAppended):
            count += 1
        elif isinstance(event, LastMessageRemoved):
            count -= 1
        elif isinstance(event, (MessagesCleared, SessionDeleted)):
            count = 0
        elif isinstance(event, (MessagesReplaced, SessionForked)):
            count = len(event.messages)
        moment += timedelta(seconds=draw(st.integers(0, 3600)))
        recorded.append(RecordedEvent(
            position=version * 2, session_key=key, version=version, recorded_at=moment, event=event,
            event_id=uuid.UUID(int=version), hash=f"{version:064x}",
        ))
    return recorded
