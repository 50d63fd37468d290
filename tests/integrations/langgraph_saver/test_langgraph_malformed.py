"""A checkpoint message of a thread's session changed through the store (its session is an ordinary one): reading
the thread says the record is damaged (``StoreCorrupted``), never a traceback of another kind."""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any

import pytest
from langchain_core.messages import AIMessage, AnyMessage, HumanMessage
from langchain_core.runnables import RunnableConfig
from langgraph.graph import MessagesState
from langgraph.graph.state import CompiledStateGraph

from eventstore import ChatMessage, SessionStore, StoreCorrupted
from eventstore.integrations._langgraph_messages import session_key
from eventstore.integrations.langgraph import EventStoreSaver

from .test_langgraph_in_place import one_node

THREAD: RunnableConfig = {"configurable": {"thread_id": "chat"}}


def chat(saver: EventStoreSaver) -> CompiledStateGraph[Any, Any, Any, Any]:
    def answer(state: MessagesState) -> dict[str, list[AnyMessage]]:
        return {"messages": [AIMessage(f"answer {len(state['messages'])}", id=f"a{len(state['messages'])}")]}

    return one_node(saver, answer)


def bytes_not_text(header: dict[str, Any], blob: list[Any]) -> None:
    blob[-2 if blob[-1] == "latin-1" else -1] = 5


def text_past_a_byte(header: dict[str, Any], blob: list[Any]) -> None:
    if blob[-1] == "latin-1":
        blob[-2] = "\u0100"
    else:
        blob[-1] = "\u0100"


def not_base64(header: dict[str, Any], blob: list[Any]) -> None:
    if blob[-1] == "latin-1":
        del blob[-1]
    blob[-1] = "zz"


def checkpoint_id_not_text(header: dict[str, Any], blob: list[Any]) -> None:
    header["checkpoint"] = 5


def no_count(header: dict[str, Any], blob: list[Any]) -> None:
    assert "tail" == blob[0]
    blob[2] = None


def more_items_than_its_bytes(header: dict[str, Any], blob: list[Any]) -> None:
    assert "tail" == blob[0]
    blob[2] += 5


def more_items_than_msgpack_holds(header: dict[str, Any], blob: list[Any]) -> None:
    assert "tail" == blob[0]
    blob[2] = 1 << 32  # it raised OverflowError making the array's header


CHANGES = [bytes_not_text, text_past_a_byte, not_base64, checkpoint_id_not_text, no_count, more_items_than_its_bytes,
           more_items_than_msgpack_holds]


@pytest.mark.parametrize("change", CHANGES, ids=[change.__name__ for change in CHANGES])
def test_a_changed_checkpoint_message_reads_as_damaged(store: SessionStore,
                                                        change: Callable[[dict[str, Any], list[Any]], None]) -> None:
    graph = chat(EventStoreSaver(store))
    for turn in range(3):
        graph.invoke({"messages": [HumanMessage(f"question {turn}", id=f"q{turn}")]}, THREAD, durability="sync")
    key = session_key("chat", "")
    messages = store.load(key)
    last = max(position for position, message in enumerate(messages) if message.role == "checkpoint")
    header, payload = json.loads(messages[last].content), messages[last].payload
    assert payload is not None
    change(header, payload["blobs"]["messages"])
    store.replace_messages(key, [*messages[:last], ChatMessage("checkpoint", json.dumps(header), payload),
                                 *messages[last + 1:]])
    with pytest.raises(StoreCorrupted):
        chat(EventStoreSaver(store)).get_state(THREAD)
