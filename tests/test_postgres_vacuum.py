"""A host's vacuum of its replica and the commands around it: every acknowledged command reaches the server."""

from __future__ import annotations

import psycopg
import pytest

from eventstore import ChatMessage, StoreBusy

from test_postgres_store import open_host  # noqa: F401 - the fixture, by name

# ruff: noqa: F811 - the tests take the imported fixture ``open_host`` by name


def on_server(postgres_url: str) -> list[tuple[str, int]]:
    with psycopg.connect(postgres_url, autocommit=True) as connection:
        rows = connection.execute("SELECT key, version FROM es_events ORDER BY position").fetchall()
    return [(key, version) for key, version in rows]


def test_a_refused_vacuum_leaves_commands_going_to_the_server(open_host, postgres_url):
    host = open_host()
    sharing = open_host()  # another store object on the same replica directory: vacuum needs it to itself
    host.append("k", ChatMessage.user("before"))
    with pytest.raises(StoreBusy):
        host.vacuum()
    assert host.append("k", ChatMessage.user("after")) == 2
    assert on_server(postgres_url) == [("k", 1), ("k", 2)]
    assert [m.content for m in open_host("other").load("k")] == ["before", "after"]
    assert [m.content for m in sharing.load("k")] == ["before", "after"]
