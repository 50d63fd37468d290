"""Agents run by the SDK's ``Runner`` with the SDK's scripted test model, their memory an ``EventStoreSession``:
several turns, a tool call, streaming, a retry that pops the last exchange, a store reopened between turns, and the
SDK's automatic compaction (one event, which restore undoes)."""

from __future__ import annotations

import json
from pathlib import Path
from types import SimpleNamespace
from typing import Any, cast

from agents import Agent, Runner, function_tool
from agents.memory import OpenAIResponsesCompactionSession
from agents.testing import ScriptedModel, assistant_message, function_call

from eventstore import AsyncSessionStore, SessionStore
from eventstore.integrations.openai_agents import EventStoreSession, message_to_item

from .conftest import on_a_loop

KEY = "user-42"


def contents(items: list[Any]) -> list[str]:
    """The text of each message item: a str content, or its parts' texts joined."""
    def text(item: Any) -> str:
        content = item.get("content")
        return content if isinstance(content, str) else "".join(part["text"] for part in content)
    return [text(item) for item in items]


@on_a_loop
async def test_turns_see_the_conversation_so_far(store: SessionStore | AsyncSessionStore) -> None:
    model = ScriptedModel([[assistant_message("Paris.")], [assistant_message("About 2.1 million.")],
                           [assistant_message("You asked about Paris.")]])
    agent, session = Agent(name="guide", model=model), EventStoreSession(KEY, store)
    for question in ("Capital of France?", "Its population?", "What did I ask first?"):
        await Runner.run(agent, question, session=session)
    assert contents(await session.get_items()) == [
        "Capital of France?", "Paris.", "Its population?", "About 2.1 million.", "What did I ask first?",
        "You asked about Paris."]
    # The model saw the whole conversation, exactly as stored, and then the new question.
    assert model.calls[-1].input == [*(await session.get_items())[:-2], {"content": "What did I ask first?",
                                                                         "role": "user"}]


@on_a_loop
async def test_a_tool_call_and_its_output_are_stored_and_sent_back_exactly(
        store: SessionStore | AsyncSessionStore, sync_store: SessionStore) -> None:
    @function_tool
    def add(a: int, b: float) -> str:
        """Add two numbers."""
        return json.dumps({"sum": a + b})

    model = ScriptedModel([[function_call("add", {"a": 1, "b": 2.5}, call_id="call_1")],
                           [assistant_message("It is 3.5.")], [assistant_message("Yes.")]])
    agent, session = Agent(name="calc", model=model, tools=[add]), EventStoreSession(KEY, store)
    await Runner.run(agent, "1 + 2.5?", session=session)
    items = await session.get_items()
    assert [item.get("type") for item in items] == [None, "function_call", "function_call_output", "message"]
    assert items[2]["output"] == '{"sum": 3.5}'  # type: ignore[typeddict-item]
    assert [(m.role, m.content) for m in sync_store.load(KEY)] == [
        ("user", "1 + 2.5?"), ("assistant", '{"a":1,"b":2.5}'), ("tool", '{"sum": 3.5}'), ("assistant", "It is 3.5.")]

    await Runner.run(agent, "Sure?", session=session)
    assert model.calls[-1].input[:4] == items


@on_a_loop
async def test_a_streamed_run_stores_its_turn(store: SessionStore | AsyncSessionStore) -> None:
    model = ScriptedModel([[assistant_message("Streamed hello.")]])
    session = EventStoreSession(KEY, store)
    result = Runner.run_streamed(Agent(name="streamer", model=model), "Hello?", session=session)
    async for _event in result.stream_events():
        pass
    assert contents(await session.get_items()) == ["Hello?", "Streamed hello."]


@on_a_loop
async def test_a_retry_pops_the_last_exchange_and_history_keeps_it(
        store: SessionStore | AsyncSessionStore, sync_store: SessionStore) -> None:
    model = ScriptedModel([[assistant_message("Lyon.")], [assistant_message("Madrid.")],
                           [assistant_message("Paris.")]])
    agent, session = Agent(name="geo", model=model), EventStoreSession(KEY, store)
    await Runner.run(agent, "Capital of Spain?", session=session)
    await Runner.run(agent, "Capital of Frnace?", session=session)
    before_retry = sync_store.history(KEY)[-1].version

    # The user corrects a typo: drop the last question and its answer, and ask again.
    answer, question = await session.pop_item(), await session.pop_item()
    assert contents([question, answer]) == ["Capital of Frnace?", "Madrid."]
    result = await Runner.run(agent, "Capital of France?", session=session)
    assert result.final_output == "Paris."
    assert "Capital of Frnace?" not in contents(model.calls[-1].input)
    assert contents(await session.get_items()) == [
        "Capital of Spain?", "Lyon.", "Capital of France?", "Paris."]

    # Nothing is lost: the popped exchange is in the history, and restore brings that state back.
    popped = [event.event.type_name for event in sync_store.history(KEY)[before_retry:before_retry + 2]]
    assert popped == ["LastMessageRemoved", "LastMessageRemoved"]
    then = [message_to_item(m) for m in sync_store.session_at(KEY, version=before_retry).messages]
    assert then[-2:] == [question, answer]
    sync_store.restore(KEY, version=before_retry)
    assert contents(await session.get_items())[-2:] == ["Capital of Frnace?", "Madrid."]


@on_a_loop
async def test_a_conversation_goes_on_in_a_reopened_store(tmp_path: Path) -> None:
    path = tmp_path / "store"
    model = ScriptedModel([[assistant_message("Noted: you like tea.")], [assistant_message("Tea.")]])
    agent = Agent(name="memory", model=model)
    async with AsyncSessionStore(path) as store:
        await Runner.run(agent, "I like tea.", session=EventStoreSession(KEY, store))
    with SessionStore(path) as store:  # another process, another kind of store: the same session
        result = await Runner.run(agent, "What do I like?", session=EventStoreSession(KEY, store))
    assert result.final_output == "Tea."
    assert contents(model.calls[-1].input) == ["I like tea.", "Noted: you like tea.", "What do I like?"]


class CompactingClient:
    """The part of an OpenAI client that ``OpenAIResponsesCompactionSession`` calls: ``responses.compact``,
    answering one compaction item for whatever it is given, and keeping what it was given."""

    def __init__(self) -> None:
        self.responses, self.inputs = self, list[Any]()

    async def compact(self, **request: Any) -> SimpleNamespace:
        self.inputs.append(request["input"])
        return SimpleNamespace(output=[{"type": "compaction", "id": "cmp_1", "encrypted_content": "summary"}],
                               usage=None)


@on_a_loop
async def test_automatic_compaction_replaces_the_turn_in_one_event_that_restore_undoes(
        store: SessionStore | AsyncSessionStore, sync_store: SessionStore) -> None:
    client = CompactingClient()
    session = EventStoreSession(KEY, store)
    compacting = OpenAIResponsesCompactionSession(KEY, session, client=cast(Any, client), compaction_mode="input",
                                                  should_trigger_compaction=lambda _context: True)
    model = ScriptedModel([[assistant_message("A long answer.")]])
    await Runner.run(Agent(name="long", model=model), "A long question?", session=compacting)

    assert contents(client.inputs[0]) == ["A long question?", "A long answer."]
    assert await session.get_items() == [{"type": "compaction", "id": "cmp_1", "encrypted_content": "summary"}]
    replaced = sync_store.history(KEY)[-1]
    assert replaced.event.type_name == "MessagesReplaced"
    sync_store.restore(KEY, version=replaced.version - 1)
    assert contents(await session.get_items()) == ["A long question?", "A long answer."]


@on_a_loop
async def test_a_compaction_snapshot_replaces_nothing_once_the_session_has_moved_on(
        store: SessionStore | AsyncSessionStore) -> None:
    session = EventStoreSession(KEY, store)
    await session.add_items([{"role": "user", "content": f"old {n}"} for n in range(3)])
    snapshot = await session._get_compaction_snapshot(2)
    assert (contents(snapshot.items), snapshot.complete) == (["old 1", "old 2"], False)
    assert not await snapshot.replace_suffix(2, [])  # past the end
    await session.add_items([{"role": "user", "content": "new"}])
    assert not await snapshot.replace_suffix(0, [{"role": "user", "content": "summary"}])
    assert contents(await session.get_items()) == ["old 0", "old 1", "old 2", "new"]

    snapshot = await session._get_compaction_snapshot(9, prune_prefix=lambda item: item.get("content") == "old 0")
    assert snapshot.complete
    assert await snapshot.replace_suffix(2, [{"role": "user", "content": "summary"}])
    assert contents(await session.get_items()) == ["old 1", "summary"]
