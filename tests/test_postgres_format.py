"""The PostgreSQL schema's formats. Format 5: a group's refusal hints are int8, so a group holding a pinned command that
found the head moved past 2^31 events refuses that command alone; a host of format 4 keeps committing groups after a
host of format 5 upgraded the schema under it. Format 6: each schema's commits notify a channel of its own, and a
schema of format 5 upgrades while its hosts keep committing. A read-only store reads an older format without upgrading
it."""

from __future__ import annotations

import uuid
from collections.abc import Sequence

import psycopg

from eventstore import ChatMessage, SessionStore
from eventstore.sharedlog import Commit, Committed, HeadMoved
from eventstore.sharedlog import postgres as postgres_module
from eventstore.sharedlog.postgres import SCHEMA_FORMAT, PostgresLog

from conftest import schema_url
from test_postgres_log import append, assert_chain, everything
from test_postgres_store import heard, listening, replica_of, server_reads

PAST_INT4 = 3_000_000_000  # a head position past 2^31
#: The group call of format-4 code: ``es_append_batch``, whose hints are int4.
FORMAT_4_GROUP_CALL = "CALL es_append_batch(" + ", ".join(["%b"] * 20) + ")"
#: The lone call of format-4 code: ``es_append_one``, which flushes itself.
FORMAT_4_LONE_CALL = b"CALL es_append_one(" + b", ".join(b"$%d" % n for n in range(1, 18)) + b")"


def kinds(answers: Sequence[Committed | Exception]) -> list[str]:
    return [type(answer).__name__ for answer in answers]


def stored_format(postgres_url: str) -> object:
    with psycopg.connect(postgres_url, autocommit=True) as connection:
        row = connection.execute("SELECT format FROM es_meta").fetchone()
    return row[0] if row else None


def test_a_group_past_two_to_the_31_events_refuses_a_pinned_command_that_found_the_head_moved_alone(postgres_url):
    log = PostgresLog(postgres_url)
    try:
        log.commit(append("a", 0, "one"))
        with psycopg.connect(postgres_url, autocommit=True) as connection:
            connection.execute("UPDATE es_head SET position = %s", (PAST_INT4,))
        pinned = Commit(append("a", 1, "decided at position 2").appends, first_position=2)
        answers = log.commit_many([pinned, append("b", 0, "b")])
        assert kinds(answers) == ["HeadMoved", "Committed"]
        assert isinstance(answers[0], HeadMoved)
        committed = answers[1]
        assert isinstance(committed, Committed)
        assert (committed.first_position, committed.head_position) == (PAST_INT4 + 1, PAST_INT4 + 1)
        assert log.read(PAST_INT4, 10).events[0].session_key == "b"
    finally:
        log.close()


def test_a_host_of_format_4_keeps_committing_groups_after_a_host_of_format_5_upgraded_the_schema(
        postgres_url, monkeypatch):
    monkeypatch.setattr(postgres_module, "SCHEMA_FORMAT", 4)
    monkeypatch.setattr(postgres_module, "_COMMIT", FORMAT_4_GROUP_CALL)
    older = PostgresLog(postgres_url)  # creates the schema at format 4
    newer: PostgresLog | None = None
    try:
        assert stored_format(postgres_url) == 4
        assert kinds(older.commit_many([append("a", 0, "a1"), append("b", 0, "b1")])) == ["Committed"] * 2
        monkeypatch.setattr(postgres_module, "SCHEMA_FORMAT", 5)
        newer = PostgresLog(postgres_url)  # upgrades while the older host holds its prepared group call
        assert stored_format(postgres_url) == 5
        answers = older.commit_many([append("a", 1, "a2"), append("b", 0, "refused"), append("c", 0, "c1")])
        assert kinds(answers) == ["Committed", "WrongExpectedVersion", "Committed"]
        monkeypatch.undo()
        assert kinds(newer.commit_many([append("a", 2, "a3"), append("c", 0, "refused")])) == [
            "Committed", "WrongExpectedVersion"]
        stored = everything(newer)
        assert [(e.session_key, e.payload) for e in stored] == [
            ("a", b"a1"), ("b", b"b1"), ("a", b"a2"), ("c", b"c1"), ("a", b"a3")]
        assert_chain(stored)
    finally:
        older.close()
        if newer is not None:
            newer.close()


def test_a_host_of_format_4_keeps_its_self_flushing_lone_call_after_the_upgrade(postgres_url, monkeypatch):
    """Format 5's lone call (``es_append_alone``) leaves the flush to the client; a format-4 host still running
    calls ``es_append_one``, which must go on committing and flushing by itself, or it would acknowledge commands
    before they are durable."""
    monkeypatch.setattr(postgres_module, "SCHEMA_FORMAT", 4)
    PostgresLog(postgres_url).close()  # the schema, at format 4
    monkeypatch.setattr(postgres_module, "SCHEMA_FORMAT", 5)
    newer = PostgresLog(postgres_url)  # upgrades to format 5 (format 6 drops ``es_append_one``)
    try:
        assert stored_format(postgres_url) == 5
        with psycopg.connect(postgres_url, autocommit=True) as connection:
            sources: dict[str, str] = dict(connection.execute(
                "SELECT proname, prosrc FROM pg_proc WHERE proname IN ('es_append_one', 'es_append_alone')"))
        assert "pg_logical_emit_message" in sources["es_append_one"] and "COMMIT" in sources["es_append_one"]
        assert "pg_logical_emit_message" not in sources["es_append_alone"]
        older = postgres_module._connect(postgres_url)
        try:  # the call format-4 code makes for a command alone
            older.execute(FORMAT_4_LONE_CALL.decode().replace("$", "%b").translate(str.maketrans("", "", "0123456789")),
                          [*postgres_module._columns([append("a", 0, "from format 4")]), None,
                           postgres_module._texts([])])
        finally:
            older.close()
        assert newer.commit(append("a", 1, "from format 5")).head_position == 2
        stored = everything(newer)
        assert [(e.session_key, e.payload) for e in stored] == [("a", b"from format 4"), ("a", b"from format 5")]
        assert_chain(stored)
    finally:
        newer.close()


def test_a_read_only_store_reads_a_schema_of_format_4_without_upgrading_it(postgres_url, tmp_path, monkeypatch):
    monkeypatch.setattr(postgres_module, "SCHEMA_FORMAT", 4)
    monkeypatch.setattr(postgres_module, "_COMMIT", FORMAT_4_GROUP_CALL)
    monkeypatch.setattr(postgres_module, "_CALL_ONE_SQL", FORMAT_4_LONE_CALL)
    with SessionStore(postgres_url, cache=tmp_path / "host") as writer:
        writer.append("k", ChatMessage.user("hello"))
    monkeypatch.undo()
    with SessionStore(postgres_url, cache=tmp_path / "host", readonly=True) as reader:
        assert reader.load("k") == [ChatMessage.user("hello")]
    assert stored_format(postgres_url) == 4  # a host of format 4 may still be running: only a writable open upgrades


def procedures(postgres_url: str) -> set[str]:
    with psycopg.connect(postgres_url, autocommit=True) as connection:
        return {name for (name,) in connection.execute(
            "SELECT proname FROM pg_proc WHERE pronamespace = current_schema()::regnamespace")}


def test_a_schema_of_format_5_upgrades_to_a_channel_of_its_own_while_its_hosts_keep_committing(
        postgres_url, tmp_path, monkeypatch):
    monkeypatch.setattr(postgres_module, "SCHEMA_FORMAT", 5)
    older = SessionStore(postgres_url, cache=tmp_path / "older")  # creates the schema at format 5
    try:
        older.append("k", ChatMessage.user("written at format 5"))
        assert stored_format(postgres_url) == 5 and "es_channel" not in procedures(postgres_url)
        monkeypatch.undo()
        with SessionStore(postgres_url, cache=tmp_path / "newer") as newer:
            assert stored_format(postgres_url) == SCHEMA_FORMAT == 6
            assert {"es_channel", "es_append_alone", "es_append_many"} <= procedures(postgres_url)
            assert not {"es_append_one", "es_append_batch"} & procedures(postgres_url)  # format 4's, dropped
            assert newer.load("k") == [ChatMessage.user("written at format 5")]
            newer.append("k", ChatMessage.assistant("written at format 6"))
            listening(newer)
            older.append("k", ChatMessage.user("the older host goes on"))  # its calls kept their signatures
            older.append_many("j", [ChatMessage.user("a group's call"), ChatMessage.user("too")])
            heard(newer, older)  # the older host's commits notify the schema's own channel, where the newer listens
            expected = ["written at format 5", "written at format 6", "the older host goes on"]
            assert [m.content for m in newer.load("k")] == expected
            assert [m.content for m in older.load("k")] == expected
            assert newer.verify().ok and older.verify().ok
    finally:
        older.close()


def test_stores_of_another_schema_of_the_database_do_not_wake_a_store_nor_send_it_to_the_server(
        postgres_server, postgres_url, tmp_path, monkeypatch):
    mine, theirs = SessionStore(postgres_url, cache=tmp_path / "mine"), None
    neighbour = SessionStore(postgres_url, cache=tmp_path / "neighbour")
    try:
        theirs = SessionStore(schema_url(postgres_server.url, f"other_{uuid.uuid4().hex}"), cache=tmp_path / "theirs")
        mine.append("k", ChatMessage.user("mine"))
        listening(mine)
        for number in range(20):  # another log, in another schema of the same database
            theirs.append("k", ChatMessage.user(f"theirs {number}"))
        neighbour.append("k", ChatMessage.assistant("my neighbour's"))  # notified after the other schema's commits
        heard(mine, neighbour)
        asked = server_reads(mine, monkeypatch)
        for _ in range(3):
            assert [m.content for m in mine.load("k")] == ["mine", "my neighbour's"]
        assert asked == [1]  # one round trip for the neighbour's commit; the other schema's heads named nothing
        assert replica_of(mine).last_commit() == 2
    finally:
        for store in (mine, neighbour, theirs):
            if store is not None:
                store.close()


def test_a_read_only_store_of_a_schema_of_format_5_hears_its_commits_on_the_shared_channel(
        postgres_url, tmp_path, monkeypatch):
    monkeypatch.setattr(postgres_module, "SCHEMA_FORMAT", 5)
    SessionStore(postgres_url, cache=tmp_path / "reader").close()  # the schema at format 5, and the reader's replica
    with SessionStore(postgres_url, cache=tmp_path / "writer") as writer:
        writer.append("k", ChatMessage.user("first"))
        monkeypatch.undo()
        with SessionStore(postgres_url, cache=tmp_path / "reader", readonly=True) as reader:
            assert reader.load("k") == [ChatMessage.user("first")]
            listening(reader)
            writer.append("k", ChatMessage.user("second"))
            heard(reader, writer)  # notified on ``eventstore_log``, where the reader listens
            assert [m.content for m in reader.load("k")] == ["first", "second"]
    assert stored_format(postgres_url) == 5
