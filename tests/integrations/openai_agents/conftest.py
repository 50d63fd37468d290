"""Fixtures of the OpenAI Agents SDK adapter's tests: a store of each kind ``EventStoreSession`` takes, and a way
to run an async test body on a fresh event loop (the SDK is async; pytest here has no async plugin)."""

from __future__ import annotations

import asyncio
import functools
from collections.abc import Callable, Coroutine, Iterator
from pathlib import Path
from typing import Any

import pytest
from agents import set_tracing_disabled

from eventstore import AsyncSessionStore, SessionStore

set_tracing_disabled(True)  # the SDK would otherwise try to export traces of each run to OpenAI

#: The kinds of store the session runs on.
STORE_KINDS = ("async", "sync")


def on_a_loop(test: Callable[..., Coroutine[Any, Any, None]]) -> Callable[..., None]:
    """Run an async test on a fresh event loop (pytest passes the fixtures it names)."""
    @functools.wraps(test)
    def run(**fixtures: Any) -> None:
        asyncio.run(test(**fixtures))
    return run


def open_store(kind: str, path: Path, **options: Any) -> SessionStore | AsyncSessionStore:
    return AsyncSessionStore(path, **options) if kind == "async" else SessionStore(path, **options)


def close_store(store: SessionStore | AsyncSessionStore) -> None:
    if isinstance(store, AsyncSessionStore):
        asyncio.run(store.close())
    else:
        store.close()


@pytest.fixture(params=STORE_KINDS)
def store(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[SessionStore | AsyncSessionStore]:
    """A store of each kind at ``tmp_path / "store"``."""
    opened = open_store(request.param, tmp_path / "store")
    yield opened
    close_store(opened)


@pytest.fixture
def sync_store(tmp_path: Path) -> Iterator[SessionStore]:
    """A ``SessionStore`` at ``tmp_path / "store"``, to inspect what the session wrote."""
    with SessionStore(tmp_path / "store") as opened:
        yield opened
