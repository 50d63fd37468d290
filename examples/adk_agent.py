"""An ADK agent whose sessions live in the event store: two turns, a time-travel read, no API key.

The model is scripted (ADK's ``BaseLlm`` answering with canned replies), so this runs offline; put a real
model name (``model="gemini-2.5-flash"``) in ``Agent`` for real answers.

Usage: python examples/adk_agent.py [STORE_DIR]   (default: ./demo-adk-store; needs ``pip install -e '.[adk]'``)
"""

from __future__ import annotations

import asyncio
import sys
from collections.abc import AsyncGenerator
from typing import Any

from google.adk.agents import Agent
from google.adk.models.base_llm import BaseLlm
from google.adk.models.llm_request import LlmRequest
from google.adk.models.llm_response import LlmResponse
from google.adk.runners import Runner
from google.adk.tools.tool_context import ToolContext
from google.genai import types
from pydantic import Field

from eventstore import AsyncSessionStore
from eventstore.integrations.adk import EventStoreSessionService, session_key


class ScriptedModel(BaseLlm):
    """Answers each request with the next canned reply."""

    model: str = "scripted"
    replies: list[types.Part] = Field(default_factory=list)

    async def generate_content_async(self, llm_request: LlmRequest,
                                     stream: bool = False) -> AsyncGenerator[LlmResponse, None]:
        yield LlmResponse(content=types.Content(role="model", parts=[self.replies.pop(0)]))


def remember(fact: str, tool_context: ToolContext) -> dict[str, Any]:
    """Remember a fact about the user, in the user's state (shared by all their sessions)."""
    tool_context.state["user:facts"] = [*tool_context.state.get("user:facts", []), fact]
    return {"status": "remembered"}


async def main(path: str) -> None:
    model = ScriptedModel(replies=[
        types.Part(function_call=types.FunctionCall(name="remember", args={"fact": "likes green tea"})),
        types.Part(text="Noted: you like green tea."),
        types.Part(text="You like green tea."),
    ])
    agent = Agent(name="assistant", model=model, tools=[remember], output_key="last_reply")
    async with AsyncSessionStore(path) as store:
        service = EventStoreSessionService(store)
        runner = Runner(agent=agent, app_name="demo", session_service=service)
        session = await service.create_session(app_name="demo", user_id="ada")
        for text in ("I like green tea.", "What do I like?"):
            print(f"user: {text}")
            message = types.Content(role="user", parts=[types.Part(text=text)])
            async for event in runner.run_async(user_id="ada", session_id=session.id, new_message=message):
                if event.content and event.content.parts and event.content.parts[0].text:
                    print(f"{event.author}: {event.content.parts[0].text}")

        stored = await service.get_session(app_name="demo", user_id="ada", session_id=session.id)
        assert stored is not None
        print(f"stored: {len(stored.events)} ADK events; state {stored.state}")
        key = session_key("demo", "ada", session.id)
        history = await store.history(key)
        print(f"the store's log holds {len(history)} events of this session; after the first turn it had "
              f"{len(await store.load(key, version=5)) - 1} ADK events")


if __name__ == "__main__":
    asyncio.run(main(sys.argv[1] if len(sys.argv) > 1 else "demo-adk-store"))
