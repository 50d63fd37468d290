"""Query planning: a parsed query resolved against the index, within bounds that keep every query cheap.

A query's words (``tokenizer.parse_query``) resolve to term ids; a prefix
resolves to the terms it starts, by a walk of the term dictionary in key order
from the prefix. So that any query a user can type is answered in bounded
time, words are taken in order while the terms they resolve to number at most
``MAX_QUERY_TERMS`` and the phrases' tokens (repeats too) number at most
``MAX_PHRASE_TOKENS`` (a word that would pass either, and every later one, is
ignored; words in no message cost nothing), and a prefix stands for at most
``MAX_PREFIX_TERMS`` terms (fewer when a query has many prefixes: they share
``MAX_QUERY_TERMS`` equally), its most frequent ones among the first
``MAX_PREFIX_WALK`` terms it starts, in key order.
"""

from __future__ import annotations

from collections.abc import Sequence
from itertools import islice
from operator import itemgetter

import attrs

from eventstore._errors import StoreCorrupted

from .formats.summaries import Summary
from .reader import IndexReader
from .scoring import idf
from .tokenizer import QueryWord

__all__ = ["MAX_PHRASE_TOKENS", "MAX_QUERY_TERMS", "MAX_PREFIX_TERMS", "MAX_PREFIX_WALK", "Phrase", "Plan", "PlanTerm",
           "expand_prefix", "plan_query", "prefix_share"]

#: Terms one prefix stands for at most (its most frequent ones).
MAX_PREFIX_TERMS = 32
#: Distinct terms a query resolves to, at most: later words are ignored.
MAX_QUERY_TERMS = 64
#: Tokens of all a query's phrases, repeats included, at most: each is checked in every message a phrase may match,
#: so a query of many or long phrases of common words would cost without bound while adding no term.
MAX_PHRASE_TOKENS = 64
#: Terms of the dictionary a prefix looks at, in key order, to choose its most frequent ones.
MAX_PREFIX_WALK = 512


@attrs.define
class PlanTerm:
    """One term of a query plan."""

    term: str
    tid: int
    weight: float
    summary: Summary


@attrs.define
class Phrase:
    """A query word of several tokens: at each position, the term ids that may stand there."""

    tokens: tuple[str, ...]
    prefix: bool
    positions: list[set[int]]


@attrs.define
class Plan:
    """A parsed query resolved against the index."""

    terms: list[PlanTerm]  # every term involved, in the canonical order of summation (by term)
    free: set[int]  # term ids that count wherever they occur
    phrases: list[Phrase]
    words: tuple[QueryWord, ...]  # the query's words that count (snippets mark only these)


def prefix_share(words: Sequence[QueryWord]) -> int:
    """How many terms each prefix of the query may stand for."""
    prefixes = sum(1 for word in words if word.prefix)
    return max(1, min(MAX_PREFIX_TERMS, MAX_QUERY_TERMS // prefixes)) if prefixes else 0


def expand_prefix(view: IndexReader, prefix: str, share: int) -> dict[int, str]:
    """Term id → term of the (at most ``share``) most frequent terms starting with ``prefix``.

    Looks at the first ``MAX_PREFIX_WALK`` such terms in key order; equal
    counts keep the earlier term in key order.
    """
    walked = dict((tid, term) for term, tid in islice(view.prefix_tids(prefix), MAX_PREFIX_WALK))
    if len(walked) <= share:
        return walked
    counts = view.dfs(walked)
    chosen = sorted(walked, key=counts.__getitem__, reverse=True)[:share]  # stable: key order among equals
    return {tid: walked[tid] for tid in chosen}


def plan_query(view: IndexReader, words: Sequence[QueryWord]) -> Plan | None:
    """The plan of ``words`` against the index; ``None`` when no word can match."""
    terms: dict[int, str] = {}
    free: set[int] = set()
    phrases: list[Phrase] = []
    counted: list[QueryWord] = []
    phrase_tokens = 0
    share = prefix_share(words)

    def resolve(token: str, prefix: bool) -> dict[int, str]:
        if prefix:
            return expand_prefix(view, token, share)
        tid = view.tid(token)
        return {} if tid is None else {tid: token}

    for word in words:
        if len(terms) >= MAX_QUERY_TERMS:
            break
        if word.is_phrase:
            if phrase_tokens + len(word.tokens) > MAX_PHRASE_TOKENS:
                break
            positions = []
            resolved: dict[int, str] = {}
            for place, token in enumerate(word.tokens):
                found = resolve(token, word.prefix and place == len(word.tokens) - 1)
                if not found:
                    break  # a token in no message: the phrase matches nothing
                resolved.update(found)
                positions.append(set(found))
            else:
                if len(terms.keys() | resolved.keys()) > MAX_QUERY_TERMS:
                    break
                terms.update(resolved)
                phrase_tokens += len(word.tokens)
                phrases.append(Phrase(word.tokens, word.prefix, positions))
                counted.append(word)
        else:
            found = resolve(word.tokens[0], word.prefix)
            if len(terms.keys() | found.keys()) > MAX_QUERY_TERMS:
                break
            terms.update(found)
            free.update(found)
            counted.append(word)
    messages = view.messages()
    plan_terms = []
    for tid, term in sorted(terms.items(), key=itemgetter(1)):
        summary = view.summary(tid)
        if summary is not None:
            df = view.df(tid)
            if df > messages:
                # A log of a negative number below: the counts contradict each other, so one of them is damaged.
                raise StoreCorrupted(f"the search index is damaged: term {tid} is in more messages than it counts")
            plan_terms.append(PlanTerm(term, tid, idf(messages, df), summary))
    present = {term.tid for term in plan_terms}
    free &= present
    phrases = [phrase for phrase in phrases if all(position & present for position in phrase.positions)]
    if not free and not phrases:
        return None
    needed = free.union(*(tid for phrase in phrases for tid in phrase.positions))
    return Plan([term for term in plan_terms if term.tid in needed], free, phrases, tuple(counted))
