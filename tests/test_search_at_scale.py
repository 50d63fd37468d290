"""Search at the sizes where its faster paths start, with their real thresholds, against a plain BM25.

The unit tests of ``test_search`` lower ``SPREAD_UP_TO`` and ``BLOCK_BITS`` to reach every query path on a few
sessions. Here one corpus is big enough for the real ones: more sessions than a block holds, common words spread
over several messages of more sessions than ``SPREAD_UP_TO`` (so several-word queries of them take the threshold
path, and rarer ones the shared-sessions path), a few sessions of 1,100 messages (many chunks, past the tags' range),
and removals, streaming updates, redactions and appends after. Only the work budget is lifted: past it a query's
results are the best found so far by design (docs/search.md, "Limits").
"""

from __future__ import annotations

import random
import tempfile
from collections import Counter
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from eventstore import ChatMessage, SessionQuery, SessionStore
from projections.search import formats
from projections.search import queries as search_queries

from conftest import FakeClock
from test_search import ReferenceSearch, keys

COMMON = ["the"] * 30 + ["of"] * 20 + ["and"] * 10
VOCABULARY = COMMON + [f"w{number}" for number in range(30)] + [f"r{number}" for number in range(200)]
SESSIONS = 6000
LONG_SESSIONS = 3


def text(chosen: random.Random) -> str:
    return " ".join(chosen.choice(VOCABULARY) for _ in range(chosen.randint(1, 7)))


def build(store: SessionStore, clock: FakeClock, chosen: random.Random) -> None:
    for number in range(SESSIONS):
        clock.advance(seconds=chosen.choice([0, 1]))  # equal activities too: ties go by session id
        count = 1100 if number % (SESSIONS // LONG_SESSIONS) == 7 else chosen.randint(2, 4)
        store.append_many(f"s{number}", [ChatMessage.user(text(chosen)) for _ in range(count)])
    for _ in range(200):
        key = f"s{chosen.randrange(SESSIONS)}"
        clock.advance(seconds=1)
        edit = chosen.choice(["remove_last", "update_last", "redact", "append"])
        if edit == "remove_last":
            store.remove_last(key)
        elif edit == "update_last":
            store.update_last(key, ChatMessage.assistant(text(chosen)))
        elif edit == "redact":
            store.redact(key, "on request")
        else:
            store.append(key, ChatMessage.user(text(chosen)))
    store.catch_up()


def queries(chosen: random.Random) -> Iterator[tuple[str, int]]:
    """Queries of 1 to 8 words, common and rare, with repeats and a prefix, at several limits."""
    fixed = ["the of", "the of and", "the the of", "of and w1", "the w1 w2 w3", "w1*", "the r1", "and of the w0 w0"]
    words = COMMON[::10] + [f"w{number}" for number in range(30)] + ["r1", "r2", "w1*"]
    generated = [" ".join(chosen.choice(words) for _ in range(chosen.randint(1, 8))) for _ in range(16)]
    for keyword in fixed + generated:
        yield keyword, chosen.choice([1, 3, 10, 50])


def counting(calls: Counter[str], name: str, function: Callable[..., Any]) -> Callable[..., Any]:
    def counted(*args: Any, **kwargs: Any) -> Any:
        calls[name] += 1
        return function(*args, **kwargs)

    return counted


@pytest.mark.slow
def test_ranking_at_the_real_thresholds_is_exact(monkeypatch: pytest.MonkeyPatch) -> None:
    """Sessions and messages rank as a plain BM25 over the current messages ranks them, on every query path."""
    monkeypatch.setattr(search_queries, "EXACT_WORK", 10**9)
    calls: Counter[str] = Counter()
    for name in ("_intersected", "_threshold"):
        monkeypatch.setattr(search_queries, name, counting(calls, name, getattr(search_queries, name)))
    chosen = random.Random(5)
    with tempfile.TemporaryDirectory() as directory:
        clock = FakeClock()
        with SessionStore(Path(directory), clock=clock, durable=False) as store:
            build(store, clock, chosen)
            reference = ReferenceSearch(store)
            assert len(reference.messages) > 1 << formats.BLOCK_BITS
            for keyword, limit in queries(chosen):
                scores = reference.scores(keyword)
                expected = reference.search(keyword, limit)
                found = keys(store.search(SessionQuery(keyword, limit)))
                assert [pytest.approx(scores[key]) for key in expected] == [scores.get(key) for key in found], \
                    keyword
                assert expected == found, keyword
                hits = [hit.score for hit in store.search_messages(keyword, limit)]
                assert hits == sorted(hits, reverse=True), keyword
                assert hits[:1] == [pytest.approx(scores[key]) for key in expected[:1]], keyword
    assert calls["_intersected"] and calls["_threshold"], calls
