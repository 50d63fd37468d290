"""The command line on long sessions: work that grows with the session, not with its square, and output that
starts before the last row is formed; and the option values that can only be mistakes, refused as usage errors."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner, Result
from hypothesis import given, settings
from hypothesis import strategies as st
from rich.table import Table

from eventstore import ChatMessage, SessionStore, SessionView
from eventstore.cli import _inspect, _output, cli
from eventstore.cli._inspect import _replay_rows
from eventstore.cli._output import TABLE_ROWS
from eventstore.storage import MemoryStorage


def run(store: Path, *args: str) -> Result:
    return CliRunner().invoke(cli, ["--store", str(store), *args], catch_exceptions=False)


def long_session(path: Path, count: int) -> Path:
    """A store whose session "long" has ``count`` appended messages, one event each."""
    with SessionStore(path) as store:
        store.append_many("long", [ChatMessage.user(f"message {number}") for number in range(count)])
    return path


# -- replay ----------------------------------------------------------------------------------------


def test_replay_reads_what_each_event_edited_not_the_whole_session(tmp_path: Path,
                                                                   monkeypatch: pytest.MonkeyPatch) -> None:
    """Each step compared the whole message list before and after the event (and built both lists, and every
    message's time to count them): a 2,000-event session took 3.6 s, 8,000 took 48 s. Counted here: messages a
    replay takes out of the views it steps through, and messages it compares."""
    count = 400
    path = long_session(tmp_path / "store", count)
    with SessionStore(path) as store:
        store.set_session_name("long", "renamed")
        store.update_last("long", ChatMessage.assistant("replaced"))
        store.remove_last("long")
    taken = {"messages": 0, "compared": 0}

    def counting(read: Callable[..., list[Any]]) -> Callable[..., list[Any]]:
        def counted(*args: Any) -> list[Any]:
            found = read(*args)
            taken["messages"] += len(found)
            return found
        return counted

    for name in ("messages", "timestamped"):
        monkeypatch.setattr(SessionView, name, property(counting(getattr(SessionView, name).fget)))
    monkeypatch.setattr(SessionView, "messages_from", counting(SessionView.messages_from))
    equal = ChatMessage.__eq__

    def compared(self: ChatMessage, other: object) -> bool:
        taken["compared"] += 1
        return equal(self, other)

    monkeypatch.setattr(ChatMessage, "__eq__", compared)
    result = run(path, "replay", "long", "--json")
    assert 0 == result.exit_code, result.output
    assert count + 3 == len(result.stdout.splitlines())
    assert taken["messages"] + taken["compared"] <= 4 * count, taken


def _naive_changes(before: SessionView, after: SessionView) -> list[tuple[str, int, str]]:
    """What a step changed in the message list, from the whole lists: removed after the longest common prefix,
    then added (a replacement of the last message is one of each)."""
    old, new = before.messages, after.messages
    common = 0
    while common < min(len(old), len(new)) and old[common] == new[common]:
        common += 1
    return ([("message_removed", index, old[index].content) for index in range(common, len(old))]
            + [("message_added", index, new[index].content) for index in range(common, len(new))])


def _as_pairs(change: dict[str, Any]) -> list[tuple[str, int, str]]:
    if change["kind"] == "message_replaced":
        return [("message_removed", change["index"], change["was"]["content"]),
                ("message_added", change["index"], change["content"])]
    if change["kind"] in ("message_added", "message_removed"):
        return [(change["kind"], change["index"], change["content"])]
    return []


_steps = st.lists(st.sampled_from(["append", "append", "append", "update_last", "remove_last", "clear", "rename",
                                   "delete", "replace", "restore", "redact"]), max_size=25)


@settings(max_examples=60)
@given(_steps, st.integers(min_value=1, max_value=30))
def test_replay_changes_are_the_whole_lists_difference(steps: list[str], start: int) -> None:
    """The changes a replay shows, compared from the first message an event may edit on, are the difference
    of the whole message lists before and after it (a plain model)."""
    with SessionStore.on_storage(MemoryStorage(Path("/nowhere/store"))) as store:
        store.append("k", ChatMessage.user("first"))
        for number, step in enumerate(steps):
            messages = store.load("k") if store.session_exists("k") else []
            if step == "append":
                store.append("k", ChatMessage.user(f"m{number}"))
            elif step in ("update_last", "remove_last") and messages:
                if step == "update_last":
                    store.update_last("k", ChatMessage.assistant(f"u{number}"))
                else:
                    store.remove_last("k")
            elif step == "clear" and messages:
                store.clear_messages("k")
            elif step == "rename":
                store.set_session_name("k", f"n{number}")
            elif step == "delete" and store.session_exists("k"):
                store.delete_session("k")
            elif step == "replace":
                store.replace_messages("k", [*messages[:1], ChatMessage.user(f"r{number}")])
            elif step == "restore":
                store.restore("k", version=max(1, len(store.history("k")) // 2))
            elif step == "redact":
                store.redact("k", "asked")
        start = min(start, len(store.history("k")))
        before = store.session_at("k", version=start - 1)
        for _, view, found in _replay_rows(store, "k", before, None):
            if all(change["kind"] != "redacted" for change in found):  # a redaction counts what it blanked
                assert _naive_changes(before, view) == [pair for change in found for pair in _as_pairs(change)]
            before = view


def test_replay_refuses_a_range_that_ends_before_it_starts(tmp_path: Path) -> None:
    """``--from 2 --to 1`` printed nothing and exited 0; ``--from 0`` was a failure of the store's (exit 1)."""
    path = long_session(tmp_path / "store", 3)
    refused = run(path, "replay", "long", "--from", "2", "--to", "1")
    assert (2, "") == (refused.exit_code, refused.stdout)
    assert "Error: --to 1 comes before --from 2" in refused.stderr
    for option in ("--from", "--to"):
        assert 2 == run(path, "replay", "long", option, "0").exit_code
    assert ["v2", "v3"] == [line.split()[0] for line in run(path, "replay", "long", "--from", "2", "--to", "3")
                            .stdout.splitlines() if line.startswith("v")]


def test_search_refuses_a_limit_below_1_as_sessions_does(tmp_path: Path) -> None:
    """``search lorem --limit 0`` said no session matches: a limit of none is a mistake, not a search."""
    path = long_session(tmp_path / "store", 3)
    for command in (["search", "message"], ["search", "message", "--messages"], ["sessions"]):
        for limit in ("0", "-1"):
            refused = run(path, *command, "--limit", limit)
            assert (2, "") == (refused.exit_code, refused.stdout)
            assert f"Error: Invalid value for '--limit': {limit} is not in the range x>=1." in refused.stderr
    assert 0 == run(path, "search", "message", "--limit", "1").exit_code


# -- long tables -------------------------------------------------------------------------------------


@pytest.fixture
def rows_drawn(monkeypatch: pytest.MonkeyPatch) -> list[int]:
    """How many rows went into rich tables, all told (one number in a list)."""
    drawn = [0]
    add_row = Table.add_row

    def counted(self: Table, *cells: Any, **options: Any) -> None:
        drawn[0] += 1
        add_row(self, *cells, **options)

    monkeypatch.setattr(Table, "add_row", counted)
    return drawn


def test_a_long_history_streams_plain_columns(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                              rows_drawn: list[int]) -> None:
    """Past ``TABLE_ROWS`` events, history drew every event into a rich table before printing its first line (a
    100,000-event session: a minute, 634 MB, even as ``| head -5``); it prints plain columns a block at a time."""
    count = TABLE_ROWS + 500
    path = long_session(tmp_path / "store", count)
    described: list[int] = []
    printed_after: list[int] = []
    describe, print_plain = _inspect.describe_event, _output.print_plain

    def describing(event: Any) -> str:
        described.append(1)
        return describe(event)

    def printing(text: str) -> None:
        printed_after.append(len(described))
        print_plain(text)

    monkeypatch.setattr(_inspect, "describe_event", describing)
    monkeypatch.setattr(_output, "print_plain", printing)
    result = run(path, "history", "long")
    assert 0 == result.exit_code, result.output
    lines = result.stdout.splitlines()
    assert ["VERSION", "POSITION", "TIME", "EVENT", "WHAT"] == lines[0].split()
    assert count + 1 == len(lines) and "user: message 1499" in lines[-1]
    assert lines[1].split()[:2] == ["1", "1"]
    assert [0] == rows_drawn
    assert 0 < printed_after[0] <= TABLE_ROWS and count == len(described)
    short = run(long_session(tmp_path / "short", TABLE_ROWS), "history", "long")
    assert "History of long" in short.stdout and [TABLE_ROWS] == rows_drawn


def test_a_long_session_shows_its_messages_as_plain_columns(tmp_path: Path, rows_drawn: list[int]) -> None:
    """Each message on one line (a line break shown as ``\\n``, as every plain column shows it), none drawn into
    a rich table; a short session keeps its table, and --json is the same document either way."""
    count = TABLE_ROWS + 1
    path = long_session(tmp_path / "store", count)
    with SessionStore(path) as store:
        store.append("long", ChatMessage.assistant("two\nlines\x1b[2J"))
    result = run(path, "show", "long")
    assert 0 == result.exit_code, result.output
    lines = result.stdout.splitlines()
    header = next(index for index, line in enumerate(lines) if line.startswith("#"))
    assert ["#", "TIME", "ROLE", "CONTENT"] == lines[header].split()
    assert count + 1 == len(lines) - header - 1
    assert lines[-1].split()[3:] == ["assistant", "two\\nlines\\x1b[2J"]
    assert [0] == rows_drawn
    assert "┃ CONTENT" in run(long_session(tmp_path / "short", 3), "show", "long").stdout and [3] == rows_drawn
