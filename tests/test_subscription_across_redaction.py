"""A subscription goes on across a redaction and a vacuum of the events it delivered: both keep each event's hash, so
the check that the log still holds the last event delivered finds it, and nothing is raised or delivered twice."""

from __future__ import annotations

from pathlib import Path

from eventstore import ChatMessage, SessionStore


def test_a_subscription_goes_on_across_a_redaction_and_a_vacuum_of_what_it_delivered(tmp_path: Path) -> None:
    with SessionStore(tmp_path / "store", durable=False) as store:
        store.append("k", ChatMessage.user("secret 1", {"card": 1}))
        store.append("k", ChatMessage.user("secret 2"))
        feed = store.subscribe(timeout=1)
        delivered = [next(feed) for _ in range(2)]
        store.redact("k", "erasure request")
        store.vacuum()
        assert [event.redacted for event in store.events()][:2] == [True, True]
        store.append("k", ChatMessage.user("after"))
        rest = list(feed)
        assert [event.position for event in delivered + rest] == [1, 2, 3, 4]
        assert rest == list(store.events(after=2))
