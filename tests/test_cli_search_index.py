"""The search index after bulk work on the command line: an import leaves it current, and a search of a store whose
index is far behind the log catches it up once (writable) instead of folding the missing events at every search."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest
from click.testing import CliRunner, Result

from eventstore import AsyncSessionStore, ChatMessage, SessionStore, StoreClosed
from eventstore.cli import _inspect, cli
from eventstore.cli._context import INDEX_CATCH_UP_FROM
from eventstore.zeroclaw import export_jsonl


def run(store: Path, *args: str) -> Result:
    return CliRunner().invoke(cli, ["--store", str(store), *args], catch_exceptions=False)


def filled(path: Path, sessions: int = 6) -> list[str]:
    """A store whose index is behind by every event: sessions of three messages, one naming its number."""
    with SessionStore(path) as store:
        for number in range(sessions):
            store.append_many(f"s{number}", [ChatMessage.user(f"about lisbon trip {number}"),
                                             ChatMessage.assistant("sure"), ChatMessage.user(f"number{number}")])
        assert store.search_index_lag() == 3 * sessions
        return store.list_sessions()


def lag(path: Path) -> int:
    with SessionStore(path, readonly=True) as store:
        return store.search_index_lag()


def test_the_lag_counts_the_events_the_index_has_not_folded(tmp_path):
    with SessionStore(tmp_path / "store") as store:
        assert store.search_index_lag() == 0
        store.append_many("a", [ChatMessage.user("one"), ChatMessage.user("two")])
        store.append("b", ChatMessage.user("three"))
        assert store.search_index_lag() == 3
        assert store.catch_up() == 3
        assert store.search_index_lag() == 0
    with SessionStore(tmp_path / "store") as store:
        store.append("b", ChatMessage.user("four"))
    assert lag(tmp_path / "store") == 1  # a read-only store tells it too
    store = SessionStore(tmp_path / "store")
    store.close()
    with pytest.raises(StoreClosed):
        store.search_index_lag()


def test_the_async_store_tells_the_lag(tmp_path):
    async def main() -> tuple[int, int]:
        async with AsyncSessionStore(tmp_path / "store") as store:
            await store.append("a", ChatMessage.user("one"))
            before = await store.search_index_lag()
            await store.catch_up()
            return before, await store.search_index_lag()

    assert asyncio.run(main()) == (1, 0)


def test_an_import_of_a_workspace_leaves_the_index_current(tmp_path):
    keys = filled(tmp_path / "source")
    with SessionStore(tmp_path / "source") as source:
        export_jsonl(source, keys, tmp_path / "workspace" / "sessions")
    result = run(tmp_path / "copy", "import", "zeroclaw", str(tmp_path / "workspace"))
    assert result.exit_code == 0, result.output
    assert lag(tmp_path / "copy") == 0
    assert "s3" in run(tmp_path / "copy", "search", "number3").stdout


def test_an_import_of_an_events_file_leaves_the_index_current(tmp_path):
    filled(tmp_path / "source")
    exported = tmp_path / "all.events.jsonl"
    assert run(tmp_path / "source", "export", "--all", "--out", str(exported)).exit_code == 0
    result = run(tmp_path / "copy", "import", "events", str(exported))
    assert result.exit_code == 0, result.output
    assert lag(tmp_path / "copy") == 0


def test_a_search_far_behind_catches_the_index_up_once(tmp_path, monkeypatch):
    filled(tmp_path / "store")
    behind = lag(tmp_path / "store")
    monkeypatch.setattr(_inspect, "INDEX_CATCH_UP_FROM", behind - 1)
    result = run(tmp_path / "store", "search", "number4")
    assert result.exit_code == 0 and "s4" in result.stdout and "s2" not in result.stdout
    assert lag(tmp_path / "store") == 0


def test_a_search_a_little_behind_leaves_the_store_as_it_was(tmp_path, monkeypatch):
    filled(tmp_path / "store")
    behind = lag(tmp_path / "store")
    monkeypatch.setattr(_inspect, "INDEX_CATCH_UP_FROM", behind)
    result = run(tmp_path / "store", "search", "number4")
    assert result.exit_code == 0 and "s4" in result.stdout and "s2" not in result.stdout
    assert lag(tmp_path / "store") == behind  # folded in memory by a read-only open: nothing written


def test_the_search_help_names_the_lag_it_catches_up_from():
    result = CliRunner().invoke(cli, ["search", "--help"])
    assert f"{INDEX_CATCH_UP_FROM:,} events behind" in " ".join(result.output.split())
