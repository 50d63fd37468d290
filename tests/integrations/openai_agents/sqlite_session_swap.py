"""A pytest plugin for the SDK's own test suite: its session tests, run against ``EventStoreSession``.

``.ci/openai-agents-suite`` loads it into a run of the SDK's tests (``-p sqlite_session_swap``). Before any test
module is imported, it puts ``StoreBackedSQLiteSession`` where the tests import ``SQLiteSession`` from (``agents``
and ``agents.memory``), and it keeps only the tests whose code names ``SQLiteSession``: each of those then runs on
the event store instead. The SDK's own code keeps the real class (``agents.memory.sqlite_session``), so its
subclasses and internal checks are untouched.
"""

from __future__ import annotations

import inspect
import os
import re
from pathlib import Path
from typing import Any

import agents
import agents.memory
import pytest
from agents.memory import SessionSettings

from eventstore import SessionStore
from eventstore.integrations.openai_agents import EventStoreSession
from eventstore.storage import MemoryStorage

_NAMES_THE_SESSION = re.compile(r"\bSQLiteSession\b")


class StoreBackedSQLiteSession(EventStoreSession):
    """``SQLiteSession``'s constructor over an event store: ``":memory:"`` is a store in memory of its own, a file
    path is a store in that directory (sessions given one path share it, as they would share a SQLite file)."""

    def __init__(self, session_id: str, db_path: str | os.PathLike[str] = ":memory:",
                 sessions_table: str = "agent_sessions", messages_table: str = "agent_messages",
                 session_settings: SessionSettings | dict[str, Any] | None = None) -> None:
        del sessions_table, messages_table  # SQLite's table names: the store has no tables to name
        self._owned = (SessionStore.on_storage(MemoryStorage()) if str(db_path) == ":memory:"
                       else SessionStore(Path(db_path)))
        super().__init__(session_id, self._owned, session_settings=session_settings)

    def close(self) -> None:
        self._owned.close()


agents.SQLiteSession = StoreBackedSQLiteSession  # type: ignore[misc,assignment]
agents.memory.SQLiteSession = StoreBackedSQLiteSession  # type: ignore[misc,assignment]


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    kept: list[pytest.Item] = []
    unrelated: list[pytest.Item] = []
    for item in items:
        (kept if _names_the_session(item) else unrelated).append(item)
    config.hook.pytest_deselected(items=unrelated)
    items[:] = kept


def _names_the_session(item: pytest.Item) -> bool:
    function = getattr(item, "function", None)
    return function is not None and bool(_NAMES_THE_SESSION.search(inspect.getsource(function)))
