"""The deletion and restoration rules that the state machines paging through sessions share, with the model's
bookkeeping of a deleted session: its life as it was and the version a restore names."""

from __future__ import annotations

import copy
from abc import abstractmethod
from datetime import datetime
from typing import Generic, Protocol, TypeVar

from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, precondition, rule

from eventstore import SessionStore


class ModelLife(Protocol):
    """A live session as a model knows it."""

    last_activity: datetime


Life = TypeVar("Life", bound=ModelLife)


class DeletionsAndRestores(RuleBasedStateMachine, Generic[Life]):
    """Deletes a session of ``KEYS`` (the model buries its life) and restores a buried one at its last version (its
    life comes back, active at the restore's time)."""

    KEYS: tuple[str, ...]
    store: SessionStore
    live: dict[str, Life]
    buried: dict[str, tuple[int, Life]]  # a deleted session's last version and life
    versions: dict[str, int]

    @abstractmethod
    def _event(self, key: str) -> datetime:
        """Count an event of ``key`` in the model; return its time."""

    @rule(data=st.data())
    def delete(self, data: st.DataObject) -> None:
        key = data.draw(st.sampled_from(self.KEYS))
        assert (key in self.live) == self.store.delete_session(key)
        if key in self.live:
            self.buried[key] = (self.versions[key], self.live.pop(key))
            self._event(key)

    @precondition(lambda self: any(key not in self.live for key in self.buried))
    @rule(data=st.data())
    def restore(self, data: st.DataObject) -> None:
        key = data.draw(st.sampled_from(sorted(key for key in self.buried if key not in self.live)))
        version, life = self.buried[key]
        self.store.restore(key, version=version)
        revived = copy.copy(life)  # the live life and the buried one never share an object the rules change
        revived.last_activity = self._event(key)
        self.live[key] = revived
