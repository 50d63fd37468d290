"""A store whose log is on PostgreSQL, each host reading from its own LMDB replica."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
from click.testing import CliRunner

from eventstore import ChatMessage, SessionStore, WrongExpectedVersion
from eventstore.cli import cli

from conftest import FakeClock
from test_cli import START, fill, run


@pytest.fixture
def open_host(postgres_url: str, tmp_path: Path):
    opened: list[SessionStore] = []

    def open_host(name: str = "host", **options) -> SessionStore:
        store = SessionStore(postgres_url, cache=tmp_path / name, **options)
        opened.append(store)
        return store

    yield open_host
    for store in opened:
        store.close()


def test_two_hosts_read_each_others_writes(open_host):
    one, two = open_host("one"), open_host("two")
    assert one.append("k", ChatMessage.user("hello")) == 1
    assert two.append("k", ChatMessage.assistant("hi")) == 2
    assert [m.content for m in one.load("k")] == ["hello", "hi"]
    with pytest.raises(WrongExpectedVersion):
        one.append("k", ChatMessage.user("late"), expected_version=1)
    assert one.append("k", ChatMessage.user("again"), expected_version=2) == 3
    assert two.verify().ok and one.verify().ok


COMMANDS = [
    ["sessions"], ["sessions", "--json"], ["sessions", "--running"], ["show", "alpha"], ["show", "gamma", "--json"],
    ["show", "alpha", "--version", "3"], ["search", "lisbon"], ["stats", "--json"], ["nothing-such"],
    ["show", "missing"],
]


def test_the_command_line_takes_the_url_where_it_takes_a_path_and_answers_alike(open_host, tmp_path, postgres_url):
    on_lmdb, on_postgres = tmp_path / "lmdb", tmp_path / "replica"
    for opened in (lambda clock: SessionStore(on_lmdb, clock=clock), lambda clock: open_host("filler", clock=clock)):
        clock = FakeClock(START)
        with opened(clock) as store:
            fill(store, clock)
    for command in COMMANDS:
        local = run(on_lmdb, *command)
        shared = CliRunner().invoke(cli, ["--store", postgres_url, "--cache", str(on_postgres), *command],
                                    catch_exceptions=False)
        answers = [(result.exit_code, result.output.replace(str(on_lmdb), "STORE").replace(str(on_postgres), "STORE"))
                   for result in (local, shared)]
        if command[0] == "stats":  # the sizes of the files differ: the counts must not
            answers = [(code, re.sub(r"\"bytes\": \d+", "", text)) for code, text in answers]
        assert answers[0] == answers[1], command
    verified = CliRunner().invoke(cli, ["--store", postgres_url, "--cache", str(on_postgres), "verify"])
    assert verified.exit_code == 0, verified.output
