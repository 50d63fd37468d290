"""A host's vacuum that swapped its replica's file in is done, even when the server cannot be reached as the store
opens its components again: the store stays bound, and its next call catches up from the server."""

from __future__ import annotations

from eventstore import ChatMessage

from test_postgres_store import heard, open_host  # noqa: F401 - the fixture, by name

# ruff: noqa: F811 - the tests take the imported fixture ``open_host`` by name

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
    # Caught up on the next call, on fresh connections (the restart closed the pooled ones).
    assert [ChatMessage.user("while the replica was vacuumed")] == host.load("j")
    assert host.append("k", ChatMessage.user("after")) == 22
    # Its listener may be back already (the restart closed it), and then its read waits for no notification.
    heard(host, other)
    assert [m.content for m in other.load("k")][-1] == "after"
    assert host.verify().ok
