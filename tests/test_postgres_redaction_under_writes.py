"""A redaction while other hosts commit. A redaction is pinned to the log's head it decided at (a fork committed
meanwhile, which it did not see, must be redacted with its source), and it reads every event's type to find the
forks, so it takes a while to decide: when another host commits during every decision, the server refused it each
time, and after 50 refusals it raised ``HeadMoved``, recording nothing. A redaction could not go through under any
steady traffic. When the commits that came meanwhile fork no session, it is pinned again at the head that follows
them, where it names the same events."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest

from eventstore import ChatMessage, SessionStore

from test_postgres_store import heard, open_host, replica_of  # noqa: F401 - the fixture, by name

# ruff: noqa: F811 - the tests take the imported fixture ``open_host`` by name


def after_each_decision(host: SessionStore, monkeypatch: pytest.MonkeyPatch, then: Callable[[], None]) -> list[int]:
    """Run ``then`` after each of the host's commands decided what to send (before its call); the count of them."""
    replica = replica_of(host)
    real = replica._attempt
    decided: list[int] = []

    def attempt(txn: Any, **options: Any) -> object:
        outcome = real(txn, **options)
        if type(outcome).__name__ == "_Pending":
            decided.append(1)
            then()
        return outcome

    monkeypatch.setattr(replica, "_attempt", attempt)
    return decided


def test_a_redaction_goes_through_while_another_host_commits_during_each_of_its_decisions(open_host, monkeypatch):
    one, two = open_host("one"), open_host("two")
    one.append_many("secret", [ChatMessage.user("a secret"), ChatMessage.assistant("another")])
    one.fork("secret", "copy")
    decided = after_each_decision(one, monkeypatch, lambda: two.append("elsewhere", ChatMessage.user("busy")))
    assert one.redact("secret", "asked to forget") == 3  # the two messages and the fork's copy of them
    assert len(decided) == 1  # pinned again past the other host's commit, not decided again
    for host in (one, two, open_host("fresh")):
        heard(one, two, host)
        assert {m.content for m in host.load("secret")} | {m.content for m in host.load("copy")} == {"[redacted]"}
        assert host.verify().ok


def test_a_fork_committed_during_a_redactions_decision_is_redacted_with_its_source(open_host, monkeypatch):
    one, two = open_host("one"), open_host("two")
    one.append_many("secret", [ChatMessage.user("a secret"), ChatMessage.assistant("another")])
    heard(one, two)
    forks = [lambda: two.fork("secret", "copy")]
    decided = after_each_decision(one, monkeypatch, lambda: forks.pop()() if forks else None)
    one.redact("secret", "asked to forget")
    assert len(decided) == 2  # the fork it did not see sends it back to decide again
    for host in (one, two, open_host("fresh")):
        heard(one, two, host)
        assert {m.content for m in host.load("copy")} == {"[redacted]"}
        assert host.verify().ok
