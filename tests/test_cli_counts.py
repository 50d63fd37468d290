"""The command line says "1 event", "1 message", "1 later event was", not "1 events"."""

from __future__ import annotations

from pathlib import Path

from click.testing import CliRunner

from eventstore import ChatMessage, SessionStore
from eventstore.cli import cli


def _run(store: Path, *args: str) -> str:
    result = CliRunner().invoke(cli, ["--store", str(store), *args], catch_exceptions=False)
    assert 0 == result.exit_code, result.output
    return result.stdout


def test_counts_of_one_are_singular(tmp_path: Path) -> None:
    store = tmp_path / "store"
    with SessionStore(store) as opened:
        opened.append("k", ChatMessage.user("hi"))
    assert _run(store, "verify").startswith("OK: 1 event checked;")
    assert f"Wrote 1 event to {tmp_path / 'one.jsonl'}." in _run(store, "export", "--all", "--format", "events",
                                                                   "--out", str(tmp_path / "one.jsonl"))
    assert f"Wrote 1 event to {tmp_path / 'saved.jsonl'}; no damage was met." in _run(
        store, "salvage", "--out", str(tmp_path / "saved.jsonl"))
    assert "1 event replicated exactly." in _run(tmp_path / "copy", "import", "events", str(tmp_path / "one.jsonl"))
    assert "Rebuilt the read models from 1 event." in _run(store, "rebuild")
    assert "Took 1 snapshot of 1 session " in _run(store, "compact", "--all")
    assert "→ 1 message" in _run(store, "replay", "k")
    assert "Redacted 1 event of k." in _run(store, "redact", "k", "--reason", "asked", "--yes")
