"""LangGraph graphs compiled with ``EventStoreSaver``, driven through LangGraph's public API.

Each script runs the same calls on a graph with our saver and on one with LangGraph's ``InMemorySaver`` (the
plain in-memory model, whose channel versions never collide); their histories must match checkpoint for
checkpoint: values, next nodes, source, step, parent, interrupts. What the conformance suite does not reach:
forks and time travel (a branch started from an older checkpoint writes channel versions another branch has
written already), interrupts resumed after the store was reopened, subgraph namespaces, the async graph API
on an ``AsyncSessionStore``, list channels stored as tails (branches whose lists diverge, removed messages,
threads stored whole by earlier versions).
"""

from __future__ import annotations

import asyncio
import base64
import operator
from collections.abc import Iterable
from pathlib import Path
from typing import Annotated, Any, TypedDict

import pytest
from langchain_core.messages import AIMessage, HumanMessage, RemoveMessage
from langchain_core.runnables import RunnableConfig
from langgraph.checkpoint.base import BaseCheckpointSaver
from langgraph.checkpoint.memory import InMemorySaver
from langgraph.graph import END, START, MessagesState, StateGraph
from langgraph.graph.message import REMOVE_ALL_MESSAGES
from langgraph.graph.state import CompiledStateGraph
from langgraph.types import Command, StateSnapshot, interrupt

from eventstore import AsyncSessionStore, SessionStore
from eventstore.events import MessageAppended
from eventstore.integrations import _langgraph_blobs as langgraph_blobs
from eventstore.integrations import langgraph as langgraph_saver
from eventstore.integrations._langgraph_blobs import MAX_TAIL_DEPTH
from eventstore.integrations.langgraph import EventStoreSaver

THREAD: RunnableConfig = {"configurable": {"thread_id": "thread-1"}}



def third_turn_as_in_memory(store: SessionStore) -> None:
    """After two turns ("one", "two") that the test stored its own way, a third turn by a new saver: the thread's
    history equals an in-memory saver's of the three."""
    graph = chat_graph(EventStoreSaver(store))
    say(graph, "three")
    expected = chat_graph(InMemorySaver())
    for text in ("one", "two", "three"):
        say(expected, text)
    assert normalized(expected.get_state_history(THREAD)) == normalized(graph.get_state_history(THREAD))

class State(TypedDict):
    log: Annotated[list[str], operator.add]


def _plan(state: State) -> dict[str, list[str]]:
    return {"log": ["plan"]}


def _act(state: State) -> dict[str, list[str]]:
    return {"log": ["act"]}


def _ask(state: State) -> dict[str, list[str]]:
    return {"log": [f"answer:{interrupt('approve?')}"]}


def steps_graph(checkpointer: BaseCheckpointSaver[Any] | None) -> CompiledStateGraph[Any, Any, Any, Any]:
    """START -> plan -> act -> END: each turn appends the input, "plan" and "act" to the log."""
    builder = StateGraph(State)
    builder.add_node("plan", _plan)
    builder.add_node("act", _act)
    builder.add_edge(START, "plan")
    builder.add_edge("plan", "act")
    builder.add_edge("act", END)
    return builder.compile(checkpointer=checkpointer)


def asking_graph(checkpointer: BaseCheckpointSaver[Any] | None) -> CompiledStateGraph[Any, Any, Any, Any]:
    """START -> plan -> ask -> END, where ``ask`` interrupts for an answer."""
    builder = StateGraph(State)
    builder.add_node("plan", _plan)
    builder.add_node("ask", _ask)
    builder.add_edge(START, "plan")
    builder.add_edge("plan", "ask")
    builder.add_edge("ask", END)
    return builder.compile(checkpointer=checkpointer)


def nested_graph(checkpointer: BaseCheckpointSaver[Any]) -> CompiledStateGraph[Any, Any, Any, Any]:
    """START -> plan -> inner -> END, where ``inner`` is the asking graph as a subgraph (its own namespace)."""
    builder = StateGraph(State)
    builder.add_node("plan", _plan)
    builder.add_node("inner", asking_graph(None))
    builder.add_edge(START, "plan")
    builder.add_edge("plan", "inner")
    builder.add_edge("inner", END)
    return builder.compile(checkpointer=checkpointer)


def normalized(history: Iterable[StateSnapshot]) -> list[tuple[Any, ...]]:
    """A history without its ids: each checkpoint's values, next nodes, source, step, interrupts, and its
    parent as a position in the history."""
    snapshots = list(history)
    position = {snapshot.config["configurable"]["checkpoint_id"]: n for n, snapshot in enumerate(snapshots)}
    return [(snapshot.values, snapshot.next, snapshot.metadata["source"] if snapshot.metadata else None,
             snapshot.metadata["step"] if snapshot.metadata else None,
             [(task.name, [each.value for each in task.interrupts]) for task in snapshot.tasks],
             None if snapshot.parent_config is None
             else position.get(snapshot.parent_config["configurable"]["checkpoint_id"], "missing"))
            for snapshot in snapshots]


def time_travel(graph: CompiledStateGraph[Any, Any, Any, Any]) -> tuple[list[tuple[Any, ...]], list[Any]]:
    """Two turns, then a branch from the end of the first turn and an edit of a checkpoint inside it; the
    history, and the values read back then at the checkpoints the branches started from and passed."""
    graph.invoke({"log": ["u1"]}, THREAD)
    first_turn = graph.get_state(THREAD)
    graph.invoke({"log": ["u2"]}, THREAD)
    second_turn = graph.get_state(THREAD)
    inside_first = next(snapshot for snapshot in graph.get_state_history(THREAD)
                        if snapshot.next == ("act",) and "u2" not in snapshot.values["log"])
    branched = graph.invoke({"log": ["b1"]}, first_turn.config)
    edited = graph.update_state(inside_first.config, {"log": ["edited"]})
    resumed = graph.invoke(None, edited)
    read_back = [graph.get_state(snapshot.config).values for snapshot in (first_turn, second_turn, inside_first)]
    return normalized(graph.get_state_history(THREAD)), [branched, resumed, *read_back]


class TestTimeTravel:
    def test_branches_from_older_checkpoints_match_the_in_memory_saver(self, saver: EventStoreSaver):
        assert time_travel(steps_graph(InMemorySaver())) == time_travel(steps_graph(saver))

    def test_a_branch_never_overwrites_another(self, saver: EventStoreSaver):
        """The branches write channel versions that the second turn wrote already: each reads its own."""
        history, (branched, resumed, first, second, inside) = time_travel(steps_graph(saver))
        assert {"log": ["u1", "plan", "act", "b1", "plan", "act"]} == branched
        assert {"log": ["u1", "plan", "edited", "act"]} == resumed
        assert {"log": ["u1", "plan", "act"]} == first
        assert {"log": ["u1", "plan", "act", "u2", "plan", "act"]} == second
        assert {"log": ["u1", "plan"]} == inside
        finished = [values["log"] for values, next_nodes, *_ in history if not next_nodes]
        assert [["u1", "plan", "edited", "act"], ["u1", "plan", "act", "b1", "plan", "act"],
                ["u1", "plan", "act", "u2", "plan", "act"], ["u1", "plan", "act"]] == finished

    def test_every_checkpoint_is_an_event_of_the_thread(self, saver: EventStoreSaver, store: SessionStore):
        history, _ = time_travel(steps_graph(saver))
        [key] = store.list_sessions()
        appended = [recorded.event.message for recorded in store.history(key)
                    if isinstance(recorded.event, MessageAppended)]
        assert len(history) == len([message for message in appended if message.role == "checkpoint"])
        assert store.verify().ok


def ask(graph: CompiledStateGraph[Any, Any, Any, Any], config: RunnableConfig) -> list[Any]:
    """A turn that stops at the interrupt: what ``invoke`` returned, and where the thread stands."""
    result = graph.invoke({"log": ["u1"]}, config)
    state = graph.get_state(config, subgraphs=True)
    waiting = [(task.name, [each.value for each in task.interrupts]) for task in state.tasks]
    return [[each.value for each in result["__interrupt__"]], result["log"], state.next, waiting]


def answer(graph: CompiledStateGraph[Any, Any, Any, Any], config: RunnableConfig) -> list[Any]:
    """The resumed turn: its result and the thread's history."""
    return [graph.invoke(Command(resume="yes"), config), normalized(graph.get_state_history(config))]


class TestInterrupts:
    def test_resume_after_the_store_was_reopened(self, store_path: Path):
        model = InMemorySaver()
        expected = ask(asking_graph(model), THREAD) + answer(asking_graph(model), THREAD)
        with SessionStore(store_path, durable=False) as store:
            asked = ask(asking_graph(EventStoreSaver(store)), THREAD)
        with SessionStore(store_path, durable=False) as store:
            answered = answer(asking_graph(EventStoreSaver(store)), THREAD)
        assert expected == asked + answered
        assert [["approve?"], ["u1", "plan"], ("ask",), [("ask", ["approve?"])]] == asked
        assert {"log": ["u1", "plan", "answer:yes"]} == answered[0]

    def test_a_subgraph_interrupt_keeps_its_own_namespace(self, saver: EventStoreSaver, store: SessionStore):
        model = InMemorySaver()
        expected = ask(nested_graph(model), THREAD) + answer(nested_graph(model), THREAD)
        graph = nested_graph(saver)
        asked = ask(graph, THREAD)
        keys = store.list_sessions()
        assert expected == asked + answer(graph, THREAD)
        assert 2 == len(keys)  # the root namespace and the subgraph's
        saver.delete_thread("thread-1")
        assert [] == store.list_sessions()
        assert {} == graph.get_state(THREAD).values


async def async_script(graph: CompiledStateGraph[Any, Any, Any, Any]) -> list[Any]:
    """The async graph API: a turn with an interrupt, its resume, then an edit of an early checkpoint."""
    first = await graph.ainvoke({"log": ["u1"]}, THREAD)
    done = await graph.ainvoke(Command(resume="yes"), THREAD)
    history = [snapshot async for snapshot in graph.aget_state_history(THREAD)]
    edited = await graph.aupdate_state(history[-3].config, {"log": ["edited"]})
    branched = await graph.ainvoke(None, edited)
    asked_again = [each.value for each in branched["__interrupt__"]]  # an interrupt's id differs by saver
    return [first["log"], done, branched["log"], asked_again,
            normalized([snapshot async for snapshot in graph.aget_state_history(THREAD)])]


class TestAsyncGraphs:
    def test_on_an_async_store(self, store_path: Path):
        async def on_our_saver() -> list[Any]:
            async with AsyncSessionStore(store_path, durable=False) as store:
                return await async_script(asking_graph(EventStoreSaver(store)))

        ours = asyncio.run(on_our_saver())
        assert asyncio.run(async_script(asking_graph(InMemorySaver()))) == ours
        assert {"log": ["u1", "plan", "answer:yes"]} == ours[1]

    def test_on_a_store(self, saver: EventStoreSaver):
        assert asyncio.run(async_script(asking_graph(InMemorySaver()))) == asyncio.run(
            async_script(asking_graph(saver)))


# -- list channels stored as the tails their checkpoints added ------------------------------------------------------

def _chat(state: MessagesState) -> dict[str, list[Any]]:
    """Answers the last message; "forget" removes the thread's first message, "clear" every message."""
    messages = state["messages"]
    said = str(messages[-1].content)
    if said == "forget":
        return {"messages": [RemoveMessage(id=str(messages[0].id)), AIMessage("forgot", id=f"ai-{said}")]}
    if said == "clear":
        return {"messages": [RemoveMessage(id=REMOVE_ALL_MESSAGES)]}
    return {"messages": [AIMessage(said[::-1], id=f"ai-{said}")]}


def chat_graph(checkpointer: BaseCheckpointSaver[Any]) -> CompiledStateGraph[Any, Any, Any, Any]:
    builder = StateGraph(MessagesState)
    builder.add_node("chat", _chat)
    builder.add_edge(START, "chat")
    builder.add_edge("chat", END)
    return builder.compile(checkpointer=checkpointer)


def say(graph: CompiledStateGraph[Any, Any, Any, Any], text: str, config: RunnableConfig = THREAD) -> Any:
    return graph.invoke({"messages": [HumanMessage(text, id=f"human-{text}")]}, config)


def chat_history(graph: CompiledStateGraph[Any, Any, Any, Any]) -> list[Any]:
    """Turns, a branch from the first turn whose messages diverge, a message removed, all messages removed, and
    turns after each: the history, and the values read back at the checkpoint the branch started from."""
    for text in ("one", "two", "three"):
        say(graph, text)
    first_turn = next(snapshot for snapshot in graph.get_state_history(THREAD)
                      if len(snapshot.values.get("messages", ())) == 2)
    say(graph, "branch", first_turn.config)
    for text in ("four", "forget", "five", "clear", "six"):
        say(graph, text)
    return [*normalized(graph.get_state_history(THREAD)), graph.get_state(first_turn.config).values]


def stored_messages_blobs(store: SessionStore) -> list[list[Any]]:
    """The stored form of the ``messages`` channel at each checkpoint that changed it, oldest first."""
    [key] = store.list_sessions()
    blobs = [(message.payload or {})["blobs"] for message in store.load(key) if message.role == "checkpoint"]
    return [each["messages"] for each in blobs if "messages" in each]


def is_tail(blob: list[Any]) -> bool:
    return bool("tail" == blob[0])


class TestListTails:
    def test_branches_and_removals_read_as_in_the_in_memory_saver(self, saver: EventStoreSaver, store: SessionStore):
        assert chat_history(chat_graph(InMemorySaver())) == chat_history(chat_graph(saver))
        stored = stored_messages_blobs(store)
        tails = [blob for blob in stored if is_tail(blob)]
        assert len(tails) > len(stored) // 2  # most checkpoints add a message to the one they follow
        assert store.verify().ok

    def test_a_removal_stores_the_whole_list(self, saver: EventStoreSaver, store: SessionStore):
        graph = chat_graph(saver)
        say(graph, "one")
        whole_before = len([blob for blob in stored_messages_blobs(store) if not is_tail(blob)])
        say(graph, "forget")
        stored = stored_messages_blobs(store)
        assert whole_before + 1 == len([blob for blob in stored if not is_tail(blob)])
        assert not is_tail(stored[-1])
        assert ["eno", "forget", "forgot"] == [each.content for each in graph.get_state(THREAD).values["messages"]]

    def test_a_long_thread_stores_its_list_whole_again_after_the_deepest_tail(self, saver: EventStoreSaver,
                                                                             store: SessionStore):
        graph, turns = chat_graph(saver), MAX_TAIL_DEPTH
        for turn in range(turns):
            say(graph, f"turn {turn}")
        stored = stored_messages_blobs(store)
        wholes = [position for position, blob in enumerate(stored) if not is_tail(blob)]
        assert wholes[:2] == [0, MAX_TAIL_DEPTH + 1]
        assert [f"turn {turn}" for turn in range(turns)] == [
            message.content for message in graph.get_state(THREAD).values["messages"][::2]]

    def test_a_thread_stored_whole_at_every_checkpoint_still_reads_and_grows(self, store: SessionStore,
                                                                            monkeypatch: pytest.MonkeyPatch):
        """Threads that savers without tails stored: every list value whole."""
        with monkeypatch.context() as without_tails:
            without_tails.setattr(langgraph_saver, "list_channels", lambda checkpoint, new_versions: [])
            for text in ("one", "two"):
                say(chat_graph(EventStoreSaver(store)), text)
            assert not any(map(is_tail, stored_messages_blobs(store)))
        third_turn_as_in_memory(store)
        assert any(map(is_tail, stored_messages_blobs(store)))

    def test_a_thread_stored_in_base64_still_reads_and_grows(self, store: SessionStore,
                                                             monkeypatch: pytest.MonkeyPatch):
        """Threads that savers before the text form stored: every blob's bytes in base64."""
        with monkeypatch.context() as in_base64:
            in_base64.setattr(langgraph_blobs, "_stored_bytes",
                              lambda data: [base64.b64encode(data).decode("ascii")])
            for text in ("one", "two"):
                say(chat_graph(EventStoreSaver(store)), text)
            assert {2, 4} == {len(blob) for blob in stored_messages_blobs(store)}
        third_turn_as_in_memory(store)
        assert "latin-1" == stored_messages_blobs(store)[-1][-1]

    def test_a_redacted_thread_reads_as_empty_and_starts_again(self, saver: EventStoreSaver, store: SessionStore):
        """A redaction removes every checkpoint's content: the thread must not read as damaged."""
        graph = chat_graph(saver)
        for text in ("my card is 4111", "two"):
            say(graph, text)
        [key] = store.list_sessions()
        store.redact(key, "the user asked")
        assert {} == graph.get_state(THREAD).values
        assert [] == list(graph.get_state_history(THREAD))
        say(graph, "three")
        assert ["three", "eerht"] == [message.content for message in graph.get_state(THREAD).values["messages"]]
        assert store.verify().ok
