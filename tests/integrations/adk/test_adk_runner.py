"""An ADK ``Agent`` run by ADK's ``Runner`` over several turns, its sessions kept by ``EventStoreSessionService``.

The model is scripted (a ``BaseLlm`` that replays canned responses), so the turns are the ones ADK makes with
a real model: a user message, a tool call and its result with state changes in all scopes, a final reply.
"""

from __future__ import annotations

from collections.abc import AsyncGenerator
from pathlib import Path
from typing import Any

from google.adk.agents import Agent
from google.adk.events.event import Event
from google.adk.models.base_llm import BaseLlm
from google.adk.models.llm_request import LlmRequest
from google.adk.models.llm_response import LlmResponse
from google.adk.runners import Runner
from google.adk.tools.tool_context import ToolContext
from google.genai import types
from pydantic import Field

from eventstore import AsyncSessionStore
from eventstore.integrations.adk import EventStoreSessionService, session_key

APP = "notes"


class ScriptedModel(BaseLlm):
    """A model that answers each request with the next canned response, and keeps the requests it saw."""

    model: str = "scripted"
    replies: list[LlmResponse] = Field(default_factory=list)
    requests: list[LlmRequest] = Field(default_factory=list)

    async def generate_content_async(self, llm_request: LlmRequest,
                                     stream: bool = False) -> AsyncGenerator[LlmResponse, None]:
        self.requests.append(llm_request)
        yield self.replies.pop(0)


def calls_tool(fact: str) -> LlmResponse:
    call = types.FunctionCall(name="remember", args={"fact": fact})
    return LlmResponse(content=types.Content(role="model", parts=[types.Part(function_call=call)]))


def says(text: str) -> LlmResponse:
    return LlmResponse(content=types.Content(role="model", parts=[types.Part(text=text)]))


def remember(fact: str, tool_context: ToolContext) -> dict[str, Any]:
    """Remember a fact about the user."""
    facts = tool_context.state.setdefault("user:facts", [])
    facts.append(fact)  # a write into a value read from the state: ADK records it, the service must not share it
    tool_context.state["app:facts_remembered"] = tool_context.state.get("app:facts_remembered", 0) + 1
    tool_context.state["temp:scratch"] = "not kept"
    return {"remembered": len(facts)}


def agent(model: ScriptedModel) -> Agent:
    return Agent(name="notetaker", model=model, instruction="Remember what the user tells you.", tools=[remember],
                 output_key="last_reply")


async def turn(runner: Runner, session_id: str, text: str) -> list[Event]:
    message = types.Content(role="user", parts=[types.Part(text=text)])
    return [event async for event in runner.run_async(user_id="ada", session_id=session_id, new_message=message)]


async def test_an_agent_keeps_its_turns_and_state_across_runners_and_store_reopens(store_path: Path) -> None:
    model = ScriptedModel(replies=[calls_tool("likes tea"), says("Noted: tea."),
                                   calls_tool("lives in Oslo"), says("Noted: Oslo."),
                                   says("You like tea and live in Oslo.")])
    async with AsyncSessionStore(store_path, durable=False) as store:
        service = EventStoreSessionService(store)
        runner = Runner(agent=agent(model), app_name=APP, session_service=service)
        session = await service.create_session(app_name=APP, user_id="ada", state={"user:name": "Ada"})
        first = await turn(runner, session.id, "I like tea.")
        second = await turn(runner, session.id, "I live in Oslo.")

    async with AsyncSessionStore(store_path, durable=False) as reopened:
        service = EventStoreSessionService(reopened)
        runner = Runner(agent=agent(model), app_name=APP, session_service=service)
        third = await turn(runner, session.id, "What do you know about me?")
        stored = await service.get_session(app_name=APP, user_id="ada", session_id=session.id)
        other = await service.create_session(app_name=APP, user_id="bob")
        history = await reopened.history(session_key(APP, "ada", session.id))

    assert stored is not None
    assert [part.text for event in third if event.author == "notetaker" and event.content
            for part in event.content.parts or () if part.text] == ["You like tea and live in Oslo."]
    # Every event the runner produced (and the user messages it appended first) came back equal, in order.
    produced = [event for event in first + second + third if not event.partial]
    assert [event.id for event in stored.events if event.author == "notetaker"] == [
        event.id for event in produced if event.author == "notetaker"]
    assert [event for event in stored.events if event.author == "notetaker"] == [
        event for event in produced if event.author == "notetaker"]
    assert [event.author for event in stored.events].count("user") == 3
    # The third turn's request carried the earlier turns, read back from the store.
    assert "likes tea" in str(model.requests[-1].contents)
    assert stored.state == {"user:name": "Ada", "user:facts": ["likes tea", "lives in Oslo"],
                            "app:facts_remembered": 2, "last_reply": "You like tea and live in Oslo."}
    assert other.state == {"app:facts_remembered": 2}
    # One store event per ADK event, after the creation.
    assert len(history) == 1 + len(stored.events)
