"""BM25 weights, the one bound check every query path uses, and the order of results. Pure.

BM25 over messages, k1 = 1.2, b = 0.75. A message's weight for a term,
``tf·(k1+1) / (tf + k1·(1 - b + b·dl/PIVOT))``, is computed when the message
is indexed and stored as one of ``LEVELS`` levels; the length pivot is a
constant (``PIVOT`` tokens) rather than the corpus average, so a stored weight
never goes stale and a session's best weight for a term can be kept and read
best first. The inverse document frequency is FTS5's,
``log((N - df + 0.5) / (df + 0.5))`` floored at 1e-6, from the current counts
at query time. A message scores the sum of ``idf × weight`` over the query
terms it holds; a session scores by its best message; equal scores order by
most recent activity.
"""

from __future__ import annotations

import heapq
import math
from collections.abc import Callable, Hashable, Mapping
from functools import lru_cache
from itertools import repeat
from typing import Any, TypeVar

__all__ = [
    "K1",
    "B",
    "PIVOT",
    "LEVELS",
    "LEVEL_WEIGHTS",
    "term_weight",
    "impact",
    "level_weight",
    "weight_table",
    "idf",
    "may_reach",
    "ranked",
    "ranked_sessions",
]

K1 = 1.2
B = 0.75
#: The message length (in tokens) that BM25's length normalisation is relative to.
PIVOT = 40.0
#: A message's weight for a term is stored as one of this many levels (1 = lowest).
LEVELS = 255
#: ``level_weight(level)`` for every level, by index.
LEVEL_WEIGHTS = tuple(level * (K1 + 1) / LEVELS for level in range(LEVELS + 1))
#: Relative slack of ``may_reach``: a bound and an exact score are sums of the same weights taken in
#: different orders, so an exact tie can differ in the last bits.
_TOLERANCE = 1e-9

K = TypeVar("K", bound=Hashable)


def term_weight(tf: int, dl: int) -> float:
    """BM25's term-frequency part for a term seen ``tf`` times in a message of ``dl`` tokens."""
    return tf * (K1 + 1) / (tf + K1 * (1 - B + B * dl / PIVOT))


@lru_cache(maxsize=65536)
def impact(tf: int, dl: int) -> int:
    """``term_weight`` as a level from 1 to ``LEVELS``."""
    return max(1, min(LEVELS, round(term_weight(tf, dl) * LEVELS / (K1 + 1))))


def level_weight(level: int) -> float:
    """The term weight a stored level stands for."""
    return LEVEL_WEIGHTS[level]


def weight_table(idf_weight: float) -> list[float]:
    """``idf_weight × level_weight(level)`` for every level, by index."""
    return [idf_weight * weight for weight in LEVEL_WEIGHTS]


def idf(messages: int, df: int) -> float:
    """FTS5's inverse document frequency of a term in ``df`` of ``messages`` messages."""
    value = math.log((messages - df + 0.5) / (df + 0.5)) if df else 0.0
    return value if value > 0 else 1e-6


def may_reach(bound: float, score: float) -> bool:
    """Whether something whose score is at most ``bound`` can still reach (or tie) ``score``.

    Every query path prunes with this one check, so that a session tying the
    ``limit``-th score is always scored and the tie-break can prefer it.
    """
    return bound * (1 + _TOLERANCE) >= score


def ranked(scored: Mapping[K, float], recency: Callable[[K], tuple[int, ...]], limit: int) -> list[K]:
    """The ``limit`` best keys of ``scored``: highest score first; equal scores by ``recency``, highest first."""
    def order(key: K) -> tuple[float, tuple[int, ...]]:
        return scored[key], recency(key)

    return _largest(list(scored), order, limit)


def ranked_sessions(scored: Mapping[int, float], activity: Mapping[int, int], limit: int) -> list[int]:
    """``ranked(scored, lambda sid: (activity.get(sid, 0), sid), limit)``: the order of a query's sessions (those
    without an activity oldest), each session's order built by C-level calls rather than two calls of Python."""
    sids = list(scored)
    best = _largest(list(zip(scored.values(), map(activity.get, sids, repeat(0)), sids)), None, limit)
    return [sid for _, _, sid in best]


def _largest(items: list[Any], order: Callable[[Any], Any] | None, limit: int) -> list[Any]:
    """The ``limit`` greatest ``items`` by ``order`` (the items themselves without one), greatest first, equal
    ones in their order among ``items``."""
    if len(items) <= _SORT_UP_TO * limit:
        # What nlargest gives (a stable sort), in C: its heap loop is Python code, a step a key.
        return sorted(items, key=order, reverse=True)[:limit]
    return heapq.nlargest(limit, items, key=order)


#: ``ranked`` sorts every key when they are at most this many times ``limit`` (a query's candidates: the sessions at
#: or above the cut, ties and all), and keeps a heap of ``limit`` among more.
_SORT_UP_TO = 4
