"""``EventStoreSession`` through the SDK's ``Session`` protocol: every item shape comes back exactly, limits and
settings behave as ``SQLiteSession``'s, ``pop_item`` and ``clear_session`` are events that ``history`` shows and
``restore`` undoes, a cancelled write finishes before its caller sees the cancellation, and any sequence of calls
matches a plain list."""

from __future__ import annotations

import asyncio
import json
import subprocess
import sys
import threading
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, cast

import pytest
from agents import TResponseInputItem
from agents.memory import Session, SessionSettings
from hypothesis import example, given
from hypothesis import strategies as st

from eventstore import (
    MAX_KEY_BYTES,
    AsyncSessionStore,
    ChatMessage,
    InvalidArgument,
    InvalidMessage,
    InvalidSessionKey,
    SessionStore,
)
from eventstore.integrations.openai_agents import EventStoreSession, item_to_message, message_to_item
from eventstore.storage import MemoryStorage

from .conftest import STORE_KINDS, on_a_loop, open_store
from .items import ITEM_SHAPES
from strategies import json_payloads

KEY = "user-42"
ALL_SHAPES = [cast(TResponseInputItem, item) for item in ITEM_SHAPES.values()]


def assert_exactly(got: object, expected: object) -> None:
    """Equal, and equal as JSON: ``1`` and ``1.0``, ``True`` and ``1`` or two key orders tell apart."""
    assert got == expected
    assert json.dumps(got) == json.dumps(expected)


# -- items --------------------------------------------------------------------------------------------------

@pytest.mark.parametrize("name", list(ITEM_SHAPES))
def test_each_item_shape_round_trips_through_a_message(name: str) -> None:
    item = cast(TResponseInputItem, ITEM_SHAPES[name])
    assert_exactly(message_to_item(item_to_message(item)), item)


@on_a_loop
async def test_every_item_shape_comes_back_exactly_in_order(store: SessionStore | AsyncSessionStore,
                                                            tmp_path: Path) -> None:
    session = EventStoreSession(KEY, store)
    await session.add_items(ALL_SHAPES[:10])
    await session.add_items(ALL_SHAPES[10:])
    assert_exactly(await session.get_items(), ALL_SHAPES)
    with SessionStore(tmp_path / "store") as reopened:  # a store of its own: decoded from the stored events
        assert_exactly(await EventStoreSession(KEY, reopened).get_items(), ALL_SHAPES)


def test_a_message_holds_the_items_role_and_text_for_search_and_the_command_line() -> None:
    def stored(name: str) -> tuple[str, str]:
        message = item_to_message(cast(TResponseInputItem, ITEM_SHAPES[name]))
        return message.role, message.content

    assert stored("easy input message") == ("user", "What is LMDB?")
    assert stored("input message with parts") == ("user", "What is in this picture and this file?")
    assert stored("output message") == ("assistant", "LMDB is a memory-mapped key-value store.")
    assert stored("function call") == ("assistant", '{"city": "Paris", "days": 3}')
    assert stored("function call output") == ("tool", "Sunny, 21.5 °C")
    assert stored("function call output with parts") == ("tool", "a chart")
    assert stored("reasoning") == ("assistant", "Call get_weather for Paris.\nThe user wants the weather.")
    assert stored("computer call output") == ("tool", "")
    assert stored("item reference") == ("assistant", "")
    # The content must be valid Unicode: a lone surrogate reads as U+FFFD there, and exactly in the item.
    assert stored("strings") == ("user", "lone \ufffd high, \ufffd low, NUL \x00, emoji \U0001F600")


@on_a_loop
async def test_search_finds_items_by_their_text(sync_store: SessionStore) -> None:
    await EventStoreSession(KEY, sync_store).add_items([cast(TResponseInputItem, ITEM_SHAPES["function call output"])])
    [hit] = sync_store.search_messages("sunny")
    assert (hit.session_key, hit.message.role, hit.message.content) == (KEY, "tool", "Sunny, 21.5 °C")


@on_a_loop
async def test_a_message_written_without_a_payload_reads_as_an_input_message(sync_store: SessionStore) -> None:
    sync_store.append_many(KEY, [ChatMessage.system("Be brief."), ChatMessage.user("Hi")])
    assert await EventStoreSession(KEY, sync_store).get_items() == [
        {"role": "system", "content": "Be brief."}, {"role": "user", "content": "Hi"}]


@on_a_loop
async def test_a_redacted_item_reads_as_an_input_message_the_model_takes(sync_store: SessionStore) -> None:
    """A redaction leaves each payload empty; an empty item would make the model's API refuse the whole turn."""
    session = EventStoreSession(KEY, sync_store)
    await session.add_items([cast(TResponseInputItem, item) for item in (
        ITEM_SHAPES["easy input message"], ITEM_SHAPES["function call"], ITEM_SHAPES["function call output"], {})])
    assert {} == cast(dict[str, Any], (await session.get_items())[-1])  # an empty item of the caller's stays one
    sync_store.redact(KEY, "user request")
    assert await session.get_items() == [
        {"role": "user", "content": "[redacted]"}, {"role": "assistant", "content": "[redacted]"},
        {"role": "assistant", "content": "[redacted]"}, {"role": "assistant", "content": "[redacted]"}]


@on_a_loop
async def test_an_item_that_is_not_a_json_object_is_refused_and_nothing_is_written(sync_store: SessionStore) -> None:
    session = EventStoreSession(KEY, sync_store)
    good: TResponseInputItem = {"role": "user", "content": "kept out too"}
    for bad in ("a string", {"role": "user", "content": b"bytes"}, {"role": "user", "tags": {"a", "set"}},
                {"role": "user", "score": float("nan")}):
        with pytest.raises(InvalidMessage):
            await session.add_items([good, cast(TResponseInputItem, bad)])
    assert await session.get_items() == []
    assert sync_store.history(KEY) == []


# -- the protocol, limits and settings ----------------------------------------------------------------------

def test_it_is_a_session_of_the_sdk(sync_store: SessionStore) -> None:
    session = EventStoreSession(KEY, sync_store)
    assert isinstance(session, Session)
    assert (session.session_id, session.session_settings) == (KEY, SessionSettings())
    assert repr(session) == "EventStoreSession('user-42')"


def test_a_store_of_another_kind_is_refused(tmp_path: Path) -> None:
    with pytest.raises(InvalidArgument, match="SessionStore or an AsyncSessionStore, not str"):
        EventStoreSession(KEY, cast(SessionStore, str(tmp_path)))


@on_a_loop
async def test_a_session_id_the_store_cannot_take_fails_on_first_write(sync_store: SessionStore) -> None:
    for bad in ("", "nul\x00inside", "x" * (MAX_KEY_BYTES + 1)):
        with pytest.raises(InvalidSessionKey):
            await EventStoreSession(bad, sync_store).add_items([{"role": "user", "content": "hello"}])


@on_a_loop
async def test_limits_give_the_latest_items_as_sqlite_session_does(store: SessionStore | AsyncSessionStore) -> None:
    items = [cast(TResponseInputItem, {"role": "user", "content": f"item {n}"}) for n in range(5)]
    session = EventStoreSession(KEY, store)
    await session.add_items(items)
    assert await session.get_items(limit=2) == items[-2:]
    assert await session.get_items(limit=9) == items
    assert await session.get_items(limit=0) == []
    assert await session.get_items(limit=-1) == items  # SQLite's LIMIT -1: no limit
    limited = EventStoreSession(KEY, store, session_settings=SessionSettings(limit=3))
    assert await limited.get_items() == items[-3:]
    assert await limited.get_items(limit=1) == items[-1:]
    assert await EventStoreSession(KEY, store, session_settings={"limit": 4}).get_items() == items[-4:]


class _NoWholeLoads(SessionStore):
    """A store whose whole-session ``load`` fails: what reads only the latest items never calls it."""

    def load(self, key: str, version: int | None = None, as_of: datetime | None = None) -> list[ChatMessage]:
        raise AssertionError("a limited read loaded the whole session")


@on_a_loop
async def test_a_limited_read_reads_only_the_latest_items() -> None:
    items = [cast(TResponseInputItem, {"role": "user", "content": f"item {n}"}) for n in range(300)]
    with _NoWholeLoads.on_storage(MemoryStorage(), cache_sessions=0) as store:
        session = EventStoreSession(KEY, store, session_settings=SessionSettings(limit=7))
        await session.add_items(items)
        assert await session.get_items() == items[-7:]
        assert await session.get_items(limit=0) == []
        with pytest.raises(AssertionError, match="whole session"):
            await session.get_items(limit=-1)


@on_a_loop
async def test_sessions_are_independent_and_write_concurrently(store: SessionStore | AsyncSessionStore) -> None:
    sessions = [EventStoreSession(f"user-{n}", store) for n in range(8)]

    async def talk(session: EventStoreSession) -> None:
        for turn in range(5):
            await session.add_items([{"role": "user", "content": f"{session.session_id} turn {turn}"}])

    await asyncio.gather(*(talk(session) for session in sessions))
    for session in sessions:
        assert [item.get("content") for item in await session.get_items()] == [
            f"{session.session_id} turn {turn}" for turn in range(5)]


# -- pop and clear are events -------------------------------------------------------------------------------

@on_a_loop
async def test_pop_item_is_an_event_that_history_shows_and_restore_undoes(
        store: SessionStore | AsyncSessionStore, sync_store: SessionStore) -> None:
    session = EventStoreSession(KEY, store)
    items = ALL_SHAPES[:4]
    await session.add_items(items)
    assert_exactly(await session.pop_item(), items[-1])
    assert_exactly(await session.pop_item(), items[-2])
    assert await session.get_items() == items[:2]

    popped = sync_store.history(KEY)[-2:]
    assert [event.event.type_name for event in popped] == ["LastMessageRemoved"] * 2
    before = popped[0].version - 1
    assert_exactly([message_to_item(m) for m in sync_store.session_at(KEY, version=before).messages], items)
    sync_store.restore(KEY, version=before)
    assert_exactly(await session.get_items(), items)


@on_a_loop
async def test_pop_item_of_an_empty_session_is_none_and_records_nothing(
        store: SessionStore | AsyncSessionStore, sync_store: SessionStore) -> None:
    session = EventStoreSession(KEY, store)
    assert await session.pop_item() is None
    await session.add_items([{"role": "user", "content": "only"}])
    assert await session.pop_item() == {"role": "user", "content": "only"}
    assert await session.pop_item() is None
    assert [event.event.type_name for event in sync_store.history(KEY)] == ["MessageAppended", "LastMessageRemoved"]


@on_a_loop
async def test_clear_session_is_an_event_that_history_shows_and_restore_undoes(
        store: SessionStore | AsyncSessionStore, sync_store: SessionStore) -> None:
    session = EventStoreSession(KEY, store)
    await session.add_items(ALL_SHAPES)
    await session.clear_session()
    assert await session.get_items() == []
    cleared = sync_store.history(KEY)[-1]
    assert cleared.event.type_name == "MessagesCleared"
    sync_store.restore(KEY, version=cleared.version - 1)
    assert_exactly(await session.get_items(), ALL_SHAPES)
    await session.clear_session()
    await session.clear_session()  # nothing left to clear: no event
    assert sync_store.history(KEY)[-1].event.type_name == "MessagesCleared"
    assert len(sync_store.history(KEY)) == len(ALL_SHAPES) + 3


# -- cancellation -------------------------------------------------------------------------------------------

class GatedClock:
    """The store's clock, which a test can hold shut: a write that reads it then waits in its thread."""

    def __init__(self) -> None:
        self.entered = threading.Event()
        self.gate = threading.Event()
        self.gate.set()

    def __call__(self) -> datetime:
        self.entered.set()
        assert self.gate.wait(10)
        return datetime.now(UTC)


@pytest.mark.parametrize("kind", STORE_KINDS)
@pytest.mark.parametrize("operation", ["add", "pop", "clear"])
@on_a_loop
async def test_a_cancelled_write_finishes_before_its_caller_sees_the_cancellation(
        kind: str, operation: str, tmp_path: Path) -> None:
    clock = GatedClock()
    store = open_store(kind, tmp_path / "store", clock=clock)
    try:
        session = EventStoreSession(KEY, store)
        item: TResponseInputItem = {"role": "user", "content": "once"}
        if operation != "add":
            await session.add_items([item])
        clock.entered.clear()
        clock.gate.clear()
        write = {"add": lambda: session.add_items([item]), "pop": session.pop_item, "clear": session.clear_session}
        task = asyncio.create_task(write[operation]())
        assert await asyncio.to_thread(clock.entered.wait, 10)
        for _ in range(2):  # cancelled twice: still waits
            task.cancel()
            await asyncio.sleep(0.01)
        assert not task.done()  # the caller is still waiting for the write under way
        clock.gate.set()
        with pytest.raises(asyncio.CancelledError):
            await task
        assert await session.get_items() == ([item] if operation == "add" else [])
    finally:
        clock.gate.set()
        if isinstance(store, AsyncSessionStore):
            await store.close()
        else:
            store.close()


# -- against a plain list -----------------------------------------------------------------------------------

items = json_payloads.map(lambda payload: cast(TResponseInputItem, payload))
calls = st.lists(st.one_of(
    st.tuples(st.just("add"), st.lists(items, max_size=3)),
    st.tuples(st.just("pop")),
    st.tuples(st.just("clear")),
    st.tuples(st.just("get"), st.none() | st.integers(-2, 6)),
), max_size=12)


def latest(model: list[TResponseInputItem], limit: int | None) -> list[TResponseInputItem]:
    """``SQLiteSession``'s limits: none or a negative one gives all, 0 none, n the latest n."""
    if limit is None or limit < 0:
        return model
    return model[-limit:] if limit else []


@given(calls)
@example([("add", [{"\ud800": [1, 1.0, True]}, {}]), ("get", 1), ("pop",), ("get", None)])
def test_any_sequence_of_calls_matches_a_list(script: list[tuple[Any, ...]]) -> None:
    async def run() -> None:
        with SessionStore.on_storage(MemoryStorage()) as store:
            session, model = EventStoreSession(KEY, store), list[TResponseInputItem]()
            for call in script:
                if call[0] == "add":
                    await session.add_items(call[1])
                    model.extend(call[1])
                elif call[0] == "pop":
                    assert_exactly(await session.pop_item(), model.pop() if model else None)
                elif call[0] == "clear":
                    await session.clear_session()
                    model.clear()
                else:
                    assert_exactly(await session.get_items(call[1]), latest(model, call[1]))
            assert_exactly(await session.get_items(), model)

    asyncio.run(run())


# -- packaging ----------------------------------------------------------------------------------------------

def test_importing_the_store_does_not_import_the_sdk() -> None:
    probe = ("import sys, eventstore; eventstore.SessionStore; eventstore.AsyncSessionStore; "
             "import eventstore.integrations; print('agents' in sys.modules, 'openai' in sys.modules)")
    result = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, check=True)
    assert result.stdout.split() == ["False", "False"]
