"""A command retried with its ``idempotency_key`` on another host than the one that recorded it: that host's replica
lacks the record (a host knows another's records only once one of its commands meets them), and a command that it
refuses on the replica alone (a stale ``expected_version``, a fork onto a key now in use) never reaches the server to
meet it. The retry must answer as the first call did and record nothing, as on the host that recorded it."""

from __future__ import annotations

from eventstore import ChatMessage

from test_postgres_store import heard, open_host  # noqa: F401 - the fixture, by name

# ruff: noqa: F811 - the tests take the imported fixture ``open_host`` by name


def test_a_retry_expecting_the_version_it_moved_past_answers_as_the_first_call_on_another_host(open_host):
    one, two = open_host("one"), open_host("two")
    assert one.append("k", ChatMessage.user("once"), expected_version=0, idempotency_key="retry me") == 1
    heard(one, two)
    for host in (two, one, two):
        assert host.append("k", ChatMessage.user("once"), expected_version=0, idempotency_key="retry me") == 1
    heard(one, two)
    assert [m.content for m in two.load("k")] == ["once"]
    assert two.session_at("k").version == 1


def test_a_fork_retried_on_another_host_answers_as_the_first_call(open_host):
    one, two = open_host("one"), open_host("two")
    one.append("source", ChatMessage.user("hello"))
    assert one.fork("source", "copy", idempotency_key="fork once") == 1
    heard(one, two)
    assert two.fork("source", "copy", idempotency_key="fork once") == 1
    assert two.session_at("copy").version == 1
    assert two.verify().ok


def test_a_transaction_retried_on_another_host_answers_each_command_as_the_first_call(open_host):
    one, two = open_host("one"), open_host("two")

    def given(store):
        with store.transaction() as tx:
            first = tx.append("k", ChatMessage.user("one"), expected_version=0, idempotency_key="first")
            second = tx.append("m", ChatMessage.user("two"), expected_version=0, idempotency_key="second")
        return first.result, second.result

    assert given(one) == (1, 1)
    heard(one, two)
    assert given(two) == (1, 1)
    heard(one, two)
    assert (two.session_at("k").version, two.session_at("m").version) == (1, 1)
