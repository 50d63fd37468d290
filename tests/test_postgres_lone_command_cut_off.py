"""A command alone whose connection the server closes during its call (a restart, a terminated backend) raises
``StoreUnavailable``, as a group's call does: the connection dropped, the command may or may not have been recorded,
and a caller retries it with the same idempotency key. (It goes through libpq's pipeline, whose result for a
connection lost carries no error code: it came out as a plain ``EventStoreError``, the server's own failure.)"""

from __future__ import annotations

import threading
import time

import psycopg

from eventstore import ChatMessage, StoreUnavailable

from test_postgres_store import listening, open_host

__all__ = ["open_host"]  # the fixture, used by name

#: How long the test waits for the call to reach the server.
PATIENCE_SECONDS = 10.0


def backends_of_lone_calls(postgres_url: str) -> list[int]:
    with psycopg.connect(postgres_url, autocommit=True) as connection:
        return [row[0] for row in connection.execute(
            "SELECT pid FROM pg_stat_activity WHERE query LIKE 'CALL es_append_alone%%' AND state = 'active'")]


def test_a_command_alone_whose_connection_is_closed_mid_call_raises_store_unavailable(open_host, postgres_url):
    one = open_host("one")
    one.append("k", ChatMessage.user("first"))
    listening(one)
    with psycopg.connect(postgres_url, autocommit=True) as holder, holder.transaction():
        holder.execute("SELECT 1 FROM es_head FOR UPDATE")  # the call waits for the head row

        def killed_in_its_call() -> None:
            deadline = time.monotonic() + PATIENCE_SECONDS
            while not (pids := backends_of_lone_calls(postgres_url)):
                assert time.monotonic() < deadline, "the call never reached the server"
                time.sleep(0.01)
            holder.execute("SELECT pg_terminate_backend(%s)", (pids[0],))

        killer = threading.Thread(target=killed_in_its_call)
        killer.start()
        failure: list[Exception] = []
        try:
            one.append("k", ChatMessage.user("cut off"), idempotency_key="once")
        except Exception as exc:
            failure.append(exc)
        killer.join()
    assert len(failure) == 1 and isinstance(failure[0], StoreUnavailable), failure
    assert "may or may not have been recorded" in str(failure[0])
    assert one.append("k", ChatMessage.user("cut off"), idempotency_key="once") == 2  # the retry
    assert [m.content for m in one.load("k")] == ["first", "cut off"]
    assert one.verify().ok
