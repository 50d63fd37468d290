"""Two hosts on one PostgreSQL log, each with a replica of its own, driven side by side with the plain model of
``test_model``: each command goes to either host, and after every step both hosts read what the model holds. A
command given with a stale ``expected_version`` is refused on either host, and a retry of any earlier command with
its ``idempotency_key``, on either host (the one that did not record it knows nothing of its record), answers as the
first call did and records nothing."""

from __future__ import annotations

import itertools
import shutil
import tempfile
from collections.abc import Callable
from pathlib import Path

import pytest
from hypothesis import settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, invariant, precondition, rule, run_state_machine_as_test

from eventstore import ChatMessage, SessionStore, WrongExpectedVersion

from conftest import FakeClock, schema_url
from postgres_server import PostgresServer
from strategies import KEYS, messages, names, session_keys
from test_model import Model
from test_postgres_store import heard

hosts = st.sampled_from((0, 1))
#: A command on a store, given the idempotency key it is sent with.
Command = Callable[[SessionStore, str], object]


class TwoHosts(RuleBasedStateMachine):
    """Random commands on two hosts of one log and on the model; both hosts agree with the model after every step."""

    server_url = ""
    schemas = itertools.count(1)

    def __init__(self) -> None:
        super().__init__()
        self.directory = Path(tempfile.mkdtemp(prefix="eventstore-two-hosts-"))
        self.url = schema_url(self.server_url, f"two_hosts_{next(self.schemas)}")
        self.clock = FakeClock()
        self.model = Model(self.clock)
        self.hosts = [SessionStore(self.url, cache=self.directory / name, clock=self.clock) for name in ("one", "two")]
        self.given: list[tuple[Command, str, object]] = []  # each command, its idempotency key and its answer

    def teardown(self) -> None:
        try:
            for host in self.hosts:
                assert host.verify().ok
        finally:
            for host in self.hosts:
                host.close()
            shutil.rmtree(self.directory, ignore_errors=True)

    def _given(self, host: int, command: Command) -> object:
        """``command`` on one host, with an idempotency key of its own; its answer."""
        key = f"command-{len(self.given)}"
        answer = command(self.hosts[host], key)
        self.given.append((command, key, answer))
        return answer

    # -- the clock ------------------------------------------------------------------

    @rule(seconds=st.sampled_from((1, 61, 3601)))
    def advance_clock(self, seconds: int) -> None:
        self.clock.advance(seconds=seconds)

    # -- commands -------------------------------------------------------------------

    @rule(host=hosts, key=session_keys, message=messages)
    def append(self, host: int, key: str, message: ChatMessage) -> None:
        answer = self._given(host, lambda store, retry: store.append(key, message, idempotency_key=retry))
        assert self.model.append_many(key, [message]) == answer

    @rule(host=hosts, key=session_keys, batch=st.lists(messages, min_size=1, max_size=3))
    def append_many(self, host: int, key: str, batch: list[ChatMessage]) -> None:
        answer = self._given(host, lambda store, retry: store.append_many(key, batch, idempotency_key=retry))
        assert self.model.append_many(key, batch) == answer

    @rule(host=hosts, key=session_keys, message=messages, behind=st.integers(0, 2))
    def append_expecting(self, host: int, key: str, message: ChatMessage, behind: int) -> None:
        """An append that expects a version: the current one, or one the session has moved past."""
        version = self.model.sessions[key].version
        expected = max(version - behind, 0)
        if expected != version:
            with pytest.raises(WrongExpectedVersion):
                self.hosts[host].append(key, message, expected_version=expected)
            return
        answer = self._given(host, lambda store, retry: store.append(
            key, message, expected_version=expected, idempotency_key=retry))
        assert self.model.append_many(key, [message]) == answer

    @rule(host=hosts, key=session_keys)
    def pop_last(self, host: int, key: str) -> None:
        answer = self._given(host, lambda store, retry: store.pop_last(key, idempotency_key=retry))
        assert self.model.pop_last(key) == answer

    @rule(host=hosts, key=session_keys)
    def clear_messages(self, host: int, key: str) -> None:
        answer = self._given(host, lambda store, retry: store.clear_messages(key, idempotency_key=retry))
        assert self.model.clear_messages(key) == answer

    @rule(host=hosts, key=session_keys, name=names)
    def set_session_name(self, host: int, key: str, name: str) -> None:
        self._given(host, lambda store, retry: store.set_session_name(key, name, idempotency_key=retry))
        self.model.set_session_name(key, name)

    @rule(host=hosts, key=session_keys)
    def delete_session(self, host: int, key: str) -> None:
        answer = self._given(host, lambda store, retry: store.delete_session(key, idempotency_key=retry))
        assert self.model.delete_session(key) == answer

    @precondition(lambda self: self.given)
    @rule(host=hosts, data=st.data())
    def retry(self, host: int, data: st.DataObject) -> None:
        """An earlier command given again with its idempotency key: its first answer, and nothing recorded."""
        command, key, answer = data.draw(st.sampled_from(self.given), label="retried")
        assert command(self.hosts[host], key) == answer

    # -- checks ---------------------------------------------------------------------

    @invariant()
    def hosts_agree_with_the_model(self) -> None:
        heard(*self.hosts)
        for host in self.hosts:
            for key in KEYS:
                session = self.model.sessions[key]
                assert (session.messages if session.exists else []) == host.load_with_timestamps(key)
                assert session.metadata(key) == host.get_session_metadata(key)
                assert session.version == host.session_at(key).version


def test_two_hosts_agree_with_the_model(postgres_server: PostgresServer) -> None:
    TwoHosts.server_url = postgres_server.url
    # Each example opens a schema and two hosts on the server: fewer, shorter runs than the profile's in-process ones.
    run_state_machine_as_test(TwoHosts, settings=settings(max_examples=15, stateful_step_count=25))
