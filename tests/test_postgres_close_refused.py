"""A close refused (``StoreBusy``: given from a thread holding one of the store's transactions open) leaves a store on
a shared log as it was: its replica still watches the server's head, so its reads and subscriptions hear other hosts'
commits as before the attempt (once their notification comes: docs/postgres.md, reads)."""

from __future__ import annotations

import pytest

from eventstore import ChatMessage, StoreBusy

from test_postgres_store import heard, listening, open_host, replica_of  # noqa: F401 - the fixture, by name

# ruff: noqa: F811 - the tests take the imported fixture ``open_host`` by name


def test_a_close_refused_from_a_progress_callback_leaves_the_replica_watching(open_host) -> None:
    host = open_host()
    host.append("w", ChatMessage.user("first"))
    host.load("w")  # the store's first read starts its watcher
    listening(host)
    replica = replica_of(host)
    refused: list[BaseException] = []

    def close_once(done: int, total: int) -> None:
        if not refused:
            with pytest.raises(StoreBusy) as caught:
                host.close()
            refused.append(caught.value)

    host.verify(progress=close_once)
    assert refused
    watcher = replica._watcher
    assert watcher is not None and watcher.is_alive()
    assert not replica._released
    other = open_host("other")
    other.append("w", ChatMessage.user("from another host"))
    # A read may miss another host's commit while its notification is in flight (the staleness bound): wait until
    # the host's listener heard of it, which a stopped watcher's never would.
    heard(host, other)
    assert replica.listening
    assert host.load("w") == [ChatMessage.user("first"), ChatMessage.user("from another host")]
    host.close()
    watcher.join(10)
    assert not watcher.is_alive()
