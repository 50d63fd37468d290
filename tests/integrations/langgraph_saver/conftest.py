"""Fixtures of the LangGraph checkpointer's tests: a store on a temporary path and a saver on it."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from eventstore import SessionStore
from eventstore.integrations.langgraph import EventStoreSaver


@pytest.fixture
def store(store_path: Path) -> Iterator[SessionStore]:
    with SessionStore(store_path, durable=False) as opened:
        yield opened


@pytest.fixture
def saver(store: SessionStore) -> EventStoreSaver:
    return EventStoreSaver(store)
