"""A LangGraph chat whose checkpoints are events of the store: two turns, a branch from the first, the history.

Run: python examples/langgraph_chat.py [STORE_DIRECTORY]   (needs ``pip install eventstore[langgraph]``)

The model is LangChain's fake chat model, so it runs without an API key or a network. Without a directory the
store lives in a temporary one.
"""

from __future__ import annotations

import sys
import tempfile
from pathlib import Path

from langchain_core.language_models.fake_chat_models import GenericFakeChatModel
from langchain_core.messages import AIMessage, HumanMessage
from langchain_core.runnables import RunnableConfig
from langgraph.graph import END, START, MessagesState, StateGraph

from eventstore import SessionStore
from eventstore.integrations.langgraph import EventStoreSaver

model = GenericFakeChatModel(messages=iter([
    AIMessage("Hello! What would you like to know?"),
    AIMessage("Why did the checkpoint cross the thread? To get to the other branch."),
    AIMessage("Octopuses have three hearts."),
]))


def chat(state: MessagesState) -> dict[str, list[object]]:
    return {"messages": [model.invoke(state["messages"])]}


def main(directory: Path) -> None:
    builder = StateGraph(MessagesState)
    builder.add_node("chat", chat)
    builder.add_edge(START, "chat")
    builder.add_edge("chat", END)
    with SessionStore(directory / "store") as store:
        graph = builder.compile(checkpointer=EventStoreSaver(store))
        thread: RunnableConfig = {"configurable": {"thread_id": "demo"}}
        graph.invoke({"messages": [HumanMessage("Hi!")]}, thread)
        after_first_turn = graph.get_state(thread).config
        graph.invoke({"messages": [HumanMessage("Tell me a joke.")]}, thread)
        # Time travel: a second answer to the first turn, on a branch of its own; the joke stays where it was.
        graph.invoke({"messages": [HumanMessage("Tell me a fact instead.")]}, after_first_turn)

        print("the thread's checkpoints, newest first:")
        for snapshot in graph.get_state_history(thread):
            last = snapshot.values["messages"][-1].content if snapshot.values.get("messages") else "(empty)"
            print(f"  step {snapshot.metadata['step']:>2} ({snapshot.metadata['source']}): {last}")
        [key] = store.list_sessions()
        print(f"session {key!r}: {len(store.history(key))} events, verified: {store.verify().ok}")


if __name__ == "__main__":
    if len(sys.argv) > 1:
        main(Path(sys.argv[1]))
    else:
        with tempfile.TemporaryDirectory() as scratch:
            main(Path(scratch))
