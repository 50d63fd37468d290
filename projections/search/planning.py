"""Query planning: a parsed query resolved against the index.

A query's words (``tokenizer.parse_query``) resolve to term ids; a prefix
resolves to the terms it starts, by a walk of the term dictionary in key
order from the prefix.
"""

from __future__ import annotations

from operator import itemgetter
from typing import Sequence

import attrs

from .formats import Summary
from .reader import IndexReader
from .scoring import idf
from .tokenizer import QueryWord

__all__ = ["Phrase", "Plan", "PlanTerm", "plan_query"]


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


def plan_query(view: IndexReader, words: Sequence[QueryWord]) -> Plan | None:
    """The plan of ``words`` against the index; ``None`` when no word can match."""
    terms: dict[int, str] = {}
    free: set[int] = set()
    phrases: list[Phrase] = []

    def resolve(token: str, prefix: bool) -> dict[int, str]:
        if prefix:
            return {tid: term for term, tid in view.prefix_tids(token)}
        tid = view.tid(token)
        return {} if tid is None else {tid: token}

    for word in words:
        if word.is_phrase:
            positions = []
            resolved: dict[int, str] = {}
            for place, token in enumerate(word.tokens):
                found = resolve(token, word.prefix and place == len(word.tokens) - 1)
                if not found:
                    break  # a token in no message: the phrase matches nothing
                resolved.update(found)
                positions.append(set(found))
            else:
                terms.update(resolved)
                phrases.append(Phrase(word.tokens, word.prefix, positions))
        else:
            found = resolve(word.tokens[0], word.prefix)
            terms.update(found)
            free.update(found)
    messages = view.messages()
    plan_terms = []
    for tid, term in sorted(terms.items(), key=itemgetter(1)):
        summary = view.summary(tid)
        if summary is not None:
            plan_terms.append(PlanTerm(term, tid, idf(messages, view.df(tid)), summary))
    present = {term.tid for term in plan_terms}
    free &= present
    phrases = [phrase for phrase in phrases if all(position & present for position in phrase.positions)]
    if not free and not phrases:
        return None
    needed = free.union(*(tid for phrase in phrases for tid in phrase.positions))
    return Plan([term for term in plan_terms if term.tid in needed], free, phrases)
