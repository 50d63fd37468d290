"""The store with its compression dictionary, driven side by side with a plain model through the commands that
rewrite what a command reads back: appends of long messages (compressed chunks, the chunk a command wrote read
back by the next), payloads (an edited chunk's payload column), ``pop_last``, ``replace_messages``, ``fork``,
``restore``, ``redact`` and ``vacuum`` (which replaces a dictionary that learnt a redacted payload), transactions
of several commands on one session, and two store objects on one path writing in turn (each with its own read
caches). After every step each object reads what the model holds; ``verify`` and a rebuild of the read models
check the stores against a fresh fold of the log."""

from __future__ import annotations

import shutil
import tempfile

import pytest
from hypothesis import settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, invariant, precondition, rule

from eventstore import (
    ChatMessage,
    SessionExists,
    SessionNotFound,
    SessionStore,
    SessionView,
    TimestampedMessage,
    _log,
)
from eventstore.events import redacted_message

from conftest import FakeClock
from strategies import json_payloads, roles
from test_model import Model, ModelSession

#: Few keys, so that commands, forks and redactions meet on the same sessions.
KEYS = ("a", "b", "c")
#: Words the compression dictionary can learn: a chunk of a few messages passes the size that is compressed.
WORDS = ("the", "store", "keeps", "every", "change", "as", "an", "event", "session", "message", "chunk", "log",
         "redacted", "dictionary", "fold", "héllo", "ключ", "\U0001f600")
long_texts = st.lists(st.sampled_from(WORDS), min_size=40, max_size=200).map(" ".join)
messages = st.builds(ChatMessage, roles, long_texts, st.none() | json_payloads)
keys = st.sampled_from(KEYS)
#: Which of the two store objects gives a command.
writers = st.integers(0, 1)


class RedactingModel(Model):
    """``Model`` with forks (and which sessions were forked from which) and redaction."""

    def __init__(self, clock: FakeClock) -> None:
        super().__init__(clock)
        self.sessions = {key: ModelSession() for key in KEYS}
        self.forks: dict[str, set[str]] = {key: set() for key in KEYS}
        #: Keys whose log holds content a redaction would rewrite (an event carried a message not redacted).
        self.unredacted: set[str] = set()

    def carried(self, key: str, messages: list[ChatMessage]) -> None:
        """An event of ``key`` recorded ``messages``."""
        if any(redacted_message(message) != message for message in messages):
            self.unredacted.add(key)

    def append_many(self, key: str, batch: list[ChatMessage]) -> int:
        self.carried(key, batch)
        return super().append_many(key, batch)

    def update_last(self, key: str, message: ChatMessage) -> bool:
        version = self.sessions[key].version
        changed = super().update_last(key, message)
        if self.sessions[key].version != version:
            self.carried(key, [message])
        return changed

    def replace_messages(self, key: str, wanted: list[ChatMessage]) -> int:
        version = self.sessions[key].version
        if super().replace_messages(key, wanted) != version:
            self.carried(key, wanted)
        return self.sessions[key].version

    def fork(self, source_key: str, new_key: str) -> None:
        source, target = self.sessions[source_key], self.sessions[new_key]
        if target.exists:
            raise SessionExists(new_key)
        if not source.exists:
            raise SessionNotFound(source_key)
        copied, name = list(source.messages), source.name
        self._event(new_key)
        target.messages, target.name, target.state = copied, name, None
        self.forks[source_key].add(new_key)
        self.carried(new_key, [m.message for m in copied])

    def redact(self, key: str) -> None:
        """Redact ``key`` and every session forked from it, transitively, each with an event of its own."""
        found, pending = [key], [key]
        while pending:
            for fork in sorted(self.forks[pending.pop()]):
                if fork not in found:
                    found.append(fork)
                    pending.append(fork)
        for each in found:
            session = self.sessions[each]
            if each not in self.unredacted:
                continue  # no content left to redact (or no stream): nothing recorded
            self.unredacted.discard(each)
            session.messages = [TimestampedMessage(redacted_message(m.message), m.created_at)
                                for m in session.messages]
            self._event(each, creates=session.exists)


def plain_read_models(store: SessionStore) -> tuple[object, object]:
    """The catalog's entries and the message chunks in their plain layout: a chunk written before the store had
    its dictionary stays plain until a command rewrites it, and a rebuild compresses it."""
    with store._environment.read() as txn:
        return store._catalog.dump(txn), [(key, store._messages._plain(txn, value))
                                          for key, value in store._messages.dump(txn)]


def _restorable(view: SessionView) -> tuple[object, ...]:
    """What a restore compares to know whether it changes anything (versions and activity aside)."""
    if not view.exists:
        return (False,)
    assert view.metadata is not None
    return True, view.name, view.state, tuple(view.timestamped), view.metadata.created_at


class CompressedStoreMachine(RuleBasedStateMachine):
    """Random commands on two store objects sharing one path, with a dictionary trained after a few events."""

    def __init__(self) -> None:
        super().__init__()
        self.patches = pytest.MonkeyPatch()
        self.patches.setattr(_log, "TRAINING_EVENTS", 8)  # a dictionary (compressed records and chunks) after 8 events
        self.directory = tempfile.mkdtemp(prefix="eventstore-compressed-model-")
        self.clock = FakeClock()
        self.model = RedactingModel(self.clock)
        self.stores = [self._open(), self._open()]

    def _open(self) -> SessionStore:
        return SessionStore(self.directory, clock=self.clock, snapshot_every=4, durable=False)

    def teardown(self) -> None:
        try:
            for store in self.stores:
                store.close()
        finally:
            self.patches.undo()
            shutil.rmtree(self.directory, ignore_errors=True)

    # -- commands -------------------------------------------------------------------

    @rule(seconds=st.sampled_from((1, 61, 3601)))
    def advance_clock(self, seconds: int) -> None:
        self.clock.advance(seconds=seconds)

    @rule(writer=writers, key=keys, batch=st.lists(messages, min_size=1, max_size=5))
    def append_many(self, writer: int, key: str, batch: list[ChatMessage]) -> None:
        assert self.model.append_many(key, batch) == self.stores[writer].append_many(key, batch)

    @rule(writer=writers, key=keys)
    def pop_last(self, writer: int, key: str) -> None:
        assert self.model.pop_last(key) == self.stores[writer].pop_last(key)

    @rule(writer=writers, key=keys, message=messages)
    def update_last(self, writer: int, key: str, message: ChatMessage) -> None:
        assert self.model.update_last(key, message) == self.stores[writer].update_last(key, message)

    @rule(writer=writers, key=keys, data=st.data())
    def replace_messages(self, writer: int, key: str, data: st.DataObject) -> None:
        """A prune (some current messages, in order) with new ones after them."""
        session = self.model.sessions[key]
        current = [m.message for m in session.messages] if session.exists else []
        kept = [m for m in current if data.draw(st.booleans(), label="kept")]
        wanted = kept + data.draw(st.lists(messages, max_size=2), label="new")
        assert self.model.replace_messages(key, wanted) == self.stores[writer].replace_messages(key, wanted)

    @rule(writer=writers, key=keys)
    def delete_session(self, writer: int, key: str) -> None:
        assert self.model.delete_session(key) == self.stores[writer].delete_session(key)

    @rule(writer=writers, source=keys, new=keys)
    def fork(self, writer: int, source: str, new: str) -> None:
        try:
            self.model.fork(source, new)
        except (SessionExists, SessionNotFound) as expected:
            with pytest.raises(type(expected)):
                self.stores[writer].fork(source, new)
        else:
            assert self.model.sessions[new].version == self.stores[writer].fork(source, new)

    @rule(writer=writers, key=keys)
    def redact(self, writer: int, key: str) -> None:
        self.model.redact(key)
        self.stores[writer].redact(key, "asked to forget")

    @rule(writer=writers, key=keys, data=st.data())
    def restore(self, writer: int, key: str, data: st.DataObject) -> None:
        """Back to an earlier version, as the store's own time travel shows it (folded from the log and
        snapshots; ``verify`` checks both)."""
        session = self.model.sessions[key]
        if not session.version:
            return
        version = data.draw(st.integers(1, session.version), label="version")
        store = self.stores[writer]
        then, now = store.session_at(key, version=version), store.session_at(key)
        changed = _restorable(then) != _restorable(now)
        if changed:
            self.model._event(key, creates=then.exists)
            self.model.carried(key, [m.message for m in then.timestamped])
            session.exists = then.exists
            session.messages = list(then.timestamped)
            session.name, session.state = then.name, then.state
            session.created_at = then.metadata.created_at if then.metadata is not None else None
            if not then.exists:
                session.last_activity = None
        assert session.version == store.restore(key, version=version)

    @rule(writer=writers, key=keys, first=messages, second=messages)
    def transaction_on_one_session(self, writer: int, key: str, first: ChatMessage, second: ChatMessage) -> None:
        """Three commands on one session in one commit: each reads where the one before left the stream."""
        with self.stores[writer].transaction() as tx:
            appended = tx.append(key, first)
            popped = tx.pop_last(key)
            again = tx.append_many(key, [second, first])
        assert self.model.append_many(key, [first]) == appended.result
        assert self.model.pop_last(key) == popped.result
        assert self.model.append_many(key, [second, first]) == again.result

    @rule(writer=writers, key=keys, message=messages)
    def transaction_rolled_back(self, writer: int, key: str, message: ChatMessage) -> None:
        """An append and a pop that a failing fork in the same transaction rolls back: nothing they wrote (nor
        what a store object kept of it) may show."""
        with pytest.raises(SessionExists), self.stores[writer].transaction() as tx:
            tx.append(key, message)
            tx.pop_last(key)
            tx.append(key, message)
            tx.fork(key, key)  # the session is live: refused, and the transaction with it

    @rule()
    def vacuum(self) -> None:
        """The store to itself (the other object closed), then both open again."""
        self.stores[1].close()
        self.stores[0].vacuum()
        self.stores[1] = self._open()

    @rule()
    def rebuild_projections(self) -> None:
        before = plain_read_models(self.stores[0])
        self.stores[0].rebuild_projections()
        assert before == plain_read_models(self.stores[0])

    @rule(writer=writers)
    def reopen(self, writer: int) -> None:
        self.stores[writer].close()
        self.stores[writer] = self._open()

    @precondition(lambda self: any(s.version for s in self.model.sessions.values()))
    @rule()
    def verify(self) -> None:
        report = self.stores[0].verify()
        assert report.ok, report.problems

    # -- checks ---------------------------------------------------------------------

    @invariant()
    def sessions_agree(self) -> None:
        for store in self.stores:
            for key, session in self.model.sessions.items():
                expected = session.messages if session.exists else []
                assert expected == store.load_with_timestamps(key)
                assert [m.message for m in expected[-2:]] == store.load_last(key, 2)
                assert session.metadata(key) == store.get_session_metadata(key)


CompressedStoreMachine.TestCase.settings = settings(CompressedStoreMachine.TestCase.settings, stateful_step_count=30)
CompressedStoreMachine.TestCase.__doc__ = ("Compressed chunks and records, forks, redactions, restores and vacuums "
                                           "agree with the model, on two store objects.")
TestCompressedStoreModel = CompressedStoreMachine.TestCase
