"""``iter_history(key)``: a session's history streamed a page at a time, and the commands that read it so.

``history(key)`` builds one list of every event (150 MB at 100,000 events) before the caller sees the first; the
command line's ``history``, ``show --version`` and ``replay`` read it whole even to print a first line or to check
that the key exists.
"""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

import click
import pytest
from click.testing import CliRunner, Result
from hypothesis import given, settings
from hypothesis import strategies as st

from eventstore import AsyncSessionStore, ChatMessage, InvalidArgument, InvalidSessionKey, SessionStore
from eventstore._folding import to_recorded
from eventstore.cli import _inspect, _output, cli
from eventstore.services import time_travel
from eventstore.storage import MemoryStorage

PAGE = 7  # versions a page, for the tests: histories here cross many pages


@pytest.fixture(autouse=True)
def small_pages(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(time_travel, "BATCH", PAGE)


@pytest.fixture
def reads(monkeypatch: pytest.MonkeyPatch) -> list[int]:
    """How many events have been read from the log into ``RecordedEvent``s (one number in a list)."""
    count = [0]

    def counted(entry: Any) -> Any:
        count[0] += 1
        return to_recorded(entry)

    monkeypatch.setattr("eventstore.services.time_travel.to_recorded", counted)
    return count


commands = st.lists(st.sampled_from(["append", "append", "remove", "rename", "delete", "redact"]), max_size=40)


def play(store: SessionStore, script: list[str]) -> None:
    for number, command in enumerate(script):
        if command == "append":
            store.append("k", ChatMessage.user(f"m{number}"))
        elif command == "remove":
            store.remove_last("k")
        elif command == "rename":
            store.set_session_name("k", f"n{number}")
        elif command == "delete":
            store.delete_session("k")
        else:
            store.redact("k", "asked")
        store.append("other", ChatMessage.user("between"))  # other streams' events interleave in the log


class TestTheLibrary:
    @settings(max_examples=40)
    @given(commands)
    def test_it_yields_what_history_returns(self, script):
        with SessionStore.on_storage(MemoryStorage()) as store:
            play(store, script)
            assert list(store.iter_history("k")) == store.history("k")

    @settings(max_examples=40)
    @given(commands, st.integers(0, 45))
    def test_from_a_version_it_yields_what_history_returns_from_there(self, script, from_version):
        with SessionStore.on_storage(MemoryStorage()) as store:
            play(store, script)
            assert list(store.iter_history("k", from_version)) == store.history("k")[max(from_version, 1) - 1:]

    def test_from_a_version_it_reads_no_event_before_it(self, reads: list[int]):
        with SessionStore.on_storage(MemoryStorage()) as store:
            store.append_many("k", [ChatMessage.user(f"m{n}") for n in range(10 * PAGE)])
            assert [e.version for e in store.iter_history("k", from_version=10 * PAGE - 2)] == [68, 69, 70]
            assert reads == [3]
            with pytest.raises(InvalidArgument):
                store.iter_history("k", from_version=-1)

    def test_an_unknown_key_yields_nothing_and_a_bad_one_is_refused_at_the_call(self):
        with SessionStore.on_storage(MemoryStorage()) as store:
            assert list(store.iter_history("nobody")) == []
            with pytest.raises(InvalidSessionKey):
                store.iter_history("")

    def test_it_reads_a_page_at_a_time(self, reads: list[int]):
        with SessionStore.on_storage(MemoryStorage()) as store:
            store.append_many("k", [ChatMessage.user(f"m{n}") for n in range(10 * PAGE)])
            events = store.iter_history("k")
            assert reads == [0]
            next(events)
            assert reads == [PAGE]

    def test_writes_while_it_is_held_open_go_through_and_come_after_its_events(self, tmp_path: Path):
        """Appends to the same session between two pages commit at once (no transaction is held between pages)
        and are not part of the history being read: it is the history as of the call."""
        with SessionStore(tmp_path / "store", durable=False) as store:
            store.append_many("k", [ChatMessage.user(f"m{n}") for n in range(3 * PAGE)])
            expected = store.history("k")
            events = store.iter_history("k")
            seen = [next(events)]
            for n in range(5 * PAGE):
                store.append("k", ChatMessage.user(f"later {n}"))
            seen.extend(events)
            assert seen == expected
            assert len(store.history("k")) == 8 * PAGE

    def test_a_redaction_meanwhile_shows_in_the_pages_read_after_it(self):
        with SessionStore.on_storage(MemoryStorage()) as store:
            store.append_many("k", [ChatMessage.user(f"m{n}") for n in range(2 * PAGE)])
            events = store.iter_history("k")
            first = next(events)
            store.redact("k", "asked")
            rest = list(events)
            assert not first.redacted and first.event.message.content == "m0"
            assert len(rest) == 2 * PAGE - 1
            assert [e.redacted for e in rest] == [False] * (PAGE - 1) + [True] * PAGE

    def test_the_async_store_streams_it_too(self, tmp_path: Path):
        async def read() -> tuple[list[Any], list[Any]]:
            async with AsyncSessionStore(tmp_path / "store", durable=False) as store:
                await store.append_many("k", [ChatMessage.user(f"m{n}") for n in range(3 * PAGE + 1)])
                return [e async for e in store.iter_history("k")], await store.history("k")

        streamed, whole = asyncio.run(read())
        assert streamed == whole and len(whole) == 3 * PAGE + 1

    def test_the_async_store_streams_it_from_a_version_too(self, tmp_path: Path):
        async def read() -> list[int]:
            async with AsyncSessionStore(tmp_path / "store", durable=False) as store:
                await store.append_many("k", [ChatMessage.user(f"m{n}") for n in range(3 * PAGE)])
                return [e.version async for e in store.iter_history("k", from_version=2 * PAGE + 1)]

        assert asyncio.run(read()) == list(range(2 * PAGE + 1, 3 * PAGE + 1))


def run(store: Path, *args: str) -> Result:
    return CliRunner().invoke(cli, ["--store", str(store), *args], catch_exceptions=False)


@pytest.fixture
def long_store(tmp_path: Path) -> Path:
    """A store whose session "long" has 50 pages of appended messages."""
    with SessionStore(tmp_path / "store", durable=False) as store:
        store.append_many("long", [ChatMessage.user(f"message {n}") for n in range(50 * PAGE)])
    return tmp_path / "store"


class TestTheCommandLine:
    @pytest.mark.parametrize("json", [False, True])
    def test_history_prints_its_first_lines_before_reading_the_rest(self, long_store: Path, reads: list[int],
                                                                   monkeypatch: pytest.MonkeyPatch, json: bool):
        """``history | head`` answers at once: the first line is printed once the first pages are read (for
        the plain columns, enough to choose a table: ``TABLE_ROWS`` + 1 events), not the whole history."""
        read_before_printing: list[int] = []
        monkeypatch.setattr(_output, "TABLE_ROWS", 10)
        monkeypatch.setattr(_inspect, "TABLE_ROWS", 10)

        def spying(printer: Any) -> Any:
            def printing(*args: Any, **options: Any) -> None:
                read_before_printing.append(reads[0])
                printer(*args, **options)
            return printing

        monkeypatch.setattr(_output, "print_plain", spying(_output.print_plain))
        monkeypatch.setattr(click, "echo", spying(click.echo))
        result = run(long_store, "history", "long", *(["--json"] if json else []))
        assert 0 == result.exit_code, result.output
        assert len(result.stdout.splitlines()) == 50 * PAGE + (0 if json else 1)
        assert read_before_printing[0] <= (PAGE if json else 2 * PAGE), read_before_printing[:3]
        assert reads[0] == 50 * PAGE

    def test_show_at_a_version_reads_only_the_first_page_of_history(self, long_store: Path, reads: list[int]):
        result = run(long_store, "show", "long", "--version", "3")
        assert 0 == result.exit_code, result.output
        assert "message 2" in result.stdout and "message 3" not in result.stdout
        assert reads[0] <= PAGE

    def test_replay_of_the_last_events_reads_only_them_and_a_first_page(self, long_store: Path, reads: list[int]):
        last = 50 * PAGE
        result = run(long_store, "replay", "long", "--from", str(last - 1), "--json")
        assert 0 == result.exit_code, result.output
        assert len(result.stdout.splitlines()) == 2
        assert reads[0] <= 2 * PAGE

    def test_replay_past_the_last_version_names_the_versions(self, long_store: Path):
        for start in (50 * PAGE + 1, 50 * PAGE + 9):
            refused = run(long_store, "replay", "long", "--from", str(start))
            assert refused.exit_code == 1 and refused.stdout == ""
            assert f"Error: --from {start}: session 'long' has versions 1 to {50 * PAGE}" in refused.stderr
