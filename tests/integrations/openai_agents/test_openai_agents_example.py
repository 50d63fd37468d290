"""examples/openai_agents_session.py runs as documented, with no API key, and says what it did."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

EXAMPLE = Path(__file__).parents[3] / "examples" / "openai_agents_session.py"


def run_example(store: Path) -> list[str]:
    environment = {name: value for name, value in os.environ.items() if name != "OPENAI_API_KEY"}
    result = subprocess.run([sys.executable, str(EXAMPLE), str(store)], capture_output=True, text=True,
                            check=True, env=environment, timeout=120)
    return result.stdout.splitlines()


def test_the_example_runs_a_conversation_pops_a_retry_and_restores_it(tmp_path: Path) -> None:
    for _ in range(2):  # a second run starts over in the same store
        lines = run_example(tmp_path / "store")
        assert lines[:4] == ["user: Hi!", "agent: Hello! Ask me about temperatures.",
                             "user: What is 21.5 °C in Fahrenheit?", "agent: 21.5 °C is 70.7 °F."]
        assert lines[4:8] == [f"popped a {kind} item" for kind in
                              ("message", "function_call_output", "function_call", "message")]
        assert lines[8:] == [
            "user: And -40 °C?", "agent: -40 °C is -40 °F.", "the session now holds 4 items",
            "events of the retry: " + ", ".join(["LastMessageRemoved"] * 4 + ["MessageAppended"] * 2),
            "restored: 6 items again, the last from the assistant: '21.5 °C is 70.7 °F.'"]
