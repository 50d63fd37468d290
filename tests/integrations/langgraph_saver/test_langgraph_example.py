"""The LangGraph example runs on a clean install (a fake model, no API key) and shows both branches."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[3]


def test_the_example_runs_and_keeps_both_branches(tmp_path: Path):
    completed = subprocess.run([sys.executable, str(ROOT / "examples" / "langgraph_chat.py"), str(tmp_path)],
                               check=False, capture_output=True, text=True, timeout=120)
    assert 0 == completed.returncode, completed.stderr
    lines = completed.stdout.splitlines()
    assert "  step  4 (loop): Octopuses have three hearts." == lines[1]
    assert "  step  4 (loop): Why did the checkpoint cross the thread? To get to the other branch." == lines[4]
    assert "session 'langgraph/demo/': 15 events, verified: True" == lines[-1]
