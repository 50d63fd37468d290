"""The session catalog (each head row kept once, its position in ``catalog.sessions`` and ``catalog.keys``) against
the in-memory model of ``test_model``, with the commands that rewrite a whole head besides the model's own:
restores to an earlier version, forks (over deleted keys too), two commands on one session in one transaction at
one clock time (the position stays while the version, count, name or state change), and conversions from the
catalogs of code versions 2 to 4. After every step ``verify`` finds nothing, and a search's results carry the
model's metadata."""

from __future__ import annotations

import copy
from pathlib import Path

from hypothesis import strategies as st
from hypothesis.stateful import invariant, precondition, rule

from eventstore import ChatMessage, SessionExists, SessionQuery

from strategies import KEYS, STATES, messages, names, session_keys, turn_ids
from test_listing import _as_catalog_version
from test_model import ModelSession, StoreMachine

#: A word each message the search rule appends carries, so that a search finds every session that has one.
WORD = "catalogued"


class CatalogMachine(StoreMachine):
    """``test_model``'s machine, with restores, forks, same-time transactions and catalog conversions."""

    def __init__(self) -> None:
        super().__init__()
        #: Each key's session as the model had it after each version a step ended at.
        self.past: dict[str, dict[int, ModelSession]] = {key: {} for key in KEYS}

    def _remember(self) -> None:
        for key, session in self.model.sessions.items():
            self.past[key].setdefault(session.version, copy.deepcopy(session))

    # -- commands that rewrite a whole head ------------------------------------------

    @precondition(lambda self: any(session.version for session in self.model.sessions.values()))
    @rule(data=st.data())
    def restore(self, data: st.DataObject) -> None:
        key = data.draw(st.sampled_from([key for key, s in self.model.sessions.items() if s.version]), label="key")
        version = data.draw(st.sampled_from(sorted(v for v in self.past[key] if v)), label="version")
        then, session = self.past[key][version], self.model.sessions[key]
        if not (self._looks_alike(session, then)):
            at = self.model._event(key, creates=False)
            if then.exists:
                session.exists, session.created_at, session.last_activity = True, then.created_at, at
                session.messages, session.name = list(then.messages), then.name
                session.state = then.state
            else:
                session.exists, session.created_at, session.last_activity = False, None, None
                session.messages, session.name, session.state = [], None, None
        assert session.version == self.store.restore(key, version=version)

    @staticmethod
    def _looks_alike(one: ModelSession, other: ModelSession) -> bool:
        """What a restore compares: versions and activity times aside (``commands._same_session``)."""
        if not one.exists and not other.exists:
            return True
        return ((one.exists, one.name, one.run_state(), one.created_at, one.messages)
                == (other.exists, other.name, other.run_state(), other.created_at, other.messages))

    @precondition(lambda self: any(session.exists for session in self.model.sessions.values()))
    @rule(data=st.data(), new_key=session_keys)
    def fork(self, data: st.DataObject, new_key: str) -> None:
        source_key = data.draw(st.sampled_from(sorted(self.model.live())), label="source")
        source, target = self.model.sessions[source_key], self.model.sessions[new_key]
        if target.exists:
            try:
                self.store.fork(source_key, new_key)
            except SessionExists:
                return
            raise AssertionError(f"a fork over the live {new_key!r} was not refused")
        messages_then, name_then = list(source.messages), source.name
        self.model._event(new_key)
        target.messages, target.name, target.state = messages_then, name_then, None
        assert target.version == self.store.fork(source_key, new_key)

    @rule(key=session_keys, message=messages, name=names, state=st.sampled_from(STATES), turn_id=turn_ids)
    def several_changes_at_one_time(self, key: str, message: ChatMessage, name: str, state: str,
                                    turn_id: str | None) -> None:
        """An append, a rename and a state change committed together: one clock time, so the session's position
        stays (after the first) while what it holds changes."""
        self.model.append_many(key, [message])
        self.model.set_session_name(key, name)
        self.model.set_session_state(key, state, turn_id)
        with self.store.transaction() as tx:
            tx.append(key, message)
            tx.set_session_name(key, name)
            tx.set_session_state(key, state, turn_id)

    @rule(key=session_keys)
    def append_searchable(self, key: str) -> None:
        message = ChatMessage.user(f"{WORD} {key[:8]}")
        assert self.model.append_many(key, [message]) == self.store.append(key, message)

    @rule(version=st.sampled_from((2, 3, 4)))
    def convert_from_an_earlier_catalog(self, version: int) -> None:
        """The store as the catalog of code ``version`` left it, opened again (which converts it)."""
        self.store.close()
        _as_catalog_version(Path(self.directory), version)
        self.store = self._open()

    # -- checks ---------------------------------------------------------------------

    @invariant()
    def remembered(self) -> None:
        self._remember()

    @invariant()
    def verify_finds_nothing(self) -> None:
        report = self.store.verify()
        assert report.ok, report.problems

    @invariant()
    def search_results_carry_the_models_metadata(self) -> None:
        found = self.store.search(SessionQuery(WORD))
        live = self.model.live()
        expected = {key for key, s in live.items() if any(WORD in str(m.message.content) for m in s.messages)}
        assert expected == {metadata.key for metadata in found}
        assert all(metadata == live[metadata.key].live_metadata(metadata.key) for metadata in found)


CatalogMachine.TestCase.__doc__ = ("The catalog agrees with the model after restores, forks, same-time transactions "
                                   "and conversions, and verify finds nothing.")
TestCatalogModel = CatalogMachine.TestCase

