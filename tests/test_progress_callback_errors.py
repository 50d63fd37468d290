"""A progress callback's own error stops a catch-up or rebuild of the search index and comes through unchanged.

Found reading the deferred models: the fold calls ``progress`` inside the net that names what decoding a damaged
model raises (``TypeError``, ``ValueError``, ``LookupError``, ...), so a caller's ``TypeError`` came out as
``StoreCorrupted: the search read model is damaged``: a store reported damaged that is not.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from eventstore import ChatMessage, SessionQuery, SessionStore


class CallersOwn(LookupError):
    """One of the kinds the damage net catches, raised by the caller."""


def raising(error: Exception) -> Callable[..., None]:
    def progress(*_: object) -> None:
        raise error

    return progress


@pytest.fixture
def store(tmp_path: Path) -> Iterator[SessionStore]:
    with SessionStore(str(tmp_path / "store"), durable=False) as store:
        for number in range(40):
            store.append_many(f"s{number}", [ChatMessage.user(f"apple word{number}"), ChatMessage.assistant("banana")])
        yield store


@pytest.mark.parametrize("error", [TypeError("mine"), ValueError("mine"), CallersOwn("mine"), ZeroDivisionError()],
                         ids=["TypeError", "ValueError", "LookupError", "ZeroDivisionError"])
@pytest.mark.parametrize("call", [lambda store, progress: store.catch_up(progress=progress),
                                  lambda store, progress: store.rebuild_projections(["search"], progress=progress)],
                         ids=["catch_up", "rebuild_projections"])
def test_the_callbacks_error_comes_through_unchanged(store: SessionStore, error: Exception,
                                                     call: Callable[[SessionStore, Any], object]) -> None:
    with pytest.raises(type(error)) as raised:
        call(store, raising(error))
    assert raised.value is error
    assert store.verify().ok
    # The index is not damaged: it catches up and answers.
    store.catch_up()
    assert len(store.search(SessionQuery(keyword="apple", limit=100))) == 40


def test_a_search_from_the_callback_answers_as_a_fresh_store_does(store: SessionStore, tmp_path: Path) -> None:
    answers: list[list[str]] = []

    def progress(*_: object) -> None:
        answers.append([m.key for m in store.search(SessionQuery(keyword="apple word3", limit=5))])

    store.catch_up(progress=progress)
    with SessionStore(str(tmp_path / "store"), durable=False) as fresh:
        expected = [m.key for m in fresh.search(SessionQuery(keyword="apple word3", limit=5))]
    assert answers and all(answer == expected for answer in answers)
