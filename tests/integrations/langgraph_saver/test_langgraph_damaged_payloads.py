"""A checkpoint or writes message of a thread changed through the store in its shape (a field missing or of another
type, in its header or its payload): a read of the thread, a list of it and the next turn's put say the record is
damaged (``StoreCorrupted``), never a KeyError, a TypeError, an IndexError or an AttributeError."""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any

import pytest
from langchain_core.messages import HumanMessage

from eventstore import ChatMessage, SessionStore, StoreCorrupted
from eventstore.integrations._langgraph_messages import session_key
from eventstore.integrations.langgraph import EventStoreSaver

from .test_langgraph_malformed import THREAD, chat

Change = Callable[[dict[str, Any], dict[str, Any]], None]

CHECKPOINT_CHANGES: dict[str, Change] = {
    "a stored channel's blob missing": lambda header, payload: payload["blobs"].pop("messages"),
    "no blobs": lambda header, payload: payload.pop("blobs"),
    "blobs not a mapping": lambda header, payload: payload.update(blobs=5),
    "a blob not a list": lambda header, payload: payload["blobs"].update(messages=5),
    "an empty blob": lambda header, payload: payload["blobs"].update(messages=[]),
    "no checkpoint body": lambda header, payload: payload.pop("checkpoint"),
    "metadata not a mapping": lambda header, payload: payload.update(metadata=5),
    "stored not a mapping": lambda header, payload: header.update(stored=5),
    "latest not text": lambda header, payload: header.update(latest=5),
    "early as text": lambda header, payload: header.update(early="token"),
}

WRITES_CHANGES: dict[str, Change] = {
    "no writes": lambda header, payload: payload.pop("writes"),
    "a write not a list": lambda header, payload: payload["writes"].__setitem__(0, 5),
    "a write cut short": lambda header, payload: payload["writes"].__setitem__(0, payload["writes"][0][:1]),
    "a write's index not an int": lambda header, payload: payload["writes"][0].__setitem__(0, "0"),
    "task not text": lambda header, payload: payload.update(task=5),
}


def changed_thread(store: SessionStore, role: str, change: Change) -> None:
    """Three turns of a chat, then the last message of ``role`` changed."""
    graph = chat(EventStoreSaver(store))
    for turn in range(3):
        graph.invoke({"messages": [HumanMessage(f"question {turn}", id=f"q{turn}")]}, THREAD, durability="sync")
    key = session_key("chat", "")
    messages = store.load(key)
    last = max(position for position, message in enumerate(messages) if message.role == role)
    header, payload = json.loads(messages[last].content), messages[last].payload
    assert payload is not None
    change(header, payload)
    store.replace_messages(key, [*messages[:last], ChatMessage(role, json.dumps(header), payload),
                                 *messages[last + 1:]])


def reads_and_put_say_damaged(store: SessionStore) -> None:
    with pytest.raises(StoreCorrupted):
        chat(EventStoreSaver(store)).get_state(THREAD)
    with pytest.raises(StoreCorrupted):
        list(EventStoreSaver(store).list(THREAD))
    with pytest.raises(StoreCorrupted):
        chat(EventStoreSaver(store)).invoke({"messages": [HumanMessage("one more", id="more")]}, THREAD,
                                            durability="sync")


@pytest.mark.parametrize("change", CHECKPOINT_CHANGES.values(), ids=CHECKPOINT_CHANGES.keys())
def test_a_checkpoint_message_of_another_shape_reads_as_damaged(store: SessionStore, change: Change) -> None:
    changed_thread(store, "checkpoint", change)
    reads_and_put_say_damaged(store)


@pytest.mark.parametrize("change", WRITES_CHANGES.values(), ids=WRITES_CHANGES.keys())
def test_a_writes_message_of_another_shape_reads_as_damaged(store: SessionStore, change: Change) -> None:
    changed_thread(store, "writes", change)
    with pytest.raises(StoreCorrupted):
        list(EventStoreSaver(store).list(THREAD))
