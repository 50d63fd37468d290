"""The commands that print a session's latest version (``delete``, ``fork``, ``replay`` past the end) read it from
the log's index, not by reading the session's whole history; and ``session_version``, which they use, against
``history`` as the model."""

from __future__ import annotations

import asyncio
import json
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner, Result
from hypothesis import given, settings
from hypothesis import strategies as st

from eventstore import ChatMessage, RecordedEvent, SessionStore
from eventstore.aio import AsyncSessionStore
from eventstore.cli import _recover, cli
from eventstore.cli._context import _ENDING_WINDOW, Env, require_live
from eventstore.events import SessionDeleted
from eventstore.services.writer import Command, CommandWriter

EVENTS = 30  # more than one event past what a command may read of a history (its first)


def run(store: Path, *args: str) -> Result:
    return CliRunner().invoke(cli, ["--store", str(store), *args], catch_exceptions=False)


@pytest.fixture
def path(tmp_path: Path) -> Path:
    """A store with ``long`` (``EVENTS`` events) and ``reused`` (two events, deleted)."""
    with SessionStore(tmp_path / "store") as store:
        store.append_many("long", [ChatMessage.user(f"message {n}") for n in range(EVENTS)])
        store.append("reused", ChatMessage.user("first life"))
        store.delete_session("reused")
    return tmp_path / "store"


@pytest.fixture
def reads(monkeypatch: pytest.MonkeyPatch) -> list[int]:
    """How many events each ``iter_history`` call yielded (the commands check a key had events with its first);
    ``history``, which reads every event, fails."""
    consumed: list[int] = []
    streamed = SessionStore.iter_history

    def counted(store: SessionStore, key: str, from_version: int = 1) -> Iterator[RecordedEvent]:
        consumed.append(0)
        call = len(consumed) - 1
        for recorded in streamed(store, key, from_version):
            consumed[call] += 1
            yield recorded

    def whole(_store: SessionStore, key: str) -> list[RecordedEvent]:
        raise AssertionError(f"the whole history of {key!r} was read")

    monkeypatch.setattr(SessionStore, "iter_history", counted)
    monkeypatch.setattr(SessionStore, "history", whole)
    return consumed


def test_delete_prints_the_new_version_without_reading_the_history(path: Path, reads: list[int]) -> None:
    result = run(path, "delete", "long", "--json")
    assert result.exit_code == 0, result.output
    assert json.loads(result.stdout) == {"key": "long", "deleted": True, "version": EVENTS + 1}
    assert max(reads, default=0) <= 1


def test_delete_text_names_the_version_to_restore(path: Path, reads: list[int]) -> None:
    result = run(path, "delete", "long")
    assert f"Deleted long (version {EVENTS + 1})" in result.stdout
    assert f"restore long --version {EVENTS}` brings it back" in result.stdout
    assert max(reads, default=0) <= 1


def test_delete_prints_the_version_of_its_own_event_when_a_write_to_the_key_follows_at_once(
        path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Another store object appends to the key as soon as the deletion has committed, before the command prints:
    the command prints the deletion's version (the one ``restore`` counts back from), not the append's."""
    run_together = CommandWriter.run_together
    with SessionStore(path) as other:
        def followed_by_an_append(writer: CommandWriter, batch: Sequence[Command[Any]]) -> list[tuple[Any, int]]:
            outcomes = run_together(writer, batch)
            if any(command.request.name == "delete_session" for command in batch):
                other.append("long", ChatMessage.user("right after the deletion"))
            return outcomes

        monkeypatch.setattr(CommandWriter, "run_together", followed_by_an_append)
        result = run(path, "delete", "long", "--json")
        history = other.history("long")
    assert result.exit_code == 0, result.output
    assert json.loads(result.stdout) == {"key": "long", "deleted": True, "version": EVENTS + 1}
    assert isinstance(history[EVENTS].event, SessionDeleted) and history[-1].version == EVENTS + 2


def test_delete_of_a_key_another_writer_deletes_after_the_check_says_it_was_deleted(
        path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Live when the command checked, deleted by another store object before the command's own deletion, which
    then deletes nothing: the command says when it was deleted, not that it deleted it."""
    with SessionStore(path) as other:
        def deleted_after_the_check(env: Env, store: SessionStore, key: str) -> None:
            require_live(env, store, key)
            other.delete_session(key)

        monkeypatch.setattr(_recover, "require_live", deleted_after_the_check)
        result = run(path, "delete", "long", "--json")
    assert result.exit_code == 1
    assert f"session 'long' was deleted at version {EVENTS + 1}" in result.stderr


@pytest.mark.parametrize("redactions", [0, 1, 3])
def test_a_deleted_key_is_named_with_its_deletion_reading_only_its_last_events(
        path: Path, reads: list[int], redactions: int) -> None:
    """A command on a deleted key names the version that deleted it, though a redaction followed it (one: the
    next finds nothing to record), reading the key's last events alone."""
    with SessionStore(path) as store:
        store.delete_session("long")
        for _ in range(redactions):
            store.redact("long", "asked")
        assert store.session_version("long") == EVENTS + 1 + min(redactions, 1)
        reads.clear()
    result = run(path, "delete", "long")
    assert result.exit_code == 1
    assert (f"session 'long' was deleted at version {EVENTS + 1}; "
            f"`eventstore --store {path} restore long --version {EVENTS}` brings it back") in result.stderr
    assert sum(reads) <= _ENDING_WINDOW


@pytest.mark.parametrize(("new_key", "version"), [("copy", 1), ("reused", 3)])
def test_fork_prints_its_versions_without_reading_either_history(path: Path, reads: list[int], new_key: str,
                                                                  version: int) -> None:
    """A fresh key, and a deleted one whose versions go on."""
    result = run(path, "fork", "long", new_key, "--version", "20", "--json")
    assert result.exit_code == 0, result.output
    assert json.loads(result.stdout) == {"key": new_key, "source": "long", "source_version": 20,
                                         "version": version, "messages": 20}
    assert max(reads, default=0) <= 1
    text = run(path, "fork", "long", "other").stdout
    assert text == f"Forked long at its version {EVENTS} into other: {EVENTS} messages.\n"
    assert max(reads, default=0) <= 1


def test_replay_past_the_end_names_the_last_version_without_reading_the_history(path: Path,
                                                                                 reads: list[int]) -> None:
    result = run(path, "replay", "long", "--from", str(EVENTS + 5))
    assert result.exit_code == 1
    assert f"--from {EVENTS + 5}: session 'long' has versions 1 to {EVENTS}" in result.stderr
    assert max(reads, default=0) <= 1


_STEPS = st.lists(st.sampled_from(["append", "delete", "rename"]), max_size=12)


@settings(max_examples=25, deadline=None)
@given(steps=_STEPS)
def test_session_version_is_the_version_of_the_latest_event(tmp_path_factory: pytest.TempPathFactory,
                                                            steps: list[str]) -> None:
    """Across appends, renames, deletions and a key's reuse; 0 for a key that never had an event."""
    with SessionStore(tmp_path_factory.mktemp("store")) as store:
        assert store.session_version("key") == 0
        for n, step in enumerate(steps):
            if step == "append":
                store.append("key", ChatMessage.user(f"m{n}"))
            elif step == "delete":
                store.delete_session("key")
            else:
                store.set_session_name("key", f"name {n}")
            history = store.history("key")
            assert store.session_version("key") == (history[-1].version if history else 0)


def test_session_version_async(tmp_path: Path) -> None:
    async def scenario() -> tuple[int, int, int]:
        async with AsyncSessionStore(tmp_path / "store") as store:
            before = await store.session_version("key")
            await store.append("key", ChatMessage.user("hi"))
            await store.delete_session("key")
            return before, await store.session_version("key"), len(await store.history("key"))

    assert asyncio.run(scenario()) == (0, 2, 2)
