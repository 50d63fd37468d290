"""The deciders: the events a command records and the answer it gives, from the session as it is.

Each is a pure function of the session's head (with its last message for a
replacement, or the whole folded session for a restore) and the command's
checked arguments; ``services.writer`` runs it
inside the command's write transaction. An empty list of events records nothing.
"""

from __future__ import annotations

import bisect
from collections.abc import Sequence
from datetime import datetime
from typing import TypeVar

from projections.session import Entry, SessionHead, SessionSnapshot, timestamped

from .._errors import SessionExists, SessionNotFound
from .._time import from_micros
from .._values import ChatMessage
from ..events import (
    LastMessageRemoved,
    LastMessageReplaced,
    MessagesCleared,
    MessagesReplaced,
    SessionDeleted,
    SessionEvent,
    SessionForked,
    SessionRedacted,
    SessionRenamed,
    SessionRestored,
    SessionStateChanged,
    messages_appended,
)

__all__ = ["Decision", "append_messages", "remove_last", "pop_last", "replace_last", "replace_messages",
           "clear_messages", "rename", "fork",
           "change_state", "delete", "restore", "redact"]

R = TypeVar("R")
#: The events to record, and the command's answer.
Decision = tuple[Sequence[SessionEvent], R]


def append_messages(head: SessionHead, messages: Sequence[ChatMessage]) -> Decision[None]:
    """One event per message, creating the session if needed."""
    return messages_appended(messages), None


def remove_last(head: SessionHead) -> Decision[bool]:
    """Remove the last message; ``False`` when there is none."""
    return ([LastMessageRemoved()], True) if head.message_count else ([], False)


def pop_last(head: SessionHead, last: ChatMessage | None) -> Decision[ChatMessage | None]:
    """Remove the last message (``last``) and answer it; ``None`` when there is none."""
    return ([LastMessageRemoved()], last) if head.message_count else ([], None)


def replace_last(head: SessionHead, last: ChatMessage | None, message: ChatMessage) -> Decision[bool]:
    """Replace the last message (``last``); ``False`` when there is none.

    Replacing it by an equal message records nothing, and still answers ``True``: the session has a last message,
    and it reads as asked.
    """
    if not head.message_count:
        return [], False
    return ([], True) if message == last else ([LastMessageReplaced(message)], True)


def replace_messages(head: SessionHead, current: Sequence[Entry], messages: Sequence[ChatMessage]) -> Decision[None]:
    """Make the session's messages (``current``) exactly ``messages``, creating the session if needed.

    A live session that holds exactly these records nothing. Messages equal to ones of the current list, taken
    in order (each the first match after the one before), keep the time they were appended; the others read as
    appended now. So pruning a session keeps the times of what remains.
    """
    if head.exists and [message for message, _ in current] == list(messages):
        return [], None
    positions: dict[ChatMessage, list[int]] = {}
    for index, (message, _) in enumerate(current):
        positions.setdefault(message, []).append(index)
    appended: list[datetime | None] = []
    after = 0
    for message in messages:
        found = positions.get(message, [])
        at = bisect.bisect_left(found, after)
        if at < len(found):
            appended.append(from_micros(current[found[at]][1]))
            after = found[at] + 1
        else:
            appended.append(None)
    return [MessagesReplaced(tuple(messages), tuple(appended))], None


def clear_messages(head: SessionHead) -> Decision[int]:
    """Remove every message; answers how many went."""
    return ([MessagesCleared(head.message_count)], head.message_count) if head.message_count else ([], 0)


def rename(head: SessionHead, name: str | None) -> Decision[None]:
    """Name the session (``None`` clears the name); the name it already has records nothing."""
    return ([SessionRenamed(name)], None) if not head.exists or head.name != name else ([], None)


def change_state(head: SessionHead, state: str, turn_id: str | None) -> Decision[None]:
    """Set the run state; the state and turn id it already has record nothing (a live session that never had a
    state is idle)."""
    current = head.run_state()
    unchanged = current is not None and (current.state, current.turn_id) == (state, turn_id)
    return ([], None) if unchanged else ([SessionStateChanged(state, turn_id)], None)


def delete(head: SessionHead, reason: str | None) -> Decision[bool]:
    """Delete the session; ``False`` when it does not exist."""
    return ([SessionDeleted(reason)], True) if head.exists else ([], False)


def restore(current: SessionSnapshot, wanted: SessionSnapshot, target: int) -> Decision[bool]:
    """Make the session ``current`` equal to ``wanted``, its state at version ``target``; whether it changed.

    Versions and activity times aside, a session that already looks as wanted records nothing.
    """
    if _same_session(current, wanted):
        return [], False
    head = wanted.head
    messages = tuple(timestamped(entry) for entry in wanted.messages)
    return [SessionRestored(target, head.exists, messages, head.name, head.state, head.created_at)], True


def fork(head: SessionHead, source: SessionSnapshot, source_key: str, source_hash: str) -> Decision[None]:
    """Start the session ``head`` (which must not be live) as a copy of ``source``, the session ``source_key`` at
    its version whose event hash is ``source_hash``.

    Raises:
        SessionExists: the session is live.
        SessionNotFound: the source did not exist at that version.
    """
    if head.exists:
        raise SessionExists(f"session {head.key!r} exists; a fork starts a new session (or a deleted one)")
    version = source.head.version
    if not source.head.exists:
        when = "had no events at that point" if not version else f"did not exist at version {version}"
        raise SessionNotFound(f"session {source_key!r} {when}: there is nothing to fork")
    messages = tuple(timestamped(entry) for entry in source.messages)
    return [SessionForked(source_key, version, source_hash, messages, source.head.name)], None


def redact(reason: str, rewritten: Sequence[tuple[int, str]]) -> Decision[int]:
    """Record a redaction that rewrote these (position, payload digest) events; answers how many. One that
    rewrote none records nothing (the session held no content left to redact).

    The session's head plays no part: a deleted session's old messages are redacted too.
    """
    if not rewritten:
        return [], 0
    return [SessionRedacted(reason, tuple(rewritten))], len(rewritten)


def _same_session(one: SessionSnapshot, other: SessionSnapshot) -> bool:
    """Whether two folded sessions look the same to a reader (versions and activity times aside)."""
    a, b = one.head, other.head
    if not a.exists and not b.exists:
        return True
    return ((a.exists, a.name, a.run_state(), a.created_at, one.messages)
            == (b.exists, b.name, b.run_state(), b.created_at, other.messages))
