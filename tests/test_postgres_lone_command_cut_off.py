"""A command alone whose connection the server closes during its call (a restart, a terminated backend) raises
``StoreUnavailable``, as a group's call does: the connection dropped, the command may or may not have been recorded,
and a caller retries it with the same idempotency key. (It goes through libpq's pipeline, whose failed results were
all taken for the server's own failure: it came out as a plain ``EventStoreError``. The result here carries the code
of the server's goodbye, ``admin_shutdown``, which psycopg's class for it makes operational; a connection lost without
a goodbye makes libpq raise as it reads, before any result.)"""

from __future__ import annotations

import pytest

from eventstore import ChatMessage, StoreUnavailable

from test_postgres_batch import killed_mid_call
from test_postgres_store import listening, open_host

__all__ = ["open_host"]  # the fixture, used by name


def test_a_command_alone_whose_connection_is_closed_mid_call_raises_store_unavailable(open_host, postgres_url):
    one = open_host("one")
    one.append("k", ChatMessage.user("first"))
    listening(one)
    with killed_mid_call(postgres_url, "es_append_alone"), \
            pytest.raises(StoreUnavailable, match="may or may not have been recorded"):
        one.append("k", ChatMessage.user("cut off"), idempotency_key="once")
    assert one.append("k", ChatMessage.user("cut off"), idempotency_key="once") == 2  # the retry
    assert [m.content for m in one.load("k")] == ["first", "cut off"]
    assert one.verify().ok
