"""Findings of a review of the restructured store: each test failed before its fix."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from eventstore import ChatMessage, SessionStore
from projections.search.planning import MAX_QUERY_TERMS

from conftest import ENGINES, open_store


@pytest.fixture(params=ENGINES)
def store(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[SessionStore]:
    with open_store(request.param, tmp_path / "store") as opened:
        yield opened


class TestSnippetsFollowTheQueryBound:
    """A word the query bound ignores is not marked in snippets either, so a long query costs each hit little.

    Before, every snippet matched all of the query's words against the message: a query of 5,000 known words
    took about 50 ms per hit (a second for the default 20 hits, half a minute for 1,000).
    """

    def test_a_word_past_the_bound_is_not_marked(self, store: SessionStore) -> None:
        counted = [f"w{number}" for number in range(MAX_QUERY_TERMS)]
        store.append_many("s", [ChatMessage.user(" ".join(counted)), ChatMessage.user("ignored w0")])
        hits = store.search_messages(" ".join([*counted, "ignored"]), 5)
        assert ["ignored [w0]"] == [hit.snippet for hit in hits if hit.index == 1]

    def test_a_word_within_the_bound_is_marked(self, store: SessionStore) -> None:
        store.append_many("s", [ChatMessage.user("alpha beta"), ChatMessage.user("gamma alpha")])
        hits = store.search_messages("gam* alpha", 5)
        assert {"[alpha] beta", "[gamma] [alpha]"} == {hit.snippet for hit in hits}
