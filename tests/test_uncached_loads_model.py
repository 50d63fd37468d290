"""Loads with the decoded-list cache off, against the plain model: every ``load`` decodes the session's chunks
(messages only, no times), compressed or plain, the first by one lookup and any others by a walk that stops at
the count the catalog holds. The commands are ``test_compressed_model``'s (forks, redactions, restores,
removals, clears, replacements, transactions, vacuums, rebuilds), on two store objects without a cache."""

from __future__ import annotations

from hypothesis import settings
from hypothesis import strategies as st
from hypothesis.stateful import invariant, rule

from eventstore import ChatMessage, SessionStore
from projections.chunk import CHUNK_MESSAGES

from strategies import roles
from test_compressed_model import WORDS, CompressedStoreMachine, keys, writers

#: Runs of short messages about as long as a chunk holds: a session then spans chunks by their count (the
#: machine's long messages span them by their bytes).
runs = st.lists(st.builds(ChatMessage, roles, st.sampled_from(WORDS)), min_size=CHUNK_MESSAGES - 3,
                max_size=CHUNK_MESSAGES + 3)


class UncachedLoadsMachine(CompressedStoreMachine):
    """``CompressedStoreMachine`` on store objects that keep no decoded lists."""

    def _open(self) -> SessionStore:
        return SessionStore(self.directory, clock=self.clock, snapshot_every=4, durable=False, cache_sessions=0)

    @rule(writer=writers, key=keys, run=runs)
    def append_a_run(self, writer: int, key: str, run: list[ChatMessage]) -> None:
        assert self.model.append_many(key, run) == self.stores[writer].append_many(key, run)

    @invariant()
    def loads_agree(self) -> None:
        for store in self.stores:
            for key, session in self.model.sessions.items():
                expected = [timed.message for timed in session.messages] if session.exists else []
                assert expected == store.load(key)
                if session.version:  # the same, folded from the log and snapshots at the current version
                    assert expected == store.load(key, version=session.version)


UncachedLoadsMachine.TestCase.settings = settings(UncachedLoadsMachine.TestCase.settings, stateful_step_count=30)
UncachedLoadsMachine.TestCase.__doc__ = ("With no cache, loads of compressed and plain chunks, one or several a "
                                         "session, agree with the model through every command.")
TestUncachedLoadsModel = UncachedLoadsMachine.TestCase
