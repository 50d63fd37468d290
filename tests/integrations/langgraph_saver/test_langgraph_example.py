"""The LangGraph example runs on a clean install (a fake model, no API key) and shows both branches; the package
without the adapter never imports LangGraph."""

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


def test_the_package_never_imports_langgraph_unless_asked():
    code = ("import sys, eventstore, eventstore.integrations\nfrom eventstore import *\n"
            "print(' '.join(name.partition('.')[0] for name in sys.modules))")
    completed = subprocess.run([sys.executable, "-c", code], check=True, capture_output=True, text=True, timeout=60)
    assert not set(completed.stdout.split()) & {"langgraph", "langchain_core"}
