"""A node that changes an earlier item of a list channel in place, through LangGraph's public graph API.

A put serializes only the items a list adds when its other items are the objects the saver last returned or put
and their fingerprints are unchanged (``_langgraph_fingerprint.Fingerprint``). Each edit below changes a message the
node was handed, in one of the ways nodes do, and returns a new message: the checkpoint after it must hold the
edited message, as read by a saver freshly opened on the store, not the bytes the message had when last read.
"""

from __future__ import annotations

import dataclasses
import datetime
import operator
import uuid
from collections.abc import Callable
from typing import Annotated, Any, TypedDict

import pytest
from langchain_core.messages import AIMessage, AnyMessage, HumanMessage
from langchain_core.runnables import RunnableConfig
from langgraph.graph import END, START, MessagesState, StateGraph
from langgraph.graph.state import CompiledStateGraph

from eventstore import SessionStore
from eventstore.integrations._langgraph_fingerprint import Fingerprint
from eventstore.integrations.langgraph import EventStoreSaver

from .test_langgraph_saver import CountingSerializer

THREAD: RunnableConfig = {"configurable": {"thread_id": "chat"}}


def first_reply() -> AIMessage:
    return AIMessage("first answer", id="a1", name="model", response_metadata={"model": "m1"},
                     additional_kwargs={"seen": 1}, tool_calls=[{"name": "search", "args": {"q": "x"}, "id": "c1"}])


def blocks_reply() -> AIMessage:
    return AIMessage([{"type": "text", "text": "first answer"}], id="a1")


def chat_graph(saver: EventStoreSaver, edit: Callable[[list[AnyMessage]], None] | None,
               reply: Callable[[], AIMessage] = first_reply) -> CompiledStateGraph[Any, Any, Any, Any]:
    """One node: the first turn answers with ``reply()``; a later one applies ``edit`` to the messages it is
    handed, then answers."""

    def answer(state: MessagesState) -> dict[str, list[AnyMessage]]:
        if len(state["messages"]) == 1:
            return {"messages": [reply()]}
        if edit is not None:
            edit(state["messages"])
        return {"messages": [AIMessage(f"answer {len(state['messages'])}", id=f"a{len(state['messages'])}")]}

    return one_node(saver, answer)


def one_node(saver: EventStoreSaver, answer: Callable[..., dict[str, list[AnyMessage]]]
             ) -> CompiledStateGraph[Any, Any, Any, Any]:
    """A chat graph of one node, ``answer``, checkpointed by ``saver``."""
    builder = StateGraph(MessagesState)
    builder.add_node("answer", answer)
    builder.add_edge(START, "answer")
    builder.add_edge("answer", END)
    return builder.compile(checkpointer=saver)


def run_turns(store: SessionStore, edit: Callable[[list[AnyMessage]], None] | None, turns: int = 3,
              serde: CountingSerializer | None = None,
              reply: Callable[[], AIMessage] = first_reply) -> list[AnyMessage]:
    """Run ``turns`` turns (the saver reading the thread back between them), then the thread's messages as a
    saver freshly opened on the store reads them."""
    graph = chat_graph(EventStoreSaver(store, serde=serde), edit, reply)
    for turn in range(turns):
        graph.invoke({"messages": [HumanMessage(f"question {turn}", id=f"q{turn}")]}, THREAD, durability="sync")
    messages: list[AnyMessage] = chat_graph(EventStoreSaver(store), None).get_state(THREAD).values["messages"]
    return messages


def set_content(messages: list[AnyMessage]) -> None:
    messages[1].content = "edited"


def add_kwarg(messages: list[AnyMessage]) -> None:
    messages[1].additional_kwargs["edited"] = True


def replace_kwarg(messages: list[AnyMessage]) -> None:
    messages[1].additional_kwargs["seen"] = 2


def replace_metadata(messages: list[AnyMessage]) -> None:
    messages[1].response_metadata["model"] = "m2"


def set_id(messages: list[AnyMessage]) -> None:
    messages[1].id = "edited"


def set_name(messages: list[AnyMessage]) -> None:
    messages[1].name = "edited"


def rename_tool_call(messages: list[AnyMessage]) -> None:
    message = messages[1]
    assert isinstance(message, AIMessage)
    message.tool_calls[0]["name"] = "edited"


def replace_tool_args(messages: list[AnyMessage]) -> None:
    message = messages[1]
    assert isinstance(message, AIMessage)
    message.tool_calls[0]["args"] = {"q": "edited"}


def add_tool_call(messages: list[AnyMessage]) -> None:
    message = messages[1]
    assert isinstance(message, AIMessage)
    message.tool_calls.append({"name": "edited", "args": {}, "id": "c2", "type": "tool_call"})


def set_undeclared_field(messages: list[AnyMessage]) -> None:
    setattr(messages[1], "edited", True)  # noqa: B010  # a pydantic model's extra field, kept apart from its own


EDITS = [set_content, add_kwarg, replace_kwarg, replace_metadata, set_id, set_name, rename_tool_call,
         replace_tool_args, add_tool_call, set_undeclared_field]


@pytest.mark.parametrize("edit", EDITS, ids=[edit.__name__ for edit in EDITS])
def test_a_message_changed_in_place_is_recorded_changed(store: SessionStore, edit: Callable[[list[Any]], None]):
    edited = first_reply()
    edit([HumanMessage("question 0", id="q0"), edited])
    messages = run_turns(store, edit, turns=2)
    assert [HumanMessage("question 0", id="q0"), edited, HumanMessage("question 1", id="q1"),
            AIMessage("answer 3", id="a3")] == messages
    assert edited != first_reply()  # the edit shows in the message's value (what the saver serializes)


def edit_block_text(messages: list[AnyMessage]) -> None:
    content = messages[1].content
    assert isinstance(content, list) and isinstance(content[0], dict)
    content[0]["text"] = "edited"


def add_block(messages: list[AnyMessage]) -> None:
    content = messages[1].content
    assert isinstance(content, list)
    content.append({"type": "text", "text": "edited"})


@pytest.mark.parametrize("edit", [edit_block_text, add_block], ids=["edit_block_text", "add_block"])
def test_a_content_block_changed_in_place_is_recorded_changed(store: SessionStore,
                                                               edit: Callable[[list[Any]], None]):
    edited = blocks_reply()
    edit([HumanMessage("question 0", id="q0"), edited])
    messages = run_turns(store, edit, turns=2, reply=blocks_reply)
    assert edited == messages[1]
    assert blocks_reply() != edited


def test_an_edit_lands_in_the_checkpoints_from_the_turn_that_made_it(store: SessionStore):
    """Only the put after the edit serializes the list whole; the checkpoints before it keep the message as it
    was then, those after it (extending the edited list) the edited one."""
    serde = CountingSerializer()

    def edit_on_the_third_turn(messages: list[AnyMessage]) -> None:
        if len(messages) == 5:
            set_content(messages)

    run_turns(store, edit_on_the_third_turn, turns=4, serde=serde)
    assert [6] == [length for length in serde.lists if length > 1]
    history = list(chat_graph(EventStoreSaver(store), None).get_state_history(THREAD))
    # Newest first, three checkpoints a turn (its input, the input applied, the answer): the fourth turn's and
    # the third's answer hold the edit; before it, the second message is as first answered, or not there yet.
    assert [*["edited"] * 4, *["first answer"] * 6, None, None] == [
        state.values["messages"][1].content if len(state.values.get("messages", ())) > 1 else None
        for state in history]


def test_unchanged_messages_are_not_serialized_again(store: SessionStore):
    serde = CountingSerializer()
    messages = run_turns(store, None, turns=6, serde=serde)
    assert 12 == len(messages)
    assert serde.lists and 1 == max(serde.lists)  # each put serialized the one message it added


@dataclasses.dataclass(slots=True)
class Note:
    text: str
    tags: list[str]


class Notes(TypedDict):
    notes: Annotated[list[Any], operator.add]


@pytest.mark.parametrize("item", ["dict", "slots"])
def test_an_item_of_a_plain_list_changed_in_place_is_recorded_changed(store: SessionStore, item: str):
    """A dict item's value, and an item whose fields the fingerprint cannot see (slots: its list is then always
    serialized whole)."""

    def make(text: str) -> Any:
        return {"text": text, "tags": []} if item == "dict" else Note(text, [])

    def note(state: Notes) -> dict[str, list[Any]]:
        first = state["notes"][0]
        if len(state["notes"]) > 1:
            if item == "dict":
                first["text"] = "edited"
            else:
                first.text = "edited"
        return {"notes": [make(f"note {len(state['notes'])}")]}

    builder = StateGraph(Notes)
    builder.add_node("note", note)
    builder.add_edge(START, "note")
    builder.add_edge("note", END)
    for turn in range(2):
        builder.compile(checkpointer=EventStoreSaver(store)).invoke({"notes": [make(f"input {turn}")]}, THREAD,
                                                                     durability="sync")
    fresh = builder.compile(checkpointer=EventStoreSaver(store))
    assert [make("edited"), make("note 1"), make("input 1"), make("note 3")] == fresh.get_state(THREAD).values["notes"]


def test_values_a_fingerprint_cannot_look_into_below_the_items_leave_the_fast_path_on():
    """A datetime or a UUID in a message's fields has no ``__dict__`` (nor can it change): it is held as it is."""
    message = AIMessage("answer", additional_kwargs={"at": datetime.datetime(2026, 12, 4), "trace": uuid.UUID(int=7)})
    taken = Fingerprint.of([message])
    assert taken is not None and taken.same(Fingerprint.of([message]))
    message.additional_kwargs["trace"] = uuid.UUID(int=8)
    assert not taken.same(Fingerprint.of([message]))


@pytest.mark.parametrize("edit", EDITS, ids=[edit.__name__ for edit in EDITS])
def test_a_grown_list_leads_with_the_fingerprint_of_its_earlier_items_until_one_changes(
        edit: Callable[[list[Any]], None]):
    """A put takes one fingerprint of the whole new list and checks that its groups start with the earlier items'
    (``Fingerprint.leads``): true while they are unchanged, whatever the added items hold; false after an edit."""
    earlier = [HumanMessage("question 0", id="q0"), first_reply()]
    taken = Fingerprint.of(earlier)
    added = [HumanMessage("question 1", id="q1", additional_kwargs={"new": [1]}), first_reply()]
    grown = Fingerprint.of([*earlier, *added])
    assert taken is not None and grown is not None and taken.leads(grown)
    edit(earlier)
    edited = Fingerprint.of([*earlier, *added])
    assert edited is not None and not taken.leads(edited)
