"""A fork on one host racing a redaction of its source on another: the content the redaction removed must not live
on in the fork. A fork copies its source's messages into its own event, decided against the host's replica; when
that replica lacks another host's redaction of the source (its notification still in flight), the server must refuse
the fork, as it refuses a command on a session that moved on, so that it is decided again on the redacted source."""

from __future__ import annotations

import pytest

from eventstore import ChatMessage

from test_postgres_group import record_calls
from test_postgres_store import heard, open_host  # noqa: F401 - the fixture, by name

# ruff: noqa: F811 - the tests take the imported fixture ``open_host`` by name


@pytest.mark.parametrize("version", [None, 1])
def test_a_fork_decided_before_another_hosts_redaction_of_its_source_reached_it_holds_no_content(
        open_host, monkeypatch, version):
    one, two = open_host("one"), open_host("two")
    one.append_many("source", [ChatMessage.user("a secret"), ChatMessage.assistant("another")])
    heard(one, two)
    assert [m.content for m in two.load("source")] == ["a secret", "another"]
    # The redaction commits after two decided its fork, before its call reaches the server.
    redactions = [lambda: one.redact("source", "asked to forget")]
    calls = record_calls(two, monkeypatch, lambda: redactions.pop()() if redactions else None)
    assert two.fork("source", "copy", version) == 1
    assert calls[0] == ["WrongExpectedVersion"]  # the source moved on: decided again on the redacted source
    for host in (one, two, open_host("fresh")):
        heard(one, two, host)
        assert {m.content for m in host.load("copy")} == {"[redacted]"}
        assert {m.content for m in host.load("source")} == {"[redacted]"}
        assert host.verify().ok


def test_a_fork_committed_before_a_redaction_decided_without_it_is_redacted_with_its_source(open_host, monkeypatch):
    one, two = open_host("one"), open_host("two")
    one.append_many("source", [ChatMessage.user("a secret"), ChatMessage.assistant("another")])
    heard(one, two)
    # The fork commits after one decided its redaction, before the redaction's call reaches the server.
    forks = [lambda: two.fork("source", "copy")]
    record_calls(one, monkeypatch, lambda: forks.pop()() if forks else None)
    one.redact("source", "asked to forget")
    for host in (one, two, open_host("fresh")):
        heard(one, two, host)
        assert {m.content for m in host.load("copy")} == {"[redacted]"}
        assert host.verify().ok
