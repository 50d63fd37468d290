"""The message path on long sessions: where two terms meet past the maps' range (message ``LAST_TAG`` on, one key
for several messages), a session is scored from its postings only while its bound can reach the ``limit``-th
score, and within the work budget, so that a query's work does not grow with every long session of the store."""

from __future__ import annotations

import tempfile
from pathlib import Path

import pytest

from eventstore import ChatMessage, SessionStore
from eventstore.storage import MemoryStorage
from projections.search import formats
from projections.search import queries as search_queries
from projections.search.formats import summaries

from conftest import FakeClock
from test_search import ReferenceSearch, search
from test_search_by_messages import message_path

LONG_SESSIONS = 40


def long_session(filler: int) -> list[ChatMessage]:
    """Messages past ``LAST_TAG`` where "the" and "of" meet in long messages (low levels: the more ``filler``,
    the lower)."""
    text = "the of " + " ".join(f"filler{n}" for n in range(20 + filler))
    return [ChatMessage.user(text)] * (summaries.LAST_TAG + 3)


@pytest.fixture(params=["lmdb", "memory"])
def long_store(request: pytest.FixtureRequest, tmp_path: Path) -> SessionStore:
    clock = FakeClock()
    if request.param == "lmdb":
        return SessionStore(tmp_path / "store", clock=clock, durable=False)
    return SessionStore.on_storage(MemoryStorage(), clock=clock)


@pytest.fixture
def evaluated(monkeypatch: pytest.MonkeyPatch) -> list[int]:
    """The sessions the query scores from their postings, in the order it scores them."""
    scored: list[int] = []
    evaluate = search_queries._evaluate

    def counted(view: object, plan: object, sid: int, *rest: object) -> dict[int, float]:
        scored.append(sid)
        return evaluate(view, plan, sid, *rest)  # type: ignore[arg-type]

    monkeypatch.setattr(search_queries, "_evaluate", counted)
    return scored


def test_long_sessions_that_cannot_reach_the_limit_are_not_scored(long_store: SessionStore,
                                                                  evaluated: list[int]) -> None:
    """Short sessions of "the of" score far above the long ones: the query scores none of the long sessions
    from their postings, and ranks as a plain BM25 does."""
    with message_path(1, formats.BLOCK_BITS) as answered, long_store as store:
        for number in range(LONG_SESSIONS):
            store.append_many(f"long{number}", long_session(number))
        for number in range(3):
            store.append_many(f"short{number}", [ChatMessage.user("the of")])
        store.catch_up()
        reference = ReferenceSearch(store)
        for limit in (1, 2, 3):
            evaluated.clear()
            assert reference.search("the of", limit) == search(store, "the of", limit)
            assert evaluated == []
        assert len(answered) == 3
        evaluated.clear()
        assert reference.search("the of", 5) == search(store, "the of", 5)  # two long sessions now count
        assert 2 <= len(evaluated) < LONG_SESSIONS // 2


def test_long_sessions_that_tie_are_scored_within_the_work_budget(long_store: SessionStore, evaluated: list[int],
                                                                  monkeypatch: pytest.MonkeyPatch) -> None:
    """Every long session ties: at most the work budget's sessions are scored from their postings, and those
    returned score as much as the best."""
    monkeypatch.setattr(search_queries, "EXACT_WORK", 16)  # 8 sessions for two terms
    with message_path(1, formats.BLOCK_BITS) as answered, long_store as store:
        for number in range(LONG_SESSIONS):
            store.append_many(f"long{number}", long_session(0))
        store.catch_up()
        scores = ReferenceSearch(store).scores("the of")
        found = search(store, "the of", 3)
        assert answered and len(evaluated) <= 8
        assert len(found) == 3 and {scores[key] for key in found} == {max(scores.values())}


def test_a_plain_bm25_over_long_and_short_sessions() -> None:
    """Long sessions whose messages past ``LAST_TAG`` hold the terms at several levels, among short ones: every
    limit ranks as a plain BM25 does on the message path."""
    with message_path(1, 2), tempfile.TemporaryDirectory() as directory:
        clock = FakeClock()
        with SessionStore(Path(directory), clock=clock, durable=False) as store:
            for number in range(12):
                clock.advance(seconds=1)
                late = "the " * (number % 4 + 1) + "of " * (number % 3 + 1) + "and " * (number % 5)
                store.append_many(f"long{number}", [ChatMessage.user("and w1 w2 w3")] * summaries.LAST_TAG
                                  + [ChatMessage.user(late)] * (number % 3 + 1))
                store.append_many(f"short{number}", [ChatMessage.user("the " * (number % 5 + 1) + "w1 " * number)])
            reference = ReferenceSearch(store)
            for keyword in ("the of", "the of and", "of and"):
                for limit in (1, 2, 4, 7, 30):
                    assert reference.search(keyword, limit) == search(store, keyword, limit), (keyword, limit)
