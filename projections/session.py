"""The session fold: what a session looks like after a sequence of its events.

Pure functions, no I/O. ``evolve_head`` folds everything but the messages
(name, state, times, count); ``message_edit`` says what an event does to the
message list. The LMDB read models apply the same two functions to their
stored fragments, and ``fold`` applies them to a whole ``SessionSnapshot``, so
the rules live here once.
"""

from __future__ import annotations

import functools
from collections.abc import Iterable, Iterator, Sequence
from datetime import datetime
from typing import Protocol, assert_never, overload

import attrs

from eventstore._time import from_micros, to_micros
from eventstore._values import ChatMessage, SessionMetadata, SessionState, TimestampedMessage
from eventstore.events import (
    LastMessageRemoved,
    LastMessageReplaced,
    MessageAppended,
    MessagesCleared,
    MessagesReplaced,
    SessionDeleted,
    SessionEvent,
    SessionForked,
    SessionRedacted,
    SessionRenamed,
    SessionRestored,
    SessionStateChanged,
    redacted_message,
)

__all__ = [
    "IDLE",
    "SessionHead",
    "SessionSnapshot",
    "Change",
    "Entry",
    "timestamped",
    "AppendMessage",
    "RemoveLastMessage",
    "ReplaceLastMessage",
    "ClearMessages",
    "ReplaceMessages",
    "RedactMessages",
    "MessageEdit",
    "EntryList",
    "SharedEntries",
    "SharedEntriesView",
    "redacted",
    "empty_head",
    "empty_snapshot",
    "evolve_head",
    "evolve_head_through",
    "message_edit",
    "apply_edit",
    "untouched_prefix",
    "EDIT_KINDS",
    "step",
    "fold",
]

RUNNING = "running"


class Change(Protocol):
    """What the folds and read models read of a recorded event; a ``RecordedEvent`` is one."""

    @property
    def session_key(self) -> str: ...

    @property
    def version(self) -> int: ...

    @property
    def recorded_at(self) -> datetime: ...

    @property
    def event(self) -> SessionEvent: ...


@attrs.frozen
class SessionHead:
    """Everything known about a session except its messages."""

    key: str
    version: int
    exists: bool
    name: str | None
    state: SessionState | None
    created_at: datetime | None
    last_activity: datetime | None
    message_count: int

    def metadata(self) -> SessionMetadata | None:
        """The public metadata of a live session; ``None`` when it does not exist."""
        if not self.exists:
            return None
        assert self.created_at is not None and self.last_activity is not None
        return SessionMetadata(self.key, self.name, self.created_at, self.last_activity, self.message_count)

    def run_state(self) -> SessionState | None:
        """The run state readers see: ``IDLE`` for a live session that never had one set (as ZeroClaw, whose
        column defaults to ``'idle'``); ``None`` when it does not exist."""
        if not self.exists:
            return None
        return IDLE if self.state is None else self.state


#: The run state of a live session that never had one set.
IDLE = SessionState("idle")

#: A current message and when it was appended, in µs since the epoch: the fold's
#: light form of ``TimestampedMessage``. Folding and loading long sessions builds
#: thousands of these; a plain tuple costs a fraction of a datetime or a class.
Entry = tuple[ChatMessage, int]


def timestamped(entry: Entry) -> TimestampedMessage:
    """The public form of an entry."""
    message, micros = entry
    return TimestampedMessage(message, from_micros(micros))


@attrs.frozen
class AppendMessage:
    message: Entry


@attrs.frozen
class RemoveLastMessage:
    pass


@attrs.frozen
class ReplaceLastMessage:
    message: ChatMessage


@attrs.frozen
class ClearMessages:
    pass


@attrs.frozen
class ReplaceMessages:
    messages: tuple[Entry, ...]


@attrs.frozen
class RedactMessages:
    pass


MessageEdit = AppendMessage | RemoveLastMessage | ReplaceLastMessage | ClearMessages | ReplaceMessages | RedactMessages


@functools.lru_cache(maxsize=1)
def empty_head(key: str) -> SessionHead:
    """A session that has never had an event (kept for the last key, frozen: a new session's command takes one to
    decide and its catalog another to apply the events)."""
    return SessionHead(key, 0, False, None, None, None, None, 0)


#: The kind of edit each event type makes to the message list (what ``message_edit`` returns for it, ``None``
#: for none); enough to know which messages a run of events leaves alone without decoding the events.
#: Every event type has an entry (``tests/test_event_registry.py`` checks it against ``EVENT_CLASSES``).
EDIT_KINDS: dict[type[SessionEvent], type[MessageEdit] | None] = {
    MessageAppended: AppendMessage,
    LastMessageRemoved: RemoveLastMessage,
    LastMessageReplaced: ReplaceLastMessage,
    MessagesCleared: ClearMessages,
    MessagesReplaced: ReplaceMessages,
    SessionRenamed: None,
    SessionStateChanged: None,
    SessionDeleted: ClearMessages,
    SessionRestored: ReplaceMessages,
    SessionRedacted: RedactMessages,
    SessionForked: ReplaceMessages,
}


def message_edit(recorded: Change) -> MessageEdit | None:
    """What ``recorded`` does to the session's message list, if anything (of the kind ``EDIT_KINDS`` gives)."""
    event = recorded.event
    match event:
        case MessageAppended():
            return AppendMessage((event.message, to_micros(recorded.recorded_at)))
        case LastMessageRemoved():
            return RemoveLastMessage()
        case LastMessageReplaced():
            return ReplaceLastMessage(event.message)
        case MessagesCleared() | SessionDeleted():
            return ClearMessages()
        case SessionRestored() | SessionForked():
            return ReplaceMessages(tuple((m.message, to_micros(m.created_at)) for m in event.messages))
        case MessagesReplaced():
            now = to_micros(recorded.recorded_at)
            return ReplaceMessages(tuple((message, now if at is None else to_micros(at))
                                         for message, at in zip(event.messages, event.appended)))
        case SessionRedacted():
            return RedactMessages()
        case SessionRenamed() | SessionStateChanged():
            return None
        case _:
            assert_never(event)


def evolve_head(head: SessionHead, recorded: Change) -> SessionHead:
    """The head after ``recorded``; any event of a session that does not exist starts a fresh one."""
    return _evolve_head(head, recorded)


def evolve_head_through(head: SessionHead, events: Iterable[Change]) -> SessionHead:
    """The head after ``events`` in order (``evolve_head`` of each): a run of appends to a live session makes one
    head, not one a message."""
    appended, last = 0, None  # appends not yet folded in, and the latest of them
    for recorded in events:
        if head.exists and type(recorded.event) is MessageAppended:
            appended, last = appended + 1, recorded
            continue
        if last is not None:
            head, appended, last = _appended(head, last, appended), 0, None
        head = _evolve_head(head, recorded)
    return head if last is None else _appended(head, last, appended)


def _appended(head: SessionHead, last: Change, count: int) -> SessionHead:
    """The live session ``head`` after ``count`` appends, the last of them ``last``."""
    return SessionHead(head.key, last.version, True, head.name, head.state, head.created_at, last.recorded_at,
                       head.message_count + count)


def step(head: SessionHead, messages: EntryList, recorded: Change) -> SessionHead:
    """Fold one event into a head and a message list the caller owns; return the new head."""
    apply_edit(messages, message_edit(recorded))
    return _evolve_head(head, recorded)


def _evolve_head(head: SessionHead, recorded: Change) -> SessionHead:
    event = recorded.event
    at = recorded.recorded_at
    # Any event of a session that does not exist starts a fresh one (but a deletion, a restore, a redaction): its
    # fields, not a head of its own (a new session's first append builds one head, not two).
    name, state, created, count = (head.name, head.state, head.created_at, head.message_count) if head.exists \
        else (None, None, at, 0)
    match event:
        case SessionDeleted() | SessionRestored(exists=False):
            return SessionHead(head.key, recorded.version, False, None, None, None, None, 0)
        case SessionRestored():
            return SessionHead(head.key, recorded.version, True, event.name, event.state, event.created_at, at,
                               len(event.messages))
        case SessionForked():  # a fresh session, whatever the key held before
            return SessionHead(head.key, recorded.version, True, event.name, None, at, at, len(event.messages))
        case SessionRedacted() if not head.exists:
            return attrs.evolve(head, version=recorded.version)  # redacting an old life revives nothing
        case SessionRenamed():
            name = event.name
        case SessionStateChanged():
            state = SessionState(event.state, event.turn_id, at if event.state == RUNNING else None)
        case MessageAppended():
            count += 1
        case LastMessageRemoved():
            count -= 1
        case MessagesCleared():
            count = 0
        case MessagesReplaced():
            count = len(event.messages)
        case LastMessageReplaced() | SessionRedacted():
            pass
        case _:
            assert_never(event)
    return SessionHead(head.key, recorded.version, True, name, state, created, at, count)


class EntryList(Protocol):
    """The edits ``apply_edit`` makes to a message list: a ``list`` takes them, and so does ``SharedEntries``."""

    def append(self, entry: Entry, /) -> None: ...

    def extend(self, entries: Iterable[Entry], /) -> None: ...

    def pop(self) -> Entry: ...

    def clear(self) -> None: ...

    def __iter__(self) -> Iterator[Entry]: ...


def apply_edit(messages: EntryList, edit: MessageEdit | None) -> None:
    """Apply ``edit`` to a message list that the caller owns."""
    match edit:
        case AppendMessage():
            messages.append(edit.message)
        case RemoveLastMessage():
            messages.pop()
        case ReplaceLastMessage():
            # A streaming update keeps the time the message was first appended.
            messages.append((edit.message, messages.pop()[1]))
        case ClearMessages():
            messages.clear()
        case ReplaceMessages():
            messages.clear()
            messages.extend(edit.messages)
        case RedactMessages():
            kept = [redacted(m) for m in messages]
            messages.clear()
            messages.extend(kept)
        case None:
            pass
        case _:
            assert_never(edit)


#: A cell of ``SharedEntries``: an entry and the cell below it (``None`` under the first entry).
_Cell = tuple[Entry, "_Cell | None"]


class SharedEntries:
    """A message list whose every past state stays readable at no cost: the entries are a chain of immutable
    cells, each holding one entry and the cell below it, and the list is its top cell.

    ``append``, ``pop`` and ``clear`` (what ``apply_edit`` uses) move the top in O(1), and ``view()`` is the list
    as it is now, also in O(1): later edits build new cells over the shared ones and never change a view. A
    replay keeps one, so that each step costs its event's edit, not a copy of the whole session.
    """

    __slots__ = ("_top", "_length")

    def __init__(self, entries: Iterable[Entry] = ()) -> None:
        self._top: _Cell | None = None
        self._length = 0
        self.extend(entries)

    def append(self, entry: Entry, /) -> None:
        self._top, self._length = (entry, self._top), self._length + 1

    def extend(self, entries: Iterable[Entry], /) -> None:
        for entry in entries:
            self.append(entry)

    def pop(self) -> Entry:
        if self._top is None:
            raise IndexError("pop from an empty message list")
        entry, self._top = self._top
        self._length -= 1
        return entry

    def clear(self) -> None:
        self._top, self._length = None, 0

    def __iter__(self) -> Iterator[Entry]:
        return iter(self.view())

    def view(self) -> SharedEntriesView:
        """The entries as they are now, oldest first; later edits leave it as it is."""
        return SharedEntriesView(self._top, self._length)


class SharedEntriesView(Sequence[Entry]):
    """The entries of a ``SharedEntries`` at one moment, oldest first: reading the last ``n`` of them walks
    ``n`` cells, whatever their number (the cells link from the newest)."""

    __slots__ = ("_top", "_length")

    def __init__(self, top: _Cell | None, length: int) -> None:
        self._top, self._length = top, length

    def __len__(self) -> int:
        return self._length

    def _newest(self, count: int) -> list[Entry]:
        """The last ``count`` entries, oldest first."""
        found, cell = [], self._top
        for _ in range(count):
            assert cell is not None
            found.append(cell[0])
            cell = cell[1]
        found.reverse()
        return found

    @overload
    def __getitem__(self, index: int) -> Entry: ...

    @overload
    def __getitem__(self, index: slice) -> tuple[Entry, ...]: ...

    def __getitem__(self, index: int | slice) -> Entry | tuple[Entry, ...]:
        if isinstance(index, slice):
            wanted = range(self._length)[index]
            if not wanted:
                return ()
            low = min(wanted[0], wanted[-1])
            newest = self._newest(self._length - low)
            return tuple(newest[i - low] for i in wanted)
        position = range(self._length)[index]  # IndexError out of range, as a list
        return self._newest(self._length - position)[0]

    def __iter__(self) -> Iterator[Entry]:
        return iter(self._newest(self._length))


def untouched_prefix(count: int, kinds: Iterable[type[MessageEdit] | None]) -> int:
    """How many of a list's first ``count`` messages edits of these kinds, in order, leave as they are."""
    untouched = length = count
    for kind in kinds:
        if kind is AppendMessage:
            length += 1
        elif kind is RemoveLastMessage:
            length -= 1
            untouched = min(untouched, length)
        elif kind is ReplaceLastMessage:
            untouched = min(untouched, length - 1)
        elif kind is not None:  # a clear, a whole new list, a redaction
            return 0
    return max(untouched, 0)


def redacted(entry: Entry) -> Entry:
    """The entry with its content (and payload) redacted."""
    message, micros = entry
    return redacted_message(message), micros


@attrs.frozen
class SessionSnapshot:
    """A whole session: its head and its current messages. What snapshots store."""

    head: SessionHead
    messages: tuple[Entry, ...]


def empty_snapshot(key: str) -> SessionSnapshot:
    """A session that has never had an event."""
    return SessionSnapshot(empty_head(key), ())


def fold(state: SessionSnapshot, events: Iterable[Change]) -> SessionSnapshot:
    """The session after ``events`` (its later events, in order) are applied to ``state``."""
    head = state.head
    messages = list(state.messages)  # private working copy; ``state`` is never changed
    for recorded in events:
        head = step(head, messages, recorded)
    return SessionSnapshot(head, tuple(messages))
