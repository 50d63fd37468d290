"""A host's vacuum that swapped its replica's file in is done, even when the server cannot be reached as the store
opens its components again: the store stays bound, and its next call catches up from the server."""

from __future__ import annotations

from collections.abc import Callable
from typing import TypeVar

from eventstore import ChatMessage, StoreUnavailable

from test_postgres_store import heard, open_host  # noqa: F401 - the fixture, by name

# ruff: noqa: F811 - the tests take the imported fixture ``open_host`` by name

T = TypeVar("T")


def reconnected(call: Callable[[], T]) -> T:
    """``call``, again if the connection it took from the pool was one the server's restart closed (such a call
    raises ``StoreUnavailable`` and drops it: docs/postgres.md, failures)."""
    for _ in range(3):
        try:
            return call()
        except StoreUnavailable as unavailable:
            assert "closed the connection" in str(unavailable) or "terminat" in str(unavailable), unavailable
    return call()


def test_a_vacuum_whose_reopening_finds_the_server_away_is_done(open_host, postgres_server, monkeypatch):
    host, other = open_host("host"), open_host("other")
    for number in range(20):
        host.append("k", ChatMessage.user(f"top secret {number}"))
    host.redact("k", "gdpr")
    reopen = host._open_components

    def reopen_with_the_server_away() -> None:
        """Between the swap and the reopening: another host commits, then the server stops."""
        other.append("j", ChatMessage.user("while the replica was vacuumed"))
        heard(host, other)
        postgres_server.stop()
        reopen()

    monkeypatch.setattr(host, "_open_components", reopen_with_the_server_away)
    try:
        before, after = host.vacuum()
    finally:
        if not postgres_server.running():
            postgres_server.start()
    assert 0 < after <= before
    assert b"top secret" not in (host.path / "data.mdb").read_bytes()  # the vacuumed file is the one in place
    # Caught up on the next call.
    assert [ChatMessage.user("while the replica was vacuumed")] == reconnected(lambda: host.load("j"))
    assert reconnected(lambda: host.append("k", ChatMessage.user("after"))) == 22
    heard(host, other)  # the other host listens again at its next look (docs/postgres.md, the live feed)
    assert [m.content for m in reconnected(lambda: other.load("k"))][-1] == "after"
    assert host.verify().ok
