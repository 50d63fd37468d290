"""Queries built to be slow: many or long phrases of common words are bounded like other terms.

Every phrase is checked in every message holding all its terms, so a query of thousands of distinct phrases of
the same few common words (a pasted page of hyphenated words, say) cost time in proportion to its length while
adding no term to the 64-term bound. Its phrases' tokens now count against a bound of their own.
"""

from __future__ import annotations

import itertools
from pathlib import Path

from eventstore import ChatMessage, SessionQuery, SessionStore
from projections.search import planning
from projections.search.reader import IndexReader
from projections.search.tokenizer import parse_query

COMMON = tuple(f"c{n}" for n in range(8))


def _store(path: Path) -> SessionStore:
    store = SessionStore(path, durable=False)
    store.append_many("common", [ChatMessage.user(" ".join(COMMON * 4)) for _ in range(3)])
    return store


def _plan(store: SessionStore, keyword: str) -> planning.Plan | None:
    def plan(view: IndexReader, _txn: object) -> planning.Plan | None:
        return planning.plan_query(view, parse_query(keyword))

    return store._queries._search.query(plan)  # the index as every search reads it


def _pairs(count: int) -> list[str]:
    return ["-".join(pair) for pair in itertools.islice(itertools.product(COMMON, repeat=2), count)]


def test_the_phrases_of_a_query_hold_at_most_the_phrase_token_bound(tmp_path: Path) -> None:
    """Hundreds of distinct phrases of eight common words resolve to eight terms, yet only the first phrases whose
    tokens fit the bound are kept; a phrase longer than the bound is not."""
    triples = " ".join("-".join(words) for words in itertools.product(COMMON, repeat=3))
    long_phrase = "-".join(["c0"] * 10_000)
    with _store(tmp_path / "store") as store:
        plan = _plan(store, triples)
        assert plan is not None and len(plan.phrases) == planning.MAX_PHRASE_TOKENS // 3
        assert _plan(store, long_phrase) is None
        plan = _plan(store, f"{long_phrase} c0-c1")
        assert plan is None  # a word past the bound ends the query, as a term past MAX_QUERY_TERMS does


def test_the_phrase_that_would_pass_the_bound_and_later_words_are_ignored(tmp_path: Path) -> None:
    """As with terms: phrases are taken in order while their tokens fit; the one that would pass, and every later
    word, count for nothing (no error). Phrases with a token in no message cost nothing."""
    bound = planning.MAX_PHRASE_TOKENS
    absent = " ".join(f"nowhere{n}-c0" for n in range(bound))
    with _store(tmp_path / "store") as store:
        store.append("late", ChatMessage.user("zebra crossing"))
        store.append("word", ChatMessage.user("lonely"))
        full = " ".join([absent, *_pairs(bound // 2), "zebra-crossing lonely"])
        assert {found.key for found in store.search(SessionQuery(full, 10))} == {"common"}
        assert {hit.session_key for hit in store.search_messages(full, 10)} == {"common"}
        within = " ".join([absent, *_pairs(bound // 2 - 1), "zebra-crossing lonely"])
        assert {found.key for found in store.search(SessionQuery(within, 10))} == {"common", "late", "word"}
        assert {hit.session_key for hit in store.search_messages(within, 10)} == {"common", "late", "word"}
