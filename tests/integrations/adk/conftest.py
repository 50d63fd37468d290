"""Fixtures of the Google ADK session service's tests, and a runner for their ``async def`` tests."""

from __future__ import annotations

import asyncio
import inspect
from collections.abc import Iterator
from pathlib import Path

import pytest

from eventstore import AsyncSessionStore
from eventstore.integrations.adk import EventStoreSessionService


@pytest.hookimpl(tryfirst=True)
def pytest_pyfunc_call(pyfuncitem: pytest.Function) -> bool | None:
    """Run an ``async def`` test on a fresh event loop, as ADK's own tests run under pytest-asyncio."""
    if not inspect.iscoroutinefunction(pyfuncitem.obj):
        return None
    arguments = {name: pyfuncitem.funcargs[name] for name in pyfuncitem._fixtureinfo.argnames}
    asyncio.run(pyfuncitem.obj(**arguments))
    return True


@pytest.fixture
def store_path(tmp_path: Path) -> Path:
    return tmp_path / "store"


@pytest.fixture
def store(store_path: Path) -> Iterator[AsyncSessionStore]:
    opened = AsyncSessionStore(store_path, durable=False)
    yield opened
    asyncio.run(opened.close())


@pytest.fixture
def session_service(store: AsyncSessionStore) -> EventStoreSessionService:
    return EventStoreSessionService(store)
