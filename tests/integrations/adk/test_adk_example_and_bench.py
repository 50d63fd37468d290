"""The ADK example runs on a clean install with no API key, and the ADK benchmark's smoke run completes."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[3]


def test_the_adk_example_runs_two_turns_offline(tmp_path: Path) -> None:
    run = subprocess.run([sys.executable, str(ROOT / "examples" / "adk_agent.py"), str(tmp_path / "store")],
                         capture_output=True, text=True, check=True, timeout=300)
    lines = run.stdout.splitlines()
    assert "assistant: Noted: you like green tea." in lines
    assert "assistant: You like green tea." in lines
    assert "stored: 6 ADK events; state {'last_reply': 'You like green tea.', 'user:facts': ['likes green tea']}" \
        in lines


def test_the_adk_benchmark_quick_run_prints_every_call(tmp_path: Path) -> None:
    run = subprocess.run([sys.executable, "-m", "benchmarks.bench_adk", "--quick"], capture_output=True, text=True,
                         check=True, timeout=300, cwd=ROOT)
    rows = [line.split("|")[1].strip() for line in run.stdout.splitlines()
            if line.startswith("| ") and "µs" not in line]
    assert rows == ["get_session", "append turn", "list_sessions",
                    "floor: bare I/O of a turn's two commits (no database)"]
    assert any(line.startswith("Our append_event writes ") and "log.events" in line for line in run.stdout.splitlines())
