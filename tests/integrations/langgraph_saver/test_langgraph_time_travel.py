"""Through LangGraph's graph API, on a thread long enough that its message list's base lies far back: forks from
older checkpoints, ``update_state`` at them (a message added, the list rewritten whole, another channel set),
interrupts with a parallel node's pending writes, another saver's turns and ``delete_thread``. After each step
the state a saver that has not read the thread reads from its end equals the state the saver that wrote it
reads, and the state ``InMemorySaver`` gives for the same steps; so do their histories at the end."""

from __future__ import annotations

import operator
from pathlib import Path
from typing import Annotated, Any
from unittest import mock

import pytest
from langchain_core.messages import AIMessage, AnyMessage, HumanMessage, RemoveMessage
from langchain_core.runnables import RunnableConfig
from langgraph.checkpoint.memory import InMemorySaver
from langgraph.graph import START, StateGraph, add_messages
from langgraph.graph.message import REMOVE_ALL_MESSAGES
from langgraph.graph.state import CompiledStateGraph
from langgraph.types import Command, StateSnapshot, interrupt
from typing_extensions import TypedDict

from eventstore import SessionStore
from eventstore.integrations import langgraph as langgraph_saver
from eventstore.integrations.langgraph import EventStoreSaver

THREAD: RunnableConfig = {"configurable": {"thread_id": "t"}}


class Chat(TypedDict):
    messages: Annotated[list[AnyMessage], add_messages]
    count: Annotated[int, operator.add]
    note: str


class Inner(TypedDict):
    messages: Annotated[list[AnyMessage], add_messages]


def reply(state: Inner) -> dict[str, Any]:
    """An answer; a question that asks waits for the caller's answer first (an interrupt)."""
    size = len(state["messages"])
    if "ask" in str(state["messages"][-1].content):
        return {"messages": [AIMessage(f"told {interrupt('which?')}", id=f"a{size}")]}
    return {"messages": [AIMessage(f"answer {size}", id=f"a{size}")]}


def side(state: Chat) -> dict[str, Any]:
    return {"note": f"side {state.get('count', 0)}", "count": 1}


def graph(saver: Any) -> CompiledStateGraph[Any, Any, Any, Any]:
    """The reply in a subgraph (a namespace of its own), beside a node whose writes wait while the reply asks."""
    inner = StateGraph(Inner)
    inner.add_node("reply", reply)
    inner.add_edge(START, "reply")
    builder = StateGraph(Chat)
    builder.add_node("reply", inner.compile())
    builder.add_node("side", side)
    builder.add_edge(START, "reply")
    builder.add_edge(START, "side")
    return builder.compile(checkpointer=saver)


def seen(snapshot: StateSnapshot) -> tuple[Any, ...]:
    """What a state reads as, less the ids the savers make of their own (checkpoint, run, task ids)."""
    metadata = {name: value for name, value in (snapshot.metadata or {}).items() if name not in ("run_id", "parents")}
    return (snapshot.values, snapshot.next, metadata, [interrupt.value for interrupt in snapshot.interrupts],
            [(task.name, seen(task.state) if isinstance(task.state, StateSnapshot) else None)
             for task in snapshot.tasks])


def step(chat: CompiledStateGraph[Any, Any, Any, Any], other: CompiledStateGraph[Any, Any, Any, Any],
         action: tuple[str, Any], serial: int) -> None:
    kind, pick = action
    at = THREAD
    if kind in ("fork", "add", "rewrite", "note"):  # at the pick's checkpoint of the history, newest first
        history = list(chat.get_state_history(THREAD))
        at = history[pick % len(history)].config if history else THREAD
    if kind == "turn":
        chat.invoke({"messages": [HumanMessage(f"{pick} {serial}", id=f"h{serial}")]}, THREAD)
    elif kind == "other":
        other.invoke({"messages": [HumanMessage(f"other {serial}", id=f"o{serial}")]}, THREAD)
    elif kind == "resume":
        chat.invoke(Command(resume=f"r{serial}"), THREAD)
    elif kind == "fork":
        chat.invoke({"messages": [HumanMessage(f"fork {serial}", id=f"f{serial}")]}, at)
    elif kind == "add":
        chat.update_state(at, {"messages": [HumanMessage(f"added {serial}", id=f"u{serial}")]}, as_node="side")
    elif kind == "rewrite":
        chat.update_state(at, {"messages": [RemoveMessage(id=REMOVE_ALL_MESSAGES),
                                            HumanMessage(f"anew {serial}", id=f"w{serial}")]}, as_node="side")
    elif kind == "note":
        chat.update_state(at, {"note": f"noted {serial}"}, as_node="side")
    else:
        chat.checkpointer.delete_thread("t")


ACTIONS: list[tuple[str, Any]] = [
    *[("turn", "question")] * 30, ("fork", 7), ("turn", "ask"), ("resume", 0), ("add", 40), ("turn", "question"),
    ("rewrite", 3), ("turn", "ask"), ("other", 0), ("resume", 0), ("note", 12), ("fork", 90), ("other", 0),
    ("turn", "question"), ("turn", "ask"), ("delete", 0), ("turn", "question"), ("fork", 0), ("rewrite", 0),
    ("turn", "question"),
]


@pytest.mark.parametrize("first", [1, langgraph_saver.LAST_MESSAGES_READ])
def test_fresh_warm_and_in_memory_states_agree_through_time_travel(tmp_path: Path, first: int) -> None:
    with SessionStore(tmp_path / "store", durable=False) as store, \
            mock.patch.object(langgraph_saver, "LAST_MESSAGES_READ", first):
        ours, other, theirs = graph(EventStoreSaver(store)), graph(EventStoreSaver(store)), graph(InMemorySaver())
        for serial, action in enumerate(ACTIONS):
            step(ours, other, action, serial)
            step(theirs, theirs, action, serial)
            warm = seen(ours.get_state(THREAD, subgraphs=True))
            assert seen(graph(EventStoreSaver(store)).get_state(THREAD, subgraphs=True)) == warm, (serial, action)
            assert seen(theirs.get_state(THREAD, subgraphs=True)) == warm, (serial, action)
        expected = [seen(snapshot) for snapshot in theirs.get_state_history(THREAD)]
        assert [seen(snapshot) for snapshot in ours.get_state_history(THREAD)] == expected
        assert [seen(snapshot) for snapshot in graph(EventStoreSaver(store)).get_state_history(THREAD)] == expected
        assert store.verify().ok
