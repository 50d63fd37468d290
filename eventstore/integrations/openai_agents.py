"""The OpenAI Agents SDK's session memory in the event store: ``EventStoreSession``.

A drop-in for the SDK's ``SQLiteSession``::

    store = AsyncSessionStore("./sessions")
    result = await Runner.run(agent, "Hello", session=EventStoreSession("user-42", store))

Each SDK item is one message of the session: the item's own ``role`` (or ``"tool"`` for a tool's output and
``"assistant"`` for the model's other items: calls, reasoning, ...), its text as ``content`` (what search finds and
the command line shows), and the item itself, exactly, as the message's payload. ``pop_item`` and
``clear_session`` are events like every other change: what they removed stays in ``store.history(session_id)``
and comes back with ``store.restore``. The SDK's automatic compaction replaces the compacted items as one event too
(``_get_compaction_snapshot``). See docs/integrations-openai-agents.md.
"""

from __future__ import annotations

import asyncio
import re
from collections.abc import Awaitable, Callable, Mapping, Sequence
from typing import Any, Protocol, TypeVar, cast

import attrs
from agents.items import TResponseInputItem
from agents.memory.session_settings import SessionSettings, coerce_session_settings, resolve_session_limit

from eventstore import (
    REDACTED,
    AsyncSessionStore,
    ChatMessage,
    InvalidArgument,
    InvalidMessage,
    SessionStore,
    SessionView,
    WrongExpectedVersion,
)

__all__ = ["EventStoreSession", "CompactionSnapshot", "item_to_message", "message_to_item"]

T = TypeVar("T")

#: Item fields whose text makes a message's ``content``: a message's content, a tool's output, a call's
#: arguments, a reasoning item's summary. Each is a str or a list of parts, of which those with a ``text`` count.
_TEXT_FIELDS = ("content", "output", "arguments", "summary")

_LONE_SURROGATE = re.compile("[\ud800-\udfff]")
#: The roles of the input messages a model takes.
_INPUT_ROLES = frozenset({"user", "assistant", "system", "developer"})


def item_to_message(item: TResponseInputItem) -> ChatMessage:
    """The message that stores an SDK item: a role, the item's text, and the item itself as the payload.

    Raises:
        InvalidMessage: the item is not a JSON object (see ``ChatMessage``'s payload).
    """
    if not isinstance(item, Mapping):
        raise InvalidMessage(f"a session item must be a dict, not {type(item).__name__}")
    return ChatMessage(_role_of(item), _text_of(item), item)


def message_to_item(message: ChatMessage) -> TResponseInputItem:
    """The SDK item a message stores; a message written without a payload reads as a plain input message, and so
    does a redacted one (an empty item would make the model's API refuse the turn), as the user's or else the
    assistant's."""
    payload = message.payload
    if payload == {} and message.content == REDACTED:
        role = message.role if message.role in _INPUT_ROLES else "assistant"
        return cast(TResponseInputItem, {"role": role, "content": REDACTED})
    if payload is None:
        return cast(TResponseInputItem, {"role": message.role, "content": message.content})
    return cast(TResponseInputItem, payload)


def _role_of(item: Mapping[str, Any]) -> str:
    role = item.get("role")
    if isinstance(role, str) and role:
        return role
    kind = item.get("type")
    return "tool" if isinstance(kind, str) and kind.endswith("_output") else "assistant"


def _text_of(item: Mapping[str, Any]) -> str:
    texts: list[str] = []
    for field in _TEXT_FIELDS:
        value = item.get(field)
        if isinstance(value, str):
            texts.append(value)
        elif isinstance(value, list):
            texts.extend(part["text"] for part in value
                         if isinstance(part, Mapping) and isinstance(part.get("text"), str))
    return _valid_unicode("\n".join(texts))


def _valid_unicode(text: str) -> str:
    """``text`` with each lone surrogate replaced by U+FFFD: a message's content must encode as UTF-8 (the item
    in the payload keeps them)."""
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        return _LONE_SURROGATE.sub("\ufffd", text)
    return text


class _AwaitedStore(Protocol):
    """The calls a session makes, awaited: ``AsyncSessionStore`` has them; ``_OffLoopWrites`` gives a
    ``SessionStore`` them."""

    async def load(self, key: str) -> list[ChatMessage]: ...

    async def load_last(self, key: str, count: int) -> list[ChatMessage]: ...

    async def append_many(self, key: str, messages: Sequence[ChatMessage]) -> int: ...

    async def pop_last(self, key: str) -> ChatMessage | None: ...

    async def clear_messages(self, key: str) -> int: ...

    async def session_at(self, key: str) -> SessionView: ...

    async def replace_messages(self, key: str, messages: Sequence[ChatMessage], *,
                               expected_version: int | None = None) -> int: ...


class _OffLoopWrites:
    """A ``SessionStore`` for the event loop: reads on the loop (a short read of LMDB's memory map, as
    ``AsyncSessionStore`` does them), writes on a worker thread, so a durable commit never blocks the loop."""

    def __init__(self, store: SessionStore) -> None:
        self._store = store

    async def load(self, key: str) -> list[ChatMessage]:
        return self._store.load(key)

    async def load_last(self, key: str, count: int) -> list[ChatMessage]:
        return self._store.load_last(key, count)

    async def append_many(self, key: str, messages: Sequence[ChatMessage]) -> int:
        return await asyncio.to_thread(self._store.append_many, key, messages)

    async def pop_last(self, key: str) -> ChatMessage | None:
        return await asyncio.to_thread(self._store.pop_last, key)

    async def clear_messages(self, key: str) -> int:
        return await asyncio.to_thread(self._store.clear_messages, key)

    async def session_at(self, key: str) -> SessionView:
        return self._store.session_at(key)

    async def replace_messages(self, key: str, messages: Sequence[ChatMessage], *,
                               expected_version: int | None = None) -> int:
        return await asyncio.to_thread(self._store.replace_messages, key, messages,
                                       expected_version=expected_version)


async def _to_the_end(write: Awaitable[T]) -> T:
    """Await ``write`` until it has committed or failed, even when the caller is cancelled meanwhile, and only
    then raise the cancellation: a cancelled caller never races its own unfinished write (a retry after a
    cancelled ``pop_item`` must not find the popped item still there)."""
    task = asyncio.ensure_future(write)
    cancelled: asyncio.CancelledError | None = None
    while not task.done():
        try:
            await asyncio.wait((task,))
        except asyncio.CancelledError as cancellation:
            cancelled = cancelled or cancellation
    if cancelled is not None:
        if not task.cancelled():
            task.exception()  # retrieved, so the loop does not report it: the caller sees the cancellation
        raise cancelled
    return task.result()


@attrs.frozen
class CompactionSnapshot:
    """The latest items of a session, and a way to replace a suffix of them if the session has not changed since.

    What the SDK's ``OpenAIResponsesCompactionSession`` reads through a session's ``_get_compaction_snapshot``.
    """

    #: The latest items, oldest first.
    items: list[TResponseInputItem]
    #: Whether they are all the session holds.
    complete: bool
    #: ``await replace_suffix(start, output)``: ``items[start:]`` become ``output``; ``False`` (writing nothing)
    #: if the session changed since the snapshot, or ``start`` is past the end.
    replace_suffix: Callable[[int, list[TResponseInputItem]], Awaitable[bool]]


class EventStoreSession:
    """The SDK's ``Session`` protocol on a session of the event store.

    Args:
        session_id: the store's session key.
        store: an ``AsyncSessionStore`` (preferred: concurrent writes of many sessions join one group commit),
            or a ``SessionStore`` (its writes then run on a worker thread, its reads on the loop).
        session_settings: the SDK's ``SessionSettings`` (or a dict of them); ``limit`` is the default of
            ``get_items``.

    Raises:
        InvalidArgument: a store of another kind. A ``session_id`` the store cannot take as a key (empty, with
            NUL, too long) raises ``InvalidSessionKey`` at the first call (``get_items`` too).
    """

    session_id: str
    session_settings: SessionSettings | None

    def __init__(self, session_id: str, store: SessionStore | AsyncSessionStore, *,
                 session_settings: SessionSettings | dict[str, Any] | None = None) -> None:
        if isinstance(store, AsyncSessionStore):
            self._store: _AwaitedStore = store
        elif isinstance(store, SessionStore):
            self._store = _OffLoopWrites(store)
        else:
            raise InvalidArgument(f"store must be a SessionStore or an AsyncSessionStore, not {type(store).__name__}")
        self.session_id = session_id
        self.session_settings = (SessionSettings() if session_settings is None
                                 else coerce_session_settings(session_settings))

    async def get_items(self, limit: int | None = None) -> list[TResponseInputItem]:
        """The session's items, oldest first; with ``limit`` (or the settings' limit), only the latest that many.

        As with ``SQLiteSession``, a limit of 0 gives none and a negative limit gives all. A limit reads only
        the latest items from the store (``load_last``), however long the session.
        """
        latest = resolve_session_limit(limit, self.session_settings)
        if latest is None or latest < 0:
            messages = await self._store.load(self.session_id)
        else:
            messages = await self._store.load_last(self.session_id, latest)
        return [message_to_item(message) for message in messages]

    async def add_items(self, items: list[TResponseInputItem]) -> None:
        """Append the items, in one commit (one event each)."""
        if items:
            messages = [item_to_message(item) for item in items]
            await _to_the_end(self._store.append_many(self.session_id, messages))

    async def pop_item(self) -> TResponseInputItem | None:
        """Remove the latest item and return it (``None`` when there is none), as one event."""
        popped = await _to_the_end(self._store.pop_last(self.session_id))
        return None if popped is None else message_to_item(popped)

    async def clear_session(self) -> None:
        """Remove every item, as one event; the session and its history stay."""
        await _to_the_end(self._store.clear_messages(self.session_id))

    async def _get_compaction_snapshot(
            self, limit: int, *, prune_prefix: Callable[[TResponseInputItem], bool] | None = None,
    ) -> CompactionSnapshot:
        """The latest ``limit`` items, for the SDK's compaction (a hook its ``SQLiteSession`` has too).

        The replacement is one ``MessagesReplaced`` event, written only if the session is still at the version
        read here, so a concurrent write is never lost; what compaction drops stays in the history. With
        ``prune_prefix``, the oldest items before the replaced suffix for which it is true go as well.
        """
        view = await self._store.session_at(self.session_id)
        messages = view.messages
        window = messages[-limit:] if limit > 0 else []
        before_window = len(messages) - len(window)

        async def replace_suffix(start: int, output: list[TResponseInputItem]) -> bool:
            if start >= len(window):
                return False
            kept = messages[:before_window + start]
            if prune_prefix is not None:
                expired = next((n for n, message in enumerate(kept) if not prune_prefix(message_to_item(message))),
                               len(kept))
                kept = kept[expired:]
            replacement = [*kept, *(item_to_message(item) for item in output)]
            try:
                await _to_the_end(self._store.replace_messages(self.session_id, replacement,
                                                               expected_version=view.version))
            except WrongExpectedVersion:
                return False
            return True

        return CompactionSnapshot([message_to_item(message) for message in window], before_window == 0,
                                  replace_suffix)

    def __repr__(self) -> str:
        return f"EventStoreSession({self.session_id!r})"
