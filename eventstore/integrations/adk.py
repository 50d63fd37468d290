"""Google ADK sessions kept in the event store: ``EventStoreSessionService``, a ``BaseSessionService``.

``Runner(agent=..., app_name=..., session_service=EventStoreSessionService(store))`` with an
``AsyncSessionStore``. Each ADK session is one session of the store, keyed
``adk:session:["<app>", "<user>", "<session id>"]``: its first message records the creation (time and
session-scoped state), and every ADK ``Event`` appended after it is one message whose payload is the event
as ``model_dump(mode="json")``, read back with ``Event.model_validate``. App- and user-scoped state
(``app:`` and ``user:`` keys) live in their own sessions, ``adk:app:["<app>"]`` and
``adk:user:["<app>", "<user>"]``, one message per change (made one past 64) naming the session that made it,
written in the same store transaction as the event that made the change; ``temp:`` keys are never stored.
``redact_session`` redacts a session and, in the same transaction, the app and user values only it set. So every
change is an event of the log, with ``history``, ``restore``, ``verify`` and ``fork`` (``fork_session``) at hand.

Stale writers are refused as ADK's database services refuse them, across processes: a session carries the
store version it was read at, and ``append_event`` appends with that ``expected_version``; a session changed
since by another writer raises ADK's ``StaleSessionError``. See docs/integrations-adk.md.
"""

from __future__ import annotations

import asyncio
import contextlib
import copy
import json
import operator
import time
import uuid
import weakref
from collections import OrderedDict
from collections.abc import Callable, Mapping, Sequence
from datetime import datetime
from typing import Any, Generic, TypeVar

import attrs
from google.adk.errors import StaleSessionError
from google.adk.errors.already_exists_error import AlreadyExistsError
from google.adk.errors.session_not_found_error import SessionNotFoundError
from google.adk.events.event import Event
from google.adk.sessions.base_session_service import BaseSessionService, GetSessionConfig, ListSessionsResponse
from google.adk.sessions.session import Session
from google.adk.sessions.state import State
from pydantic import ValidationError
from pydantic_core import PydanticSerializationError, to_jsonable_python
from typing_extensions import override

from eventstore import (
    AsyncSessionStore,
    ChatMessage,
    InvalidArgument,
    SessionExists,
    SessionNotFound,
    StoreCorrupted,
    WrongExpectedVersion,
)

__all__ = ["EventStoreSessionService", "session_key"]

_SESSION_KIND, _APP_KIND, _USER_KIND = "adk:session:", "adk:app:", "adk:user:"
#: How many changes an app's or user's state keeps as messages before they are made one.
_SCOPE_CHANGES_KEPT = 64
#: How many sessions' folds a service keeps (as many as the store keeps decoded by default).
_FOLDS_KEPT = 256
#: How many times ``redact_session`` reads again when another writer changed what it read.
_REDACTION_ATTEMPTS = 3
_STALE = ("The session has been modified in storage since it was loaded. "
          "Please reload the session before appending more events.")

JSONObject = dict[str, Any]
#: A creation a redaction emptied: no time, no state.
_REDACTED_CREATION: JSONObject = {"time": 0.0, "state": {}}


# -- keys ---------------------------------------------------------------------------------------------------------

def _key(kind: str, *parts: str) -> str:
    """A store key for ``parts``: JSON keeps any app name, user id or session id apart from the next.

    Raises:
        InvalidArgument: a part is not a string (an id of ``1`` and one of ``"1"`` would be different sessions).
    """
    _check_ids(parts)
    return kind + json.dumps(list(parts))


def _check_ids(parts: Sequence[object]) -> None:
    for part in parts:
        if not isinstance(part, str):
            raise InvalidArgument(f"app names, user ids and session ids are strings, not {type(part).__name__}")


def session_key(app_name: str, user_id: str, session_id: str) -> str:
    """The store key of an ADK session: for the store's ``history``, ``session_at``, ``restore``, ``fork``, ..."""
    return _key(_SESSION_KIND, app_name, user_id, _normalized_id(session_id))


def _key_prefix(kind: str, *parts: str) -> str:
    """The prefix shared by the keys of ``kind`` whose first parts are ``parts``."""
    _check_ids(parts)
    return kind + json.dumps(list(parts))[:-1] + ", "


def _key_parts(key: str, kind: str) -> list[str]:
    parts: list[str] = json.loads(key[len(kind):])
    return parts


def _normalized_id(session_id: str) -> str:
    """Session ids are stripped of surrounding whitespace, as ADK's in-memory and SQLite services do."""
    _check_ids([session_id])
    return session_id.strip() if session_id else session_id


def _given_or_new_id(session_id: str | None) -> str:
    """The caller's id, normalized, or a new one when none (or only whitespace) is given, as ADK's services do.

    Raises:
        InvalidArgument: the id is given and is not a string (a falsy ``0`` must not quietly become a new id).
    """
    given = "" if session_id is None else _normalized_id(session_id)
    return given or str(uuid.uuid4())


# -- stored messages ----------------------------------------------------------------------------------------------

def _message(role: str, text: str, envelope: Mapping[str, Any]) -> ChatMessage:
    """A store message: ``envelope`` exactly, as its payload; ``text`` for search, in valid Unicode (the
    payload keeps any lone surrogate of it)."""
    return ChatMessage(role, text.encode("utf-8", "replace").decode("utf-8"), envelope)


def _envelope(message: ChatMessage, key: str) -> JSONObject:
    envelope = message.payload
    if envelope is None:
        raise StoreCorrupted(f"session {key!r} holds a message the ADK session service did not write")
    return envelope


def _event_text(event: Event) -> str:
    """The event's text parts, which the store's search indexes."""
    if event.content is None or not event.content.parts:
        return ""
    return "\n".join(part.text for part in event.content.parts if part.text)


def _event_role(event: Event) -> str:
    return "user" if event.author == "user" else "assistant"


@attrs.frozen
class _ScopedDelta:
    """A state change split by scope: ``app:`` and ``user:`` keys without their prefix, ``temp:`` keys dropped."""

    app: JSONObject
    user: JSONObject
    session: JSONObject


def _split_delta(delta: Mapping[str, Any]) -> _ScopedDelta:
    app: JSONObject = {}
    user: JSONObject = {}
    session: JSONObject = {}
    for key, value in delta.items():
        if key.startswith(State.APP_PREFIX):
            app[key.removeprefix(State.APP_PREFIX)] = value
        elif key.startswith(State.USER_PREFIX):
            user[key.removeprefix(State.USER_PREFIX)] = value
        elif not key.startswith(State.TEMP_PREFIX):
            session[key] = value
    return _ScopedDelta(app, user, session)


@attrs.frozen
class _StoredSession:
    """An ADK session folded from its store messages: ``version`` is the store version its last message was
    written at (``None`` if that message was not written to this session); ``events`` the messages of its
    events, oldest first (each read gets fresh event objects from their payloads), with their ``timestamps``.

    Folds are kept between reads: whoever gets ``state``'s values gets copies.
    """

    version: int | None
    last_update_time: float
    state: JSONObject
    events: tuple[ChatMessage, ...]
    timestamps: tuple[float, ...]
    last_event_id: str | None


def _claim(envelope: JSONObject, key: str) -> int | None:
    """The version a message was written at, if it was written to ``key``.

    Such a version never exceeds the session's: later events only add to it, and a restore or pruning brings
    back messages of the same session, written before. A fork's messages were written to its source: their
    versions say nothing of the fork's, so they give none.
    """
    return envelope["version"] if envelope.get("key") == key else None


def _fold_session(key: str, messages: Sequence[ChatMessage],
                  earlier: _StoredSession | None = None) -> _StoredSession | None:
    """The session ``messages`` hold; with ``earlier``, the fold of the messages before these, extended.

    A redaction leaves every payload of the session empty: what it held is gone, and reads as nothing.
    """
    if earlier is None:
        if not messages:
            return None
        first = _envelope(messages[0], key)
        created = first.get("created") if first else _REDACTED_CREATION
        if not isinstance(created, dict):
            raise StoreCorrupted(f"session {key!r} does not start with an ADK session's creation")
        earlier = _StoredSession(_claim(first, key), float(created["time"]), dict(created["state"]), (), (), None)
        messages = messages[1:]
    version, last_update_time, last_event_id = earlier.version, earlier.last_update_time, earlier.last_event_id
    state = dict(earlier.state)
    events = list(earlier.events)
    timestamps = list(earlier.timestamps)
    for message in messages:
        envelope = _envelope(message, key)
        if envelope:
            event = envelope.get("event")
            if not isinstance(event, dict):
                raise StoreCorrupted(f"session {key!r} holds a message that is not an ADK event")
            events.append(message)
            timestamps.append(event.get("timestamp", 0.0))
            state.update(_split_delta(event.get("actions", {}).get("state_delta", {})).session)
            version, last_update_time, last_event_id = _claim(envelope, key), timestamps[-1], event.get("id")
    return _StoredSession(version, last_update_time, state, tuple(events), tuple(timestamps), last_event_id)


def _fold_scope(key: str, messages: Sequence[ChatMessage], earlier: JSONObject | None = None) -> JSONObject:
    """App or user state: its changes applied in order (a key set to ``None`` keeps ``None``); with
    ``earlier``, the state the messages before these left."""
    state = dict(earlier or {})
    for message in messages:
        state.update(_envelope(message, key).get("delta", {}))  # a redacted change is gone
    return state


def _fold_origins(key: str, messages: Sequence[ChatMessage]) -> dict[str, str | None]:
    """Which session last set each key of an app or user state (``None``: a change from before changes named
    their session). A change names one session (``by``: its key); a compacted one, each key's."""
    origins: dict[str, str | None] = {}
    for message in messages:
        envelope = _envelope(message, key)
        by = envelope.get("by")
        for name in envelope.get("delta", {}):
            origins[name] = by if isinstance(by, str) else by.get(name) if isinstance(by, dict) else None
    return origins


def _set_by(messages: Sequence[ChatMessage], key: str) -> _ScopedDelta:
    """The app and user values the events of a session set, each key's last."""
    app: JSONObject = {}
    user: JSONObject = {}
    for message in messages:
        event = _envelope(message, key).get("event")
        if isinstance(event, dict):
            scoped = _split_delta(event.get("actions", {}).get("state_delta", {}))
            app.update(scoped.app)
            user.update(scoped.user)
    return _ScopedDelta(app, user, {})


@attrs.frozen
class _ScopeRedaction:
    """What redacting a session does to one app or user state: its messages are redacted, and the values that
    stay (``state``, with the session each came from) are written again as one change."""

    key: str
    version: int
    state: JSONObject
    origins: dict[str, str | None]


def _scope_redaction(scope: str, version: int, messages: Sequence[ChatMessage], redacted: str,
                     set_by_session: JSONObject) -> _ScopeRedaction | None:
    """What redacting the session ``redacted`` does to the scope ``scope`` (its messages and version as read),
    ``None`` when no change of the scope came from the session.

    A value goes when the session set it last: its change names the session, or (a change from before changes
    named one) it is the value the session's events set. A value another session set since stays.
    """
    state, origins = _fold_scope(scope, messages), _fold_origins(scope, messages)

    def from_session(name: str, value: Any) -> bool:
        origin = origins.get(name)
        return origin == redacted or (origin is None and name in set_by_session and set_by_session[name] == value)

    if not set_by_session and not any(_names(_envelope(message, scope).get("by"), redacted) for message in messages):
        return None
    kept = {name: value for name, value in state.items() if not from_session(name, value)}
    return _ScopeRedaction(scope, version, kept, {name: origins.get(name) for name in kept})


def _names(by: object, key: str) -> bool:
    """Whether a change's ``by`` names the session ``key`` (for one of its values, if it is a compacted one)."""
    return by == key or (isinstance(by, dict) and key in by.values())


Folded = TypeVar("Folded")


class _Folds(Generic[Folded]):
    """Folds of the sessions read last, by key.

    The store hands back the very same (immutable) message objects while a session is unchanged, and keeps
    them when messages are appended; so a fold is reused while its messages are the ones it was made from,
    and extended by the messages appended since. Anything else (a restore, a pruning) folds afresh.
    """

    def __init__(self, fold: Callable[[str, Sequence[ChatMessage], Folded | None], Folded], size: int) -> None:
        self._fold = fold
        self._size = size
        self._folds: OrderedDict[str, tuple[tuple[ChatMessage, ...], Folded]] = OrderedDict()

    def fold(self, key: str, messages: Sequence[ChatMessage]) -> Folded:
        cached = self._folds.pop(key, None)
        if cached is not None and len(messages) >= len(cached[0]) and all(map(operator.is_, cached[0], messages)):
            folded = self._fold(key, messages[len(cached[0]):], cached[1])
        else:
            folded = self._fold(key, messages, None)
        self._folds[key] = (tuple(messages), folded)
        if len(self._folds) > self._size:
            self._folds.popitem(last=False)
        return folded


def _recent(stored: _StoredSession, config: GetSessionConfig | None) -> Sequence[ChatMessage]:
    """The events ``config`` asks for: those at or after ``after_timestamp``, then the last ``num_recent_events``."""
    events: Sequence[ChatMessage] = stored.events
    if config is None:
        return events
    if config.after_timestamp is not None:
        after = config.after_timestamp
        events = [event for event, timestamp in zip(events, stored.timestamps) if timestamp >= after]
    if config.num_recent_events is not None:
        events = events[-config.num_recent_events:] if config.num_recent_events else []
    return events


def _merged_state(session: JSONObject, app: JSONObject, user: JSONObject) -> JSONObject:
    """The state a ``Session`` shows, a copy of the kept folds' (ADK records writes into nested values)."""
    merged = dict(session)
    merged.update((State.APP_PREFIX + key, value) for key, value in app.items())
    merged.update((State.USER_PREFIX + key, value) for key, value in user.items())
    return copy.deepcopy(merged)


# -- the service --------------------------------------------------------------------------------------------------

class EventStoreSessionService(BaseSessionService):
    """ADK's session service on an ``AsyncSessionStore``; the service does not close the store.

    Reads run on the event loop (a read of the store takes microseconds); writes run on the store's writer
    threads. Several processes may serve the same store: each append is checked against the version the
    session was read at, so a stale session is refused whichever process wrote last.
    """

    def __init__(self, store: AsyncSessionStore) -> None:
        """Raises: InvalidArgument: a store of another kind (a ``SessionStore`` would fail at the first call)."""
        if not isinstance(store, AsyncSessionStore):
            raise InvalidArgument(f"store must be an AsyncSessionStore, not {type(store).__name__}")
        self._store = store
        self._sessions = _Folds(_fold_session, _FOLDS_KEPT)
        self._scopes = _Folds(_fold_scope, _FOLDS_KEPT)
        self._locks: weakref.WeakValueDictionary[tuple[asyncio.AbstractEventLoop, str], asyncio.Lock] = \
            weakref.WeakValueDictionary()

    # -- reads ----------------------------------------------------------------------------------------------------

    async def _stored(self, key: str) -> _StoredSession | None:
        return self._sessions.fold(key, await self._store.load(key))

    async def _scope_state(self, key: str) -> JSONObject:
        return self._scopes.fold(key, await self._store.load(key))

    async def _session_keys(self, prefix: str) -> list[str]:
        return await self._store.list_sessions(prefix=prefix)

    def _session(self, app_name: str, user_id: str, session_id: str, stored: _StoredSession, state: JSONObject,
                 events: Sequence[ChatMessage]) -> Session:
        key = session_key(app_name, user_id, session_id)
        try:
            validated = [Event.model_validate(_envelope(event, key)["event"]) for event in events]
        except ValidationError as exc:
            raise StoreCorrupted(f"session {session_id!r} of user {user_id!r} of app {app_name!r} holds an event "
                                 f"this version of ADK does not read: {exc.errors()[0]['msg']}") from None
        session = Session(app_name=app_name, user_id=user_id, id=session_id, state=state, events=validated,
                          last_update_time=stored.last_update_time)
        if stored.version is not None:
            session._storage_update_marker = str(stored.version)
        return session

    @override
    async def get_session(self, *, app_name: str, user_id: str, session_id: str,
                          config: GetSessionConfig | None = None) -> Session | None:
        session_id = _normalized_id(session_id)
        stored = await self._stored(session_key(app_name, user_id, session_id))
        if stored is None:
            return None
        state = _merged_state(stored.state, await self._scope_state(_key(_APP_KIND, app_name)),
                              await self._scope_state(_key(_USER_KIND, app_name, user_id)))
        return self._session(app_name, user_id, session_id, stored, state, _recent(stored, config))

    @override
    async def list_sessions(self, *, app_name: str, user_id: str | None = None) -> ListSessionsResponse:
        """The app's sessions (of one user, or of all), least recently updated first, without their events."""
        prefix = _key_prefix(_SESSION_KIND, app_name) if user_id is None else _key_prefix(
            _SESSION_KIND, app_name, user_id)
        app_state = await self._scope_state(_key(_APP_KIND, app_name))
        user_states: dict[str, JSONObject] = {}
        sessions = []
        for key in await self._session_keys(prefix):
            stored = await self._stored(key)
            if stored is None:  # deleted since the listing
                continue
            _, owner, session_id = _key_parts(key, _SESSION_KIND)
            if owner not in user_states:
                user_states[owner] = await self._scope_state(_key(_USER_KIND, app_name, owner))
            state = _merged_state(stored.state, app_state, user_states[owner])
            sessions.append(self._session(app_name, owner, session_id, stored, state, ()))
        sessions.sort(key=lambda session: (session.last_update_time, session.user_id, session.id))
        return ListSessionsResponse(sessions=sessions)

    @override
    async def get_user_state(self, *, app_name: str, user_id: str) -> dict[str, Any]:
        return copy.deepcopy(await self._scope_state(_key(_USER_KIND, app_name, user_id)))

    # -- writes ---------------------------------------------------------------------------------------------------

    @override
    async def create_session(self, *, app_name: str, user_id: str, state: dict[str, Any] | None = None,
                             session_id: str | None = None) -> Session:
        session_id = _given_or_new_id(session_id)
        key = session_key(app_name, user_id, session_id)
        # A deleted session's id may be used again: its stream goes on from the deletion's version.
        current = await self._store.session_at(key)
        if current.exists:
            raise AlreadyExistsError(f"Session with id {session_id} already exists.")
        try:
            # Bytes as an event's state delta keeps them (base64), so both ways read back alike.
            jsonable = to_jsonable_python(state or {}, fallback=str, bytes_mode="base64")
        except ValueError as exc:  # a circular reference
            raise InvalidArgument(f"the state of session {session_id!r} cannot be stored: {exc}") from None
        scoped = _split_delta(jsonable)
        created = {"created": {"time": time.time(), "state": scoped.session}, "key": key,
                   "version": current.version + 1}
        try:
            await self._commit(key, _message("system", "", created), current.version, app_name, user_id, scoped)
        except WrongExpectedVersion:
            raise AlreadyExistsError(f"Session with id {session_id} already exists.") from None
        session = await self.get_session(app_name=app_name, user_id=user_id, session_id=session_id)
        if session is None:
            raise SessionNotFoundError(f"Session {session_id} was deleted as it was created.")
        return session

    async def fork_session(self, *, app_name: str, user_id: str, session_id: str, new_session_id: str | None = None,
                           version: int | None = None, as_of: datetime | None = None) -> Session:
        """A new session of the user that starts as ``session_id`` is now, or was after the store ``version``
        of its session (see ``store.history(session_key(...))``) or at the aware time ``as_of``.

        The source is unchanged; the fork's own history begins with the fork (the store's ``fork``), and both
        go on independently. App and user state are shared, as between any two sessions of the user.

        Raises:
            AlreadyExistsError: ``new_session_id`` names a live session.
            SessionNotFoundError: the source session did not exist at that point.
        """
        new_session_id = _given_or_new_id(new_session_id)
        try:
            await self._store.fork(session_key(app_name, user_id, session_id),
                                   session_key(app_name, user_id, new_session_id), version, as_of)
        except SessionExists:
            raise AlreadyExistsError(f"Session with id {new_session_id} already exists.") from None
        except SessionNotFound:
            raise SessionNotFoundError(f"Session {session_id} not found.") from None
        forked = await self.get_session(app_name=app_name, user_id=user_id, session_id=new_session_id)
        if forked is None:
            raise SessionNotFoundError(f"Session {new_session_id} was deleted as it was forked.")
        return forked

    @override
    async def delete_session(self, *, app_name: str, user_id: str, session_id: str) -> None:
        """Delete the session (an event of the log: ``restore`` brings it back); unknown sessions are ignored."""
        await self._store.delete_session(session_key(app_name, user_id, session_id))

    @override
    async def append_event(self, session: Session, event: Event) -> Event:
        """Store the event and its state changes in one transaction, then apply them to ``session``.

        Raises:
            StaleSessionError: the session changed in the store since ``session`` was read.
            SessionNotFoundError: the session does not exist (or was deleted).
        """
        if event.partial:
            return event
        self._apply_temp_state(session, event)
        event = self._trim_temp_delta_state(event)
        key = session_key(session.app_name, session.user_id, session.id)
        try:
            payload = event.model_dump(mode="json", exclude_none=True)
        except PydanticSerializationError as exc:  # a circular reference in its state delta, say
            raise InvalidArgument(f"the event cannot be stored: {exc}") from None
        scoped = _split_delta(payload.get("actions", {}).get("state_delta", {}))
        # Appends to one session wait for each other here: those through one session object (the parallel
        # branches of an invocation share it) then each see the version the previous one left.
        async with self._lock(key):
            expected = await self._expected_version(key, session)
            version = await self._append(key, event, payload, expected, session, scoped)
            session.last_update_time = event.timestamp
            session._storage_update_marker = str(version)
            return self._commit_event_to_session(session, event)

    def _lock(self, key: str) -> asyncio.Lock:
        """The running loop's lock of ``key``: an asyncio lock serves one loop (ADK's sync ``Runner.run`` runs
        each call on a loop of its own); appends from two loops are checked by version, as two processes' are."""
        loop_and_key = (asyncio.get_running_loop(), key)
        lock = self._locks.get(loop_and_key)
        if lock is None:
            lock = self._locks[loop_and_key] = asyncio.Lock()
        return lock

    async def _expected_version(self, key: str, session: Session) -> int:
        """The store version ``session`` was read at.

        A session without one (built elsewhere, or read when its last message was not written to this session:
        a fork's) is taken to be current unless the store holds a later update than its ``last_update_time`` and
        another last event, as ADK's database service decides; one read of the whole session (``session_at``)
        gives the version and the messages consistently.
        """
        if session._storage_update_marker is not None:
            return int(session._storage_update_marker)
        current = await self._store.session_at(key)
        stored = _fold_session(key, current.messages) if current.exists else None
        if stored is None:
            raise SessionNotFoundError(f"Session {session.id} not found.")
        last_id = session.events[-1].id if session.events else None
        if stored.last_update_time > session.last_update_time and last_id != stored.last_event_id:
            raise StaleSessionError(_STALE)
        return current.version

    async def _append(self, key: str, event: Event, payload: JSONObject, expected: int, session: Session,
                      scoped: _ScopedDelta) -> int:
        """Commit the event at ``expected``; return the session's new version."""
        for attempt in range(2):
            envelope = {"event": payload, "key": key, "version": expected + 1}
            try:
                return await self._commit(key, _message(_event_role(event), _event_text(event), envelope), expected,
                                          session.app_name, session.user_id, scoped)
            except WrongExpectedVersion:
                if attempt:
                    break
            expected = await self._current_version(key, session, expected)
        raise StaleSessionError(_STALE)

    async def _current_version(self, key: str, session: Session, expected: int) -> int:
        """After a refused append: the store's version, if no ADK event was written since ``expected``.

        Writes that are not the service's (a rename, a restore, a redaction) move the version on without a
        message of the service carrying it; the session is still current then. One read of the whole session
        (``session_at``) gives its version and messages consistently.
        """
        current = await self._store.session_at(key)
        if not current.exists:
            raise SessionNotFoundError(f"Session {session.id} not found.")
        stored = _fold_session(key, current.messages)
        if stored is None or stored.version != expected:
            raise StaleSessionError(_STALE)
        return current.version

    async def _commit(self, key: str, message: ChatMessage, expected: int, app_name: str, user_id: str,
                      scoped: _ScopedDelta) -> int:
        """Append ``message`` at ``expected`` and the app and user state changes, all in one transaction."""
        scopes = [(_key(_APP_KIND, app_name), scoped.app), (_key(_USER_KIND, app_name, user_id), scoped.user)]
        async with self._store.transaction() as tx:
            appended = tx.append(key, message, expected_version=expected)
            changed = [(scope, tx.append(scope, _message("system", "", {"delta": delta, "by": key})))
                       for scope, delta in scopes if delta]
        for scope, version in changed:
            await self._compact(scope, version.result)
        return appended.result

    async def _compact(self, scope: str, version: int) -> None:
        """Make a scope's many changes one (with ``replace_messages``: the changes stay in the log), so reading
        its state never folds more than ``_SCOPE_CHANGES_KEPT`` of them. Skipped when another writer changed
        the scope since ``version``: its own write compacts it."""
        messages = await self._store.load(scope)
        if len(messages) > _SCOPE_CHANGES_KEPT:
            state = self._scopes.fold(scope, messages)
            change = {"delta": state, "by": _fold_origins(scope, messages)}
            with contextlib.suppress(WrongExpectedVersion):
                await self._store.replace_messages(scope, [_message("system", "", change)], expected_version=version)

    async def redact_session(self, *, app_name: str, user_id: str, session_id: str, reason: str) -> None:
        """Make the session's events and state unrecoverable (the store's ``redact``, which keeps the chain
        verifiable), and the ``app:`` and ``user:`` values it set: in one transaction.

        A value the session set last goes from the app or user state; one another session set since stays. The
        app or user state's earlier changes are redacted with it (a redaction blanks every change of a state,
        as no change may keep a value of the redacted session readable), and the values that stay are written
        again as one change.

        Raises:
            SessionNotFoundError: the session never existed.
            InvalidArgument: ``reason`` is empty.
        """
        key = session_key(app_name, user_id, session_id)
        for _ in range(_REDACTION_ATTEMPTS):
            current = await self._store.session_at(key)
            if current.version == 0:
                raise SessionNotFoundError(f"Session {session_id} not found.")
            set_by_session = _set_by(current.messages, key)
            scopes = []
            for scope, values in ((_key(_APP_KIND, app_name), set_by_session.app),
                                  (_key(_USER_KIND, app_name, user_id), set_by_session.user)):
                read = await self._store.session_at(scope)
                scopes.append(_scope_redaction(scope, read.version, read.messages, key, values))
            try:
                await self._redact_together(key, current.version, reason, [scope for scope in scopes if scope])
                return
            except WrongExpectedVersion:
                continue  # another writer changed the session or a state since it was read: read again
        raise StaleSessionError(_STALE)

    async def _redact_together(self, key: str, version: int, reason: str, scopes: Sequence[_ScopeRedaction]
                               ) -> None:
        async with self._store.transaction() as tx:
            tx.redact(key, reason, expected_version=version)
            for scope in scopes:
                tx.redact(scope.key, f"{reason} (values set by {key}, which was redacted)",
                          expected_version=scope.version)
                if scope.state:
                    tx.append(scope.key, _message("system", "", {"delta": scope.state, "by": scope.origins}))
