"""An OpenAI Agents SDK agent whose memory is the event store: turns, a tool call, a retry, and undoing the retry.

Runs with no API key: the agent's model is the SDK's scripted test model, which answers from a list.

Usage: python examples/openai_agents_session.py [STORE_DIR]   (default: ./demo-store)
Needs: pip install 'eventstore[openai-agents]'
"""

from __future__ import annotations

import asyncio
import sys

from agents import Agent, Runner, function_tool, set_tracing_disabled
from agents.testing import ScriptedModel, assistant_message, function_call

from eventstore import AsyncSessionStore
from eventstore.integrations.openai_agents import EventStoreSession


@function_tool
def celsius_to_fahrenheit(celsius: float) -> float:
    """Convert a temperature."""
    return celsius * 9 / 5 + 32


async def main(path: str) -> None:
    set_tracing_disabled(True)  # no API key, so nothing to send traces to
    model = ScriptedModel([
        [assistant_message("Hello! Ask me about temperatures.")],
        [function_call("celsius_to_fahrenheit", {"celsius": 21.5}, call_id="call_1")],
        [assistant_message("21.5 °C is 70.7 °F.")],
        [assistant_message("-40 °C is -40 °F.")],
    ])
    agent = Agent(name="thermometer", model=model, tools=[celsius_to_fahrenheit])

    async with AsyncSessionStore(path) as store:
        key = "demo-openai-agents"
        await store.delete_session(key)  # an earlier run's session: deleted as an event, its history stays
        session = EventStoreSession(key, store)
        for question in ("Hi!", "What is 21.5 °C in Fahrenheit?"):
            result = await Runner.run(agent, question, session=session)
            print(f"user: {question}\nagent: {result.final_output}")

        # A retry: drop the last exchange (question, tool call, tool output, answer) and ask something else.
        before_retry = await store.session_version(key)
        for _ in range(4):
            popped = await session.pop_item()
            print(f"popped a {popped.get('type', 'message') if popped else 'nothing'} item")
        result = await Runner.run(agent, "And -40 °C?", session=session)
        print(f"user: And -40 °C?\nagent: {result.final_output}")
        print(f"the session now holds {len(await session.get_items())} items")

        # Nothing popped is lost: the history has every event, and restore brings the earlier state back.
        since = (await store.history(key))[before_retry:]
        print("events of the retry:", ", ".join(event.event.type_name for event in since))
        await store.restore(key, version=before_retry)
        count, last = len(await session.get_items()), (await store.load(key))[-1]
        print(f"restored: {count} items again, the last from the {last.role}: {last.content!r}")


if __name__ == "__main__":
    asyncio.run(main(sys.argv[1] if len(sys.argv) > 1 else "demo-store"))
