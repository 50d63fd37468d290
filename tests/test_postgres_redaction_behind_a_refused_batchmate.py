"""A redaction that a host's group commit sends behind another command of the same call: when the server refuses that
command, the positions its events took on the replica hold other hosts' commits on the server, which the redaction
was decided without. A fork of the redacted session among them must not keep the content the redaction removed."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable

from eventstore import ChatMessage, SessionStore

from test_postgres_store import heard, open_host, replica_of

__all__ = ["open_host"]  # the fixture, used by name

#: How long the test waits for something that should happen at once.
PATIENCE_SECONDS = 10.0


def queued(host: SessionStore, count: int) -> None:
    """Wait until ``count`` writes of ``host`` wait for its replica's write lock (they form the next group, in the
    order they came)."""
    group = replica_of(host).replica._group  # type: ignore[attr-defined]
    deadline = time.monotonic() + PATIENCE_SECONDS
    while len(group._queued) < count and time.monotonic() < deadline:
        time.sleep(0.001)
    assert len(group._queued) == count


def test_a_fork_in_the_place_of_a_refused_batchmate_is_redacted_with_its_source(open_host, monkeypatch):
    one, two = open_host("one"), open_host("two")
    one.append_many("source", [ChatMessage.user("a secret"), ChatMessage.assistant("another")])
    two.append("other", ChatMessage.user("first"), idempotency_key="retried")  # its record stays on two's side
    heard(one, two)
    assert [m.content for m in one.load("other")] == ["first"]
    shared = replica_of(one)._shared
    monkeypatch.setattr(shared, "heard", lambda seen: seen)  # one hears of no other host's commit from now on
    assert two.fork("source", "copy") == 1  # its notification still in flight to one

    # One's next group: a retry that another host answered first (the server refuses its record), then a redaction.
    held, release = threading.Event(), threading.Event()

    def hold(txn: object) -> None:
        held.set()
        release.wait(PATIENCE_SECONDS)

    holding = threading.Thread(target=lambda: replica_of(one).replica.write(hold))
    answers: dict[str, object] = {}

    def answer(name: str, command: Callable[[], object]) -> threading.Thread:
        thread = threading.Thread(target=lambda: answers.__setitem__(name, command()))
        thread.start()
        return thread

    holding.start()
    assert held.wait(PATIENCE_SECONDS)  # it leads a group of its own, holding the write lock
    retry = answer("retry", lambda: one.append("other", ChatMessage.user("first"), idempotency_key="retried"))
    queued(one, 1)
    redaction = answer("redaction", lambda: one.redact("source", "asked to forget"))
    queued(one, 2)
    release.set()
    for thread in (holding, retry, redaction):
        thread.join(PATIENCE_SECONDS)
    assert answers["retry"] == 1  # the first call's answer
    monkeypatch.undo()
    for host in (one, two, open_host("fresh")):
        heard(one, two, host)
        assert {m.content for m in host.load("source")} == {"[redacted]"}
        assert {m.content for m in host.load("copy")} == {"[redacted]"}
        assert host.verify().ok
