"""Query execution: the best sessions, or messages, for a plan, exactly ranked.

Every session holding one query term scores by that term's level; a session
holding several is resolved from the tags when possible, else scored exactly
(best upper bound first, only while the bound can still make the ``limit``).
One term: its best level groups, down to the ``limit``-th session. Several
terms (no phrases), all but the most frequent in few sessions, or in several
messages of few sessions: each term's best sessions alone, cut at a level
found from its levels' histogram, and the sessions where two terms may share a message, found a
block at a time from the terms' message maps, or their tags, as compressed
bitmaps in C (``_intersected``); a few terms in many sessions, with message
maps wherever two of them meet (the most common words): message by message,
best level first, from the maps, the blocks' messages by level and the terms'
repeated messages (``_by_messages``); phrases, or many terms: a threshold
algorithm over their level groups (``_threshold``). Every path prunes with ``scoring.may_reach``, so a session
tying the ``limit``-th score is always scored; ties go to the most recent
activity.
"""

from __future__ import annotations

import bisect
import heapq
from collections import Counter
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from itertools import combinations, compress, pairwise, repeat
from operator import attrgetter, ge, itemgetter, neg
from typing import Any, NamedTuple

import numpy as np
import numpy.typing as npt
from pyroaring import BitMap

from eventstore._errors import StoreCorrupted

from . import formats
from .formats.arrays import distinct, u32_array, u32s
from .formats.chunks import CHUNK_MESSAGES, chunk_message, chunk_occurrences_of
from .formats.maps import (
    JOINED_BLOCKS,
    JOINED_SHIFT,
    LAST_KEYS,
    MAP_SHIFT,
    block_present,
    block_spread,
    mapped_size,
    placed_keys,
    single_keys,
)
from .formats.summaries import LAST_TAG, MULTI, Block, Summary
from .formats.wholes import Whole
from .planning import Phrase, Plan, PlanTerm, plan_query
from .reader import IndexReader
from .scoring import LEVEL_WEIGHTS, may_reach, ranked, ranked_sessions
from .snippets import phrase_in
from .tokenizer import QueryWord, tokenize

__all__ = ["MATERIALIZE_UP_TO", "INTERSECT_UP_TO", "SPREAD_UP_TO", "EXACT_WORK", "BY_MESSAGES_UP_TO",
           "SCORED_IN_ARRAYS_FROM", "Activities", "MessageHits", "Texts",
           "search_messages", "search_sessions"]

#: A query whose terms are in at most this many sessions all told is scored from the sessions they share.
MATERIALIZE_UP_TO = 4000
#: So is a query whose terms but the most frequent one are each in at most this many sessions.
INTERSECT_UP_TO = 8192
#: And so is a query whose terms are spread over several messages (``Summary.spread``) of at most this many sessions
#: all told, however many sessions hold them: those are most of the sessions it may resolve from postings, which
#: is what the threshold path saves on words in most sessions.
SPREAD_UP_TO = 8192

#: A query of at most this many terms (no phrases) whose terms have message maps wherever two of them meet is
#: answered message by message (``_by_messages``): its messages are cut into parts by which terms they hold, one
#: part for each set of two terms or more.
BY_MESSAGES_UP_TO = 4

#: The message path scores the messages where a term repeats one by one below this many at a level, and more over
#: whole arrays (numpy): a few calls a term, whose fixed cost pays only for many messages.
SCORED_IN_ARRAYS_FROM = 64

#: The work budget of one query, in (session, term) pairs scored exactly from postings: it bounds a query whose
#: terms are in very many sessions with near-equal weights. Past it, the best sessions found so far stand.
EXACT_WORK = 4096

#: Returns the contents of a session's current messages, oldest first (for phrase checks).
Texts = Callable[[int], Sequence[str]]
#: Returns the last activity (µs since the epoch) of those of the sessions that have one.
Activities = Callable[[list[int]], Mapping[int, int]]


def _evaluate(view: IndexReader, plan: Plan, sid: int, texts: Texts | None,
              cache: dict[int, list[str]]) -> dict[int, float]:
    """Exact scores of the session's matching messages: message index → score."""
    found: dict[int, dict[int, int]] = {}
    tids = [term.tid for term in plan.terms]
    for number, raw in enumerate(view.chunks(sid)):
        base = number * CHUNK_MESSAGES
        for tid, occurrences in zip(tids, chunk_occurrences_of(raw, tids)):
            for index, level in occurrences:
                found.setdefault(base + index, {})[tid] = level
    scores: dict[int, float] = {}
    for index, levels in found.items():
        counted = plan.free.intersection(levels)
        for phrase in plan.phrases:
            if all(position.intersection(levels) for position in phrase.positions) and \
                    _phrase_holds(sid, index, phrase, texts, cache):
                for position in phrase.positions:
                    counted.update(position.intersection(levels))
        if counted:
            scores[index] = sum(term.weight * LEVEL_WEIGHTS[levels[term.tid]]
                                for term in plan.terms if term.tid in counted)
    return scores

def _phrase_holds(sid: int, index: int, phrase: Phrase, texts: Texts | None,
                  cache: dict[int, list[str]]) -> bool:
    if texts is None:
        return True
    contents = cache.get(sid)
    if contents is None:
        contents = cache[sid] = list(texts(sid))
    if index >= len(contents):
        return False
    return phrase_in(tokenize(contents[index]), phrase.tokens, phrase.prefix)

def search_sessions(view: IndexReader, words: Sequence[QueryWord], limit: int,
                    texts: Texts | None = None, activities: Activities | None = None) -> list[tuple[int, float]]:
    """The ``limit`` best sessions for ``words`` as ``(stream id, score)``: best first, then most recent.

    Args:
        view: the index through a transaction (``reader``) or a batch (``overlay``).
        words: the parsed query (``tokenizer.parse_query``).
        limit: how many sessions at most.
        texts: loads a session's message contents, to check phrases (words
            of several tokens); without it a phrase matches wherever all its
            tokens occur in one message.
        activities: the sessions' last activities (µs), which order equal scores; the index's own
            (``view.activities``) without it. Another source must give the same times: a caller that reads
            the sessions' rows anyway (their metadata) reads them there rather than in the index too.
    """
    plan = plan_query(view, words) if limit > 0 else None
    if plan is None:
        return []
    cutoff = None
    if len(plan.terms) == 1 and not plan.phrases:
        scored = _single_term(plan.terms[0], limit)
    elif not plan.phrases and _intersection_pays(plan):
        scored, cutoff = _intersected(view, plan, limit)
    elif not plan.phrases and _messages_mapped(plan):
        scored, cutoff = _by_messages(view, plan, limit)
    else:
        scored = _threshold(view, plan, limit, texts, message_level=False)
    if not scored:
        return []
    if len(scored) > limit:
        if cutoff is None:
            cutoff = sorted(scored.values(), reverse=True)[limit - 1]
        candidates = list(compress(scored.keys(), map(ge, scored.values(), repeat(cutoff))))
        scores = list(map(scored.__getitem__, candidates))
    else:
        candidates, scores = list(scored), list(scored.values())
    # Activity orders equal scores only: read it for the sessions that tie.
    ties = Counter(scores)
    tied = [sid for sid, score in zip(candidates, scores) if ties[score] > 1] if len(ties) < len(candidates) else []
    activity = (activities or view.activities)(tied) if tied else {}
    chosen = dict(zip(candidates, scores))
    return [(sid, chosen[sid]) for sid in ranked_sessions(chosen, activity, limit)]


class MessageHits(NamedTuple):
    """What ``search_messages`` found."""

    #: ``(stream id, message index, score)`` of the best messages: best first, then newest.
    hits: list[tuple[int, int, float]]
    #: The query's words that count (``Plan.words``): the words past the query's bounds mark no snippet.
    words: tuple[QueryWord, ...]


def search_messages(view: IndexReader, words: Sequence[QueryWord], limit: int,
                    texts: Texts | None = None) -> MessageHits:
    """The ``limit`` best current messages, and the words that counted (planned once, for the snippets too)."""
    plan = plan_query(view, words) if limit > 0 else None
    if plan is None:
        return MessageHits([], ())
    scored = _threshold(view, plan, limit, texts, message_level=True)
    activity = view.activities({sid for sid, _ in scored})
    best = ranked(scored, lambda key: (activity.get(key[0], 0), key[1], key[0]), limit)
    return MessageHits([(sid, index, scored[sid, index]) for sid, index in best], plan.words)


def _single_term(term: PlanTerm, limit: int) -> dict[int, float]:
    """Sessions for a one-term query: its best level groups, through the group that reaches ``limit``."""
    summary = term.summary
    if not summary.grouped:  # few sessions: score them all
        table = _table(term.weight)
        return dict(zip(summary.sorted_sids(), map(table.__getitem__, summary.best_levels())))
    scored: dict[int, float] = {}
    for level, members in summary.groups():
        scored.update(zip(u32s(members), repeat(term.weight * LEVEL_WEIGHTS[level])))
        if len(scored) >= limit:
            break
    return scored

def _table(weight: float) -> list[float]:
    """A term's ``weight × LEVEL_WEIGHTS[level]`` for every level, by index (``_weights`` as a list)."""
    table: list[float] = _weights(weight).tolist()
    return table

def _weights(weight: float) -> npt.NDArray[np.float64]:
    """A term's ``weight × LEVEL_WEIGHTS[level]`` for every level, by index: one multiplication over an array in C,
    whose IEEE products are Python's, so every score stays the same to the last bit."""
    found: npt.NDArray[np.float64] = _LEVEL_WEIGHTS * weight
    return found

#: ``LEVEL_WEIGHTS`` as an array, for ``_table``.
_LEVEL_WEIGHTS = np.array(LEVEL_WEIGHTS)

def _intersection_pays(plan: Plan) -> bool:
    """Whether the sessions the terms share are cheaper to find (in C, over every session of the terms) than to
    reach by the threshold path: when the terms are in few sessions all told, or all but one are, or few sessions
    hold them in several messages (those it may resolve from postings)."""
    sizes = sorted(term.summary.sessions for term in plan.terms)
    return (sum(sizes) <= MATERIALIZE_UP_TO or sizes[-2] <= INTERSECT_UP_TO
            or sum(term.summary.spread() for term in plan.terms) <= SPREAD_UP_TO)

def _messages_mapped(plan: Plan) -> bool:
    """Whether the plan has few enough terms for ``_by_messages``, each with a message map in every block where
    another is too."""
    if len(plan.terms) > BY_MESSAGES_UP_TO or max(term.summary.block_numbers()[-1] for term in plan.terms) \
            >= JOINED_BLOCKS:
        return False
    holders: dict[int, list[int]] = {}
    for term in plan.terms:
        for number, sessions in term.summary.block_sizes():
            holders.setdefault(number, []).append(sessions)
    return all(mapped_size(sessions) for sizes in holders.values() if len(sizes) > 1 for sessions in sizes)

def _by_messages(view: IndexReader, plan: Plan, limit: int) -> tuple[dict[int, float], float | None]:
    """Exact top scores (no phrases, terms with maps wherever two meet) from each term's best sessions and the
    messages that hold two terms or more, found and scored a level at a time by bitmaps in C.

    A session scores at least its best single term, and more only where one
    message holds two terms. Those messages are the ANDs of the terms' maps. A
    message's weight for a term is that of its level (``search.levels``: the
    level of the terms it holds once) unless the term repeats there
    (``search.repeats``: then its own). So the messages where no term repeats
    are cut into parts by which terms they hold and taken level by level, best
    first (one score a part and level), each part while the sum of its terms'
    weights at the level can reach the ``limit``-th score found; those where a
    term repeats are cut into parts by which terms repeat and which they hold,
    each taken while its bound (the repeating terms at their best level among
    its messages, the others at the level) can reach (``_score_repeats``). A
    message of a
    session's past the maps' range (``LAST_TAG``) stands for several: such
    sessions are scored from their postings, last, while their bound can reach
    and within the work budget (``_score_late``).

    The blocks' maps and repeats are joined into one key space (``_Joined``),
    so that each step is one operation in C over every block, and the levels
    of a walk's messages are looked up at once (``IndexReader.message_levels``).

    Returns the scores (exact for every session that can be among the ``limit``
    best, lower bounds below them) and the ``limit``-th best score.
    """
    terms = plan.terms
    weights = [_weights(term.weight) for term in terms]
    tables: list[list[float]] = [array.tolist() for array in weights]
    scored = _TopScores(limit, _best_singles([term.summary for term in terms], weights, limit))
    held = [set(term.summary.block_numbers()) for term in terms]
    shared_blocks = sorted({number for one, other in combinations(held, 2) for number in one & other})
    if not shared_blocks:
        return dict(scored), scored.kth if scored.kth >= 0 else None
    joined = _Joined(view, shared_blocks)
    maps = [joined.maps(term.tid, blocks) for term, blocks in zip(terms, held)]
    shared = BitMap()
    for one, other in combinations(maps, 2):
        shared |= one & other
    late = shared & joined.late()
    shared -= late
    every = [joined.repeats(term.tid, blocks) for term, blocks in zip(terms, held)]
    repeating = [shared & repeats for repeats in every]
    odd = BitMap.union(*repeating)
    plain = shared - odd
    if plain:  # their score is their bound: the terms they hold at their level
        _by_level(joined, plain, list(_held_parts(plain, 0, 0.0, maps, tables)), scored,
                  lambda taken, level: _raise_each(scored, joined, taken))
    if odd:
        _score_repeats(view, joined, terms, maps, repeating, every, tables, scored, odd)
    if late:  # last: the limit-th score is then at its highest, and prunes most of these reads of postings
        _score_late(view, plan, limit, tables, scored, sorted({joined.session(key) for key in late}))
    kth = scored.kth
    return dict(scored), kth if kth >= 0 else None


def _score_late(view: IndexReader, plan: Plan, limit: int, tables: list[list[float]], scored: _TopScores,
                sids: list[int]) -> None:
    """Score from their postings the sessions where two terms meet past the maps' range (a key stands for several
    messages there): best upper bound first (each term at its best level in the session), while that bound can
    reach the ``limit``-th score and within the work budget, as the other paths do, so that a store of long
    sessions does not make every one of them a read of postings."""
    columns = [term.summary.levels_of(sids) for term in plan.terms]
    bounds = sorted(((sum(table[level] for table, level in zip(tables, levels) if level), sid)
                     for sid, levels in zip(sids, zip(*columns))), reverse=True)
    budget = _exact_sessions(plan, limit)
    for evaluated, (bound, sid) in enumerate(bounds):
        if evaluated >= budget or not may_reach(bound, scored.kth):
            break  # the others score less than the limit-th (or the budget is spent: the best found stand)
        score = max(_evaluate(view, plan, sid, None, {}).values())
        if score > scored.get(sid, 0.0):
            scored[sid] = score

#: An empty bitmap: what a term absent from a block has there.
_NONE = BitMap()

class _Joined:
    """The maps and repeats of the blocks two of a query's terms share joined into one key space
    (``formats.maps.JOINED_SHIFT``: a block's keys shifted past the earlier blocks', in C), so that a query's steps
    are not taken a block at a time, and its messages by level."""

    __slots__ = ("view", "blocks")

    def __init__(self, view: IndexReader, blocks: Sequence[int]) -> None:
        self.view, self.blocks = view, blocks

    def maps(self, tid: int, held: set[int]) -> BitMap:
        """Term ``tid``'s message maps in the blocks it is in."""
        view = self.view
        return BitMap.union(_NONE, *(found.shift(number << JOINED_SHIFT) for number in self.blocks if number in held
                                     if (found := view.term_map(tid, number))))

    def repeats(self, tid: int, held: set[int]) -> BitMap:
        """Term ``tid``'s repeated messages in the blocks it is in."""
        view = self.view
        return BitMap.union(_NONE, *(stored[0].shift(number << JOINED_SHIFT) for number in self.blocks
                                     if number in held if (stored := view.term_repeats(tid, number))))

    def by_level(self, keys: BitMap) -> Iterator[tuple[int, BitMap]]:
        """The messages of ``keys`` by their level, best first: ``(level, messages)`` for each level some are at
        (a message at none, past the maps' range, is left out). Their levels are looked up at once
        (``IndexReader.message_levels``) and sorted in C; each level's messages are built as the walk asks."""
        if not keys:
            return
        order = _keys_array(keys)
        levels = self.view.message_levels(keys)
        places = np.argsort(levels, kind="stable")  # a radix sort of bytes: a level's keys stay ascending
        ordered = levels[places]
        ends = np.flatnonzero(ordered[1:] != ordered[:-1]) + 1
        for begin, end in zip([*ends.tolist()[::-1], 0], [len(ordered), *ends.tolist()[::-1]]):
            level = int(ordered[begin])
            if not level:
                return
            yield level, BitMap(u32_array(order[places[begin:end]].tobytes()), optimize=False)

    def late(self) -> BitMap:
        """Every key past the maps' range (``LAST_TAG``: it stands for several messages)."""
        found = BitMap()
        for number in self.blocks:
            found.add_range(number << JOINED_SHIFT | LAST_KEYS, (number + 1) << JOINED_SHIFT)
        return found

    @staticmethod
    def session(key: int) -> int:
        return key >> JOINED_SHIFT << formats.BLOCK_BITS | key & _OFFSET_OF_KEY  # read here: tests make blocks small


class _TopScores(dict[int, float]):
    """Session → best score found, keeping the ``limit`` best in a heap as they rise (``kth``: the ``limit``-th,
    -1 while fewer are known); it starts from ``scores``."""

    def __init__(self, limit: int, scores: dict[int, float]) -> None:
        super().__init__(scores)
        self.limit = limit
        self._heap = heapq.nlargest(limit, zip(scores.values(), scores.keys()))
        heapq.heapify(self._heap)
        self._best = {sid: score for score, sid in self._heap}  # the sessions in the heap

    def __setitem__(self, sid: int, score: float) -> None:
        super().__setitem__(sid, score)
        best, heap = self._best, self._heap
        if sid in best:  # a session of the heap rose: the heap is built again (it is small)
            best[sid] = score
            self._heap = [(value, key) for key, value in best.items()]
            heapq.heapify(self._heap)
        elif len(heap) < self.limit:
            best[sid] = score
            heapq.heappush(heap, (score, sid))
        elif score > heap[0][0]:
            del best[heapq.heapreplace(heap, (score, sid))[1]]
            best[sid] = score

    @property
    def kth(self) -> float:
        return self._heap[0][0] if len(self._heap) >= self.limit else -1.0


def _raise_each(scored: _TopScores, joined: _Joined, taken: list[tuple[BitMap, float]]) -> None:
    """Raise the sessions of each part's messages to its score: ``(messages, score)`` of each part."""
    get, session = scored.get, joined.session
    for keys, score in taken:
        for key in keys:
            sid = session(key)
            if score > get(sid, 0.0):
                scored[sid] = score


def _score_repeats(view: IndexReader, joined: _Joined, terms: Sequence[PlanTerm], maps: list[BitMap],
                   repeating: list[BitMap], every: list[BitMap], tables: list[list[float]], scored: _TopScores,
                   odd: BitMap) -> None:
    """Score the messages of several terms where one repeats (``odd``; ``repeating``: each term's; ``every``: each
    term's repeated messages in the joined blocks).

    They are cut into parts by which terms repeat in them and which other
    terms they hold, and found by their level (that of the terms they hold
    once), best first, one level for every part at once, while a part's bound
    can reach the ``limit``-th score: the terms that repeat at the best level
    they repeat at among these messages (``_Repeated.top``, found from the
    term's repeated messages grouped by level), the other terms it holds at the
    messages' level. The messages of a part whose bound can reach are scored
    one by one (or over arrays).
    """
    repeated = [_Repeated(view, term.tid, keys, repeats) for term, keys, repeats in zip(terms, repeating, every)]
    parts: list[_Part] = []
    for part, chosen in _cells(odd, repeating, 1):
        top = sum(tables[place][repeated[place].top] for place in range(len(terms)) if chosen >> place & 1)
        parts.extend(_held_parts(part, chosen, top, maps, tables))
    # Scored exactly, whatever the part's bound: a level's messages of every part that reaches are scored at once.
    _by_level(joined, odd, parts, scored,
              lambda taken, level: _score_each(scored, joined, BitMap.union(*(keys for keys, _ in taken)), level,
                                               repeated, maps, tables))


#: A part of a query's messages: the messages, what bounds its repeating terms (their best levels' weights), and the
#: tables of the other terms its messages hold, which weigh at the messages' level.
_Part = tuple[BitMap, float, list[list[float]]]


def _by_level(joined: _Joined, keys: BitMap, parts: list[_Part], scored: _TopScores,
              take: Callable[[list[tuple[BitMap, float]], int], None]) -> None:
    """Find the messages of ``parts`` (which cut ``keys``) by their level, best first, one level for every part at
    once, and ``take`` them a level at a time: ``([(messages, bound) of each part whose bound at the level can reach
    the limit-th score and that has messages there], level)``. A bound falls with the level and the ``limit``-th
    score only rises, so a part that no longer reaches is left out at the later levels, and the walk ends when none
    reaches."""
    reaching = parts
    for level, found in joined.by_level(keys):
        bounds = [top + sum(table[level] for table in others) for _, top, others in reaching]
        kth = scored.kth
        if not all(may_reach(bound, kth) for bound in bounds):
            reaching = [part for part, bound in zip(reaching, bounds) if may_reach(bound, kth)]
            if not reaching:
                break  # the bounds fall with the level: no part's message can reach the limit-th score any more
            bounds = [bound for bound in bounds if may_reach(bound, kth)]
        taken = [(held, bound) for (part, _, _), bound in zip(reaching, bounds) if (held := found & part)]
        if taken:
            take(taken, level)


def _held_parts(part: BitMap, chosen: int, top: float, maps: list[BitMap],
                tables: list[list[float]]) -> Iterator[_Part]:
    """``part`` (messages where the terms of the bits of ``chosen`` repeat, ``top`` their bound) cut again by which
    of the other terms they hold, each cut with the tables of those. Most messages of three or four terms hold two
    of them: a bound counting every term would reach far below the levels where they can."""
    others = [place for place in range(len(maps)) if not chosen >> place & 1]
    if len(maps) == 2:  # every message here holds both terms: no cut to take
        if part:
            yield part, top, [tables[place] for place in others]
        return
    # Every message here holds two terms or more, counting those of ``chosen``.
    for cut, held in _cells(part, [maps[place] for place in others], 2 - chosen.bit_count()):
        yield cut, top, [tables[place] for bit, place in enumerate(others) if held >> bit & 1]


def _cells(part: BitMap, sets: Sequence[BitMap], least: int) -> list[tuple[BitMap, int]]:
    """The messages of ``part`` cut by which of ``sets`` hold them: ``(messages, the bits of the sets that hold
    them)`` of each cut that is not empty and whose messages are in ``least`` of the sets or more, by their bits
    ascending. Each set splits the cuts the one before left (smaller at every step, not ``part``), and a cut that can
    no longer come to ``least`` sets is dropped unsplit."""
    cuts = [(part, 0)] if part and len(sets) >= least else []
    for bit, keys in enumerate(sets):
        left = len(sets) - bit - 1  # the sets after this one
        split = []
        for cut, held in cuts:
            count = held.bit_count()
            if count + 1 + left < least:
                continue
            inside = cut & keys
            if count + left >= least and (outside := cut - inside):
                split.append((outside, held))
            if inside:
                split.append((inside, held | 1 << bit))
        cuts = split
    return sorted(cuts, key=itemgetter(1))


def _score_each(scored: _TopScores, joined: _Joined, keys: BitMap, level: int, repeated: list[_Repeated],
                maps: list[BitMap], tables: list[list[float]]) -> None:
    """Score ``keys``, messages at ``level`` where a term repeats: one by one, or many over whole arrays."""
    if len(keys) >= SCORED_IN_ARRAYS_FROM:
        _score_in_arrays(scored, keys, level, repeated, maps, tables)
        return
    get, session = scored.get, joined.session
    for key in keys:
        total = 0.0
        for held, term, table in zip(maps, repeated, tables):  # in plan order, as _evaluate adds them
            if key in held:
                total += table[term.level_of(key) if key in term.keys else level]
        sid = session(key)
        if total > get(sid, 0.0):
            scored[sid] = total


def _score_in_arrays(scored: _TopScores, keys: BitMap, level: int, repeated: list[_Repeated], maps: list[BitMap],
                     tables: list[list[float]]) -> None:
    """``_score_each`` in C calls over whole arrays: each term's weight in every message of ``keys`` (at its own
    level where it repeats, else at ``level``; none where absent), added in plan order as ``_evaluate`` adds them
    (adding no weight adds 0.0, which changes no sum), and only the messages that reach the ``limit``-th score
    raise their sessions: the others could not make a session one of the best, nor move that score."""
    order = _keys_array(keys)
    totals = np.zeros(len(order))
    for held, term, table in zip(maps, repeated, tables):
        holding = keys & held
        if not holding:
            continue
        weights = np.zeros(len(order))
        weights[np.searchsorted(order, _keys_array(holding))] = table[level]
        own = holding & term.keys
        if own:
            weights[np.searchsorted(order, _keys_array(own))] = np.asarray(table)[term.levels_of(own)]
        totals += weights
    reaching = np.flatnonzero(totals >= scored.kth)
    get, session = scored.get, _Joined.session
    for key, total in zip(order[reaching].tolist(), totals[reaching].tolist()):
        sid = session(key)
        if total > get(sid, 0.0):
            scored[sid] = total


def _keys_array(keys: BitMap) -> npt.NDArray[np.uint32]:
    """A bitmap's keys, ascending, as an array (copied in C)."""
    return np.frombuffer(keys.to_array(), dtype=np.uint32)


class _Repeated:
    """A term's repeated messages among those a query scores (``keys``; ``every``: all of them in the joined
    blocks): the best level it repeats at among them (``top``), found from its repeated messages grouped by level
    (``IndexReader.repeated_at``), best first: a level whose messages are not grouped (too many) may hold some of
    ``keys``, so the search stops there."""

    __slots__ = ("view", "tid", "keys", "every", "top", "_blocks", "_arrays", "_visited", "_joined")

    def __init__(self, view: IndexReader, tid: int, keys: BitMap, every: BitMap) -> None:
        self.view, self.tid, self.keys, self.every = view, tid, keys, every
        levels = view.repeated_levels(tid)[::-1] if keys else b""
        self.top = next((level for level in levels
                         if (group := view.repeated_at(tid, level)) is None or group.intersect(keys)), 0)
        # The blocks' stored repeats this query read, and as arrays (for ``levels_of``).
        self._blocks: dict[int, tuple[BitMap, bytes]] = {}
        self._arrays: dict[int, tuple[npt.NDArray[np.uint32], npt.NDArray[np.uint8]]] = {}
        # How many blocks ``levels_of`` looked levels up in, and once they are many, every repeated message and its
        # level as two arrays: a walk through most levels of very common words looks up most of them, block by block.
        self._visited = 0
        self._joined: tuple[npt.NDArray[np.uint32], npt.NDArray[np.uint8]] | None = None

    def _stored(self, block: int) -> tuple[BitMap, bytes]:
        found = self._blocks.get(block)
        if found is None:
            found = self.view.term_repeats(self.tid, block)
            if found is None:
                raise StoreCorrupted(f"the search index is damaged: term {self.tid} lacks a block of its repeats")
            self._blocks[block] = found
        return found

    def level_of(self, key: int) -> int:
        """The term's level in the message ``key``, one where it repeats."""
        stored = self._stored(key >> JOINED_SHIFT)
        return stored[1][stored[0].rank(key & _KEY_IN_BLOCK) - 1]

    def levels_of(self, keys: BitMap) -> npt.NDArray[np.uint8]:
        """The term's levels in the messages ``keys`` (where it repeats), in their order: once the query's lookups
        took steps in many blocks (``_COPIES_PER_BLOCK``), by one binary search in C of every repeated message
        (``_every_level``); before, in a block where they are many, by a binary search of its stored repeats as an
        array, and where they are few, each by its rank."""
        values = _keys_array(keys)
        if self._joined is None:
            blocks = values >> JOINED_SHIFT
            edges = [0, *(np.flatnonzero(blocks[1:] != blocks[:-1]) + 1).tolist(), len(values)]
            self._visited += len(edges) - 1
            if self._visited * _COPIES_PER_BLOCK < len(self.every):  # the blocks' steps so far do not pay for a copy
                return self._levels_by_block(values, blocks, edges)
            self._joined = self._every_level()
        every, levels = self._joined
        return levels[np.searchsorted(every, values)]

    def _levels_by_block(self, values: npt.NDArray[np.uint32], blocks: npt.NDArray[np.integer[Any]], edges: list[int]
                         ) -> npt.NDArray[np.uint8]:
        """``levels_of`` the keys ``values`` (ascending; ``blocks``: each one's block, ``edges``: where each block's
        keys start, then their end), a block at a time."""
        found = np.empty(len(values), dtype=np.uint8)
        for begin, end in pairwise(edges):
            number = int(blocks[begin])
            arrays = self._arrays.get(number)
            if arrays is None:
                stored = self._stored(number)
                if (end - begin) * _RANKS_PER_ARRAY < len(stored[0]):
                    found[begin:end] = [self.level_of(key) for key in values[begin:end].tolist()]
                    continue
                arrays = self._arrays[number] = _keys_array(stored[0]), np.frombuffer(stored[1], dtype=np.uint8)
            found[begin:end] = arrays[1][np.searchsorted(arrays[0], values[begin:end] & _KEY_IN_BLOCK)]
        return found

    def _every_level(self) -> tuple[npt.NDArray[np.uint32], npt.NDArray[np.uint8]]:
        """Every repeated message of the term in the joined blocks (ascending) and its level: the blocks' stored
        levels (each as long as its keys, as ``repeats_of_value`` checks) in the order of their keys, joined."""
        every = _keys_array(self.every)
        numbers = every >> JOINED_SHIFT
        blocks = numbers[np.concatenate(([True], numbers[1:] != numbers[:-1]))].tolist() if len(numbers) else []
        return every, np.frombuffer(b"".join(self._stored(number)[1] for number in blocks), dtype=np.uint8)


#: A block's stored repeats are copied to an array for ``_Repeated.levels_of`` when a query looks up at least one in
#: this many of them: copying a key costs about this much less than a rank does.
_RANKS_PER_ARRAY = 1024


#: Every repeated message of a term and its level are copied to arrays for ``_Repeated.levels_of`` once a query
#: looked up levels in one of its blocks for every this many of them: copying one costs about this much less than a
#: block's steps of a lookup.
_COPIES_PER_BLOCK = 4096

#: A joined key's message key in its block.
_KEY_IN_BLOCK = (1 << JOINED_SHIFT) - 1


def _intersected(view: IndexReader, plan: Plan, limit: int) -> tuple[dict[int, float], float | None]:
    """Exact top scores (no phrases) from each term's best sessions and the few sessions whose terms may share a
    message.

    A session scores at least its best single term, and exactly that unless
    two of its terms sit in one message. So each term's best sessions by that
    term alone are scored first (every session at or above the level that
    brings ``limit`` of them: ties at the cut are kept), then only the
    sessions holding several terms whose tags do not prove them in different
    messages (same tag, or a term in several messages) are resolved: from the
    tags when each term is in one message, else later, best upper bound
    first, while that bound can still reach the ``limit``-th score. A session
    left out scores its best single term, below ``limit`` sessions that each
    score at least as much at the cut of that term.

    Returns the scores (exact for every session that can be among the
    ``limit`` best, lower bounds below them) and the ``limit``-th best score.
    """
    weights = [_weights(term.weight) for term in plan.terms]
    tables: list[list[float]] = [array.tolist() for array in weights]
    summaries = [term.summary for term in plan.terms]
    scored = _best_singles(summaries, weights, limit)
    opened = _sessions_sharing(view, plan)
    columns = [summary.entries_of(opened) for summary in summaries]
    return _resolve(view, plan, limit, tables, scored, dict(zip(opened, zip(*columns))),
                    _scores_from_tags(columns, tables, weights))

def _sessions_sharing(view: IndexReader, plan: Plan) -> list[int]:
    """The sessions, ascending, holding several of the terms where two of them may sit in one message: found over
    all the terms' blocks at once, in C, without a step for each session the terms share.

    As ``_sessions_sharing_by_block`` finds them, with every block's keys joined (``JOINED_SHIFT``): a term stored
    whole has them joined in its head; a term stored in blocks joins those of its blocks where another term is.
    The keys of sessions whose tag names no one message are left out (they are opened where another term is), so
    that every key fits its block's share of the joined bits.
    """
    summaries = [term.summary for term in plan.terms]
    if max(summary.block_numbers()[-1] for summary in summaries) >= JOINED_BLOCKS:
        return _sessions_sharing_by_block(view, plan)
    held = [set(summary.block_numbers()) for summary in summaries]
    keys: list[BitMap] = []
    spread: list[BitMap] = []
    for own, (term, summary) in enumerate(zip(plan.terms, summaries)):
        if isinstance(summary, Whole):
            keys.append(summary.query_keys())
            spread.append(summary.unmapped_spread())
            continue
        others = set[int]().union(*(numbers for other, numbers in enumerate(held) if other != own))
        joined, opened = BitMap(), BitMap()
        for number, block in summary.blocks:
            if number in others:
                stored = view.term_map(term.tid, number)
                if stored is None:
                    stored = single_keys(block)
                    opened |= block_spread(block).shift(number << formats.BLOCK_BITS)
                joined |= stored.shift(number << JOINED_SHIFT)
        keys.append(joined)
        spread.append(opened)
    found = BitMap.union(BitMap(), *(one & another for one, another in combinations(keys, 2)))
    # The few sessions opened are looked up in the other terms' sorted sessions: a bitmap of every session of
    # those terms cost more to build than the lookups.
    opened_where_present = [_held_by_another(list(opened), [summary for other, summary in enumerate(summaries)
                                                            if other != own])
                            for own, opened in enumerate(spread) if opened]
    if len(found) + sum(map(len, opened_where_present)) < SHARED_IN_ARRAYS_FROM:  # a step each beats numpy's calls
        sessions = {key >> JOINED_SHIFT << formats.BLOCK_BITS | key & _OFFSET_OF_KEY for key in found}
        sessions.update(*opened_where_present)
        return sorted(sessions)
    shared = np.frombuffer(found.to_array(), dtype=np.uint32)
    sids = np.concatenate((shared >> JOINED_SHIFT << formats.BLOCK_BITS | shared & _OFFSET_OF_KEY,
                           *(np.array(more, dtype=np.uint32) for more in opened_where_present)))
    result: list[int] = distinct(sids).tolist()
    return result

def _held_by_another(sids: list[int], others: Sequence[Summary]) -> list[int]:
    """Those of ``sids`` (ascending) that one of ``others`` holds, in their order."""
    entries = [summary.entries_of(sids) for summary in others]
    return [sid for sid, *codes in zip(sids, *entries) if any(codes)]

#: ``_sessions_sharing`` turns this many shared keys and sessions opened or more into sessions over whole arrays
#: (numpy), fewer one by one: numpy's few calls cost more than the steps of fewer.
SHARED_IN_ARRAYS_FROM = 128


def _sessions_sharing_by_block(view: IndexReader, plan: Plan) -> list[int]:
    """The sessions, ascending, holding several of the terms where two of them may sit in one message: found a
    block at a time, in C, without a step for each session the terms share.

    Where both terms have a message map in a block (``formats.maps.mapped``), ANDing the maps gives exactly the
    sessions where one message holds both. A term without one there has its sessions keyed by their tags
    (``placed_keys``): a tag naming the one message holding the term is that message's key in a map, so equal
    keys are the sessions where the tag's message may hold the other term; and its sessions spread over
    several messages (``MULTI``, or past the tags' range) are left open wherever another term is present.
    """
    holders: dict[int, list[tuple[int, Block]]] = {}  # block → (term id, its summary there)
    for term in plan.terms:
        for number, block in term.summary.blocks:
            holders.setdefault(number, []).append((term.tid, block))
    found: list[int] = []
    for number in sorted(holders):
        held = holders[number]
        if len(held) < 2:
            continue
        keys: list[BitMap] = []
        spread: list[BitMap | None] = []
        for tid, block in held:
            stored = view.term_map(tid, number)
            if stored is None:
                keys.append(placed_keys(block))
                spread.append(block_spread(block))
            else:
                keys.append(stored)
                spread.append(None)
        # A few keys a block: their sessions in a set, not a bitmap (building one costs more than the keys' steps).
        offsets = {key & _OFFSET_OF_KEY for one, another in combinations(keys, 2) for key in one & another}
        for own, sessions in enumerate(spread):
            if sessions:
                for other, (_, block) in enumerate(held):
                    if other != own:
                        offsets.update(sessions & block_present(block))
        if offsets:
            base = number << formats.BLOCK_BITS  # read here: tests make blocks small
            found += [base | offset for offset in sorted(offsets)]
    return found

#: The session's offset in its block of a message-map key.
_OFFSET_OF_KEY = (1 << MAP_SHIFT) - 1

def _best_singles(summaries: Sequence[Summary], weights: Sequence[npt.NDArray[np.float64]], limit: int
                  ) -> dict[int, float]:
    """Each session among the best of one of the terms (``_best_of_term``; ``weights``: each term's) with the
    highest of their single-term scores: the terms' best joined over arrays and put in a dict lowest score first, so
    that a session's last, kept score is its highest (the dict's order is never read)."""
    best = [_best_of_term(summary, array, limit) for summary, array in zip(summaries, weights)]
    sids = np.concatenate([found for found, _ in best])
    scores = np.concatenate([found for _, found in best])
    order = scores.argsort(kind="stable")
    return dict(zip(sids[order].tolist(), scores[order].tolist()))

def _best_of_term(summary: Summary, weights: npt.NDArray[np.float64], limit: int
                  ) -> tuple[npt.NDArray[np.uint32], npt.NDArray[np.float64]]:
    """A term's best sessions and their single-term scores: every session at or above the greatest level that
    ``limit`` of them reach (so ties at the cut are kept). That level is the ``limit``-th greatest (``partition``),
    looked for among the sessions at or above a lower level guessed from a sample (``_guessed_cut``): a pass in C
    over every session's level, and the selection over the few it leaves; all of them when the guess leaves fewer
    than ``limit`` (too high: the cut is below it)."""
    levels = np.frombuffer(summary.best_levels(), dtype=np.uint8)
    # Array methods rather than numpy's functions of the same name: those are Python wrappers, a few calls each.
    chosen = (levels >= _guessed_cut(levels, limit)).nonzero()[0]
    if len(chosen) < limit:
        chosen = levels.nonzero()[0]
    found = levels[chosen]
    beyond = len(found) - limit
    if beyond > 0:
        selected = found.copy()
        selected.partition(beyond)
        reached = found >= selected[beyond]
        chosen, found = chosen[reached], found[reached]
    return summary.sid_array()[chosen], weights[found]

def _guessed_cut(levels: npt.NDArray[np.uint8], limit: int) -> int:
    """A level that about ``CUT_MARGIN`` times ``limit`` of ``levels`` reach: that of a sample of every
    ``CUT_SAMPLE_STEP``-th (a selection over few), never below 1 (a session at level 0 is never chosen); 1 when
    the sample is too small to tell."""
    sample = levels[::CUT_SAMPLE_STEP].copy()
    rank = len(sample) - CUT_MARGIN * limit // CUT_SAMPLE_STEP - 1
    if rank <= 0:
        return 1
    sample.partition(rank)
    return max(int(sample[rank]), 1)

#: ``_best_of_term`` guesses its cut from every this many sessions' levels, at this many times ``limit`` sessions
#: reaching it: too high a guess (fewer than ``limit`` reach it) costs a second pass, and a rare one at that margin.
CUT_SAMPLE_STEP = 16
CUT_MARGIN = 4

def _resolve(view: IndexReader, plan: Plan, limit: int, tables: list[list[float]], singles: dict[int, float],
             shared: dict[int, tuple[int, ...]], exacts: Iterable[float | None]
             ) -> tuple[dict[int, float], float | None]:
    """The scoring of ``_intersected``: ``singles`` scores sessions by one term (exactly, unless two of its terms
    share a message), ``shared`` gives the entries (in plan order; 0: absent) of the sessions where they may, and
    ``exacts`` their scores from the tags (``_score_from_tags``), in its order."""
    scored = singles
    if not shared:
        return scored, None
    # A shared session is mostly resolved from its tags. The others score at least their best single
    # term, at most the sum of them: those whose sum reaches the limit-th exact score are resolved,
    # highest sum first, until the sum of the next cannot reach it; the others keep their lower
    # bound, which is below every score returned.
    open_bounds: dict[int, tuple[float, float]] = {}
    for (sid, codes), exact in zip(shared.items(), exacts):
        if exact is None:
            singles_of = [table[code >> 8] for table, code in zip(tables, codes) if code]
            open_bounds[sid] = max(singles_of), sum(singles_of)
        else:
            scored[sid] = exact
    for sid in open_bounds:  # counted below once, by its lower bound or its exact score
        scored.pop(sid, None)
    best_scores = sorted(scored.values(), reverse=True)[:limit]  # nlargest's, in C: its heap loop is a step a value
    floor = best_scores[-1] if len(best_scores) >= limit else -1.0
    scored.update((sid, lower) for sid, (lower, _) in open_bounds.items())
    ahead = sorted(((upper, sid) for sid, (_, upper) in open_bounds.items() if may_reach(upper, floor)),
                   reverse=True)
    full = len(best_scores) >= limit
    budget = _exact_sessions(plan, limit)
    for evaluated, (upper, sid) in enumerate(ahead):
        if full and not may_reach(upper, best_scores[-1]):
            break  # the others keep their lower bound
        if evaluated >= budget:
            break  # the work budget is spent: the best found so far stand
        score = scored[sid] = _score_from_postings(view, plan, sid, shared[sid], scored[sid])
        if not full:
            bisect.insort(best_scores, score, key=neg)
            full = len(best_scores) >= limit
        elif score > best_scores[-1]:
            best_scores.pop()
            bisect.insort(best_scores, score, key=neg)
    return scored, best_scores[-1] if full else None

def _score_from_postings(view: IndexReader, plan: Plan, sid: int, codes: Sequence[int], lower: float) -> float:
    """The exact score of a session whose entries (``codes``) leave it open: when only one of its terms is in
    several messages, only the others' messages can add up (read alone; none when they are all in the message
    that term's tag names), else every posting is read."""
    several = [code for code in codes if code & MULTI]
    places = [code & LAST_TAG for code in codes if code and not code & MULTI]
    if len(several) > 1 or LAST_TAG in places:
        return max(_evaluate(view, plan, sid, None, {}).values())
    if places and several and all(place == several[0] & LAST_TAG for place in places):
        # A tag names the first message at the term's best level: there it is at that level, with every other
        # term, so that message scores what their entries give, and no other message can score more.
        return max(lower, _added(term.weight * LEVEL_WEIGHTS[code >> 8] for term, code in zip(plan.terms, codes)
                                 if code))
    return max(lower, *_evaluate_messages(view, plan, sid, places).values())

def _evaluate_messages(view: IndexReader, plan: Plan, sid: int, places: Iterable[int]) -> dict[int, float]:
    """Exact scores of some of a session's messages (by index), read from their postings alone."""
    scores: dict[int, float] = {}
    chunks: dict[int, bytes | None] = {}
    for index in places:
        number, place = divmod(index, CHUNK_MESSAGES)
        if number not in chunks:
            chunks[number] = view.chunk(sid, number)
        raw = chunks[number]
        if raw is None:
            raise StoreCorrupted(f"the search index is damaged: session {sid} lacks message {index}")
        tids, levels = chunk_message(raw, place)
        weights = []
        for term in plan.terms:
            at = bisect.bisect_left(tids, term.tid)
            if at < len(tids) and tids[at] == term.tid:
                weights.append(term.weight * LEVEL_WEIGHTS[levels[at]])
        scores[index] = _added(weights)
    return scores

def _added(weights: Iterable[float]) -> float:
    """A message's score from its terms' weights, added in plan order (as every exact score is, so that equal
    scores are equal to the last bit)."""
    total = 0.0
    for weight in weights:
        total = total + weight if total else weight
    return total

def _exact_sessions(plan: Plan, limit: int) -> int:
    """How many sessions a query may score exactly (``EXACT_WORK``), never fewer than it returns."""
    return max(limit, EXACT_WORK // len(plan.terms))


class _Groups:
    """A term's sessions, one level group at a time, best first."""

    __slots__ = ("gain", "group", "rest", "term")

    def __init__(self, term: PlanTerm, first: tuple[int, bytes], rest: Iterator[tuple[int, bytes]]) -> None:
        self.term, self.rest = term, rest
        self.group = first
        #: What the current group adds to the score of a session in it.
        self.gain = term.weight * LEVEL_WEIGHTS[first[0]]

    def advance(self) -> bool:
        """Move to the next group; ``False`` when there is none."""
        following = next(self.rest, None)
        if following is None:
            return False
        self.group, self.gain = following, self.term.weight * LEVEL_WEIGHTS[following[0]]
        return True


def _threshold(view: IndexReader, plan: Plan, limit: int, texts: Texts | None,
               message_level: bool) -> dict[Any, float]:
    """The best exact scores, by a threshold algorithm over the terms' level groups.

    Each term lists its sessions by best level, best first. Groups are taken
    from the list whose next group could add the most; each new session gets
    an upper bound (the sum over the query terms of its best levels). A
    session with one query term (and no phrase) is scored from its level
    alone; others wait, best bound first, and are scored exactly from their
    postings only when their bound leads. It stops when neither the waiting
    sessions nor the unseen ones (bounded by the sum of the lists' next
    levels) can reach the ``limit``-th best score: sessions that tie with it
    are all scored.

    Returns session → score, or with ``message_level`` (session, message index) → score.
    """
    lists = []
    for term in plan.terms:
        groups = term.summary.groups()
        first = next(groups, None)
        if first is not None:
            lists.append(_Groups(term, first, groups))
    by_level_alone = not plan.phrases and not message_level
    seen: set[int] = set()
    scored: dict[Any, float] = {}
    best: list[float] = []  # min-heap of the ``limit`` best scores
    waiting: list[tuple[float, int]] = []  # max-heap of (-bound, session)
    entries: dict[int, tuple[int, ...]] = {}  # the waiting sessions' entries, when they are ranked by level alone
    cache: dict[int, list[str]] = {}

    def record(key: Any, score: float) -> None:
        scored[key] = score
        if len(best) < limit:
            heapq.heappush(best, score)
        elif score > best[0]:
            heapq.heapreplace(best, score)

    tables = [_table(term.weight) for term in plan.terms]

    evaluated, budget = 0, _exact_sessions(plan, limit)
    while lists or waiting:
        threshold = best[0] if len(best) >= limit else -1.0
        unseen = sum(entry.gain for entry in lists)
        leading = -waiting[0][0] if waiting else -1.0
        if not may_reach(unseen, threshold) and not may_reach(leading, threshold):
            break
        if waiting and leading >= unseen:
            if evaluated >= budget:
                break  # the work budget is spent: the best found so far stand
            evaluated += 1
            _, sid = heapq.heappop(waiting)
            if by_level_alone:  # its entries say which of its messages can add up: only those are read
                codes = entries.pop(sid)
                lower = max(table[code >> 8] for table, code in zip(tables, codes) if code)
                record(sid, _score_from_postings(view, plan, sid, codes, lower))
                continue
            messages = _evaluate(view, plan, sid, texts, cache)
            if message_level:
                for index, score in messages.items():
                    record((sid, index), score)
            elif messages:
                record(sid, max(messages.values()))
            continue
        entry = max(lists, key=attrgetter("gain"))
        term, (level, members) = entry.term, entry.group
        if not entry.advance():
            lists.remove(entry)
        fresh = [sid for sid in u32s(members) if sid not in seen]
        if not fresh:
            continue
        seen.update(fresh)
        others = [other for other in plan.terms if other is not term]
        contribution = term.weight * LEVEL_WEIGHTS[level]
        if not others:
            for sid in fresh:
                if by_level_alone:
                    record(sid, contribution)
                else:
                    heapq.heappush(waiting, (-contribution, sid))
            continue
        if by_level_alone:  # the entries' tags often tell the exact score without postings
            columns = [other.summary.entries_of(fresh) for other in plan.terms]
            for sid, codes in zip(fresh, zip(*columns)):
                bound = sum(table[code >> 8] for table, code in zip(tables, codes) if code)
                if not may_reach(bound, threshold):
                    continue  # below the limit-th score found: it could never be returned, nor taken from waiting
                exact = _score_from_tags(codes, tables)
                if exact is not None:
                    record(sid, exact)
                    continue
                heapq.heappush(waiting, (-bound, sid))
                entries[sid] = codes  # which of its messages to read
            continue
        for sid, row in zip(fresh, zip(*(other.summary.levels_of(fresh) for other in others))):
            bound = contribution + sum(other.weight * LEVEL_WEIGHTS[lv] for other, lv in zip(others, row) if lv)
            heapq.heappush(waiting, (-bound, sid))
    return scored


def _scores_from_tags(columns: Sequence[Sequence[int]], tables: Sequence[Sequence[float]],
                      weights: Sequence[npt.NDArray[np.float64]]) -> list[float | None]:
    """``_score_from_tags`` of many sessions, from each term's entries of them (``columns``, in plan order; its
    ``tables`` and, as arrays, ``weights``): a few one by one, more over whole arrays (numpy), where the terms each
    term's tag names are added in plan order too (an absent term adds 0.0 at level 0, which changes no sum)."""
    if len(columns[0]) < TAGS_IN_ARRAYS_FROM:
        return [_score_from_tags(codes, tables) for codes in zip(*columns)]
    codes = np.array(columns, dtype=np.int64)  # a row a term
    tags, present = codes & 0xFF, codes != 0
    gains = np.array(weights)[np.arange(len(columns))[:, None], codes >> 8]
    at = np.where(tags[:, None, :] == tags[None, :, :], gains[None, :, :], 0.0)  # [own, other]: other in own's
    sums = at[:, 0]
    for other in range(1, len(columns)):
        sums = sums + at[:, other]
    # Reductions by the ufuncs themselves: the arrays' methods (max, sum, any) are Python wrappers.
    scores = np.maximum.reduce(np.where(present, sums, 0.0), axis=0)
    # Open: several terms, one of them in several messages or past the tags' range (a tag at LAST_TAG or above).
    opened = (np.add.reduce(present, axis=0) > 1) & np.logical_or.reduce(present & (tags >= LAST_TAG), axis=0)
    return [None if open_ else score for score, open_ in zip(scores.tolist(), opened.tolist())]

#: ``_scores_from_tags`` scores this many sessions or more over whole arrays: its numpy calls' fixed cost is about
#: that of this many sessions' steps (in instructions, a 3-word query: from 16 and from 32 cost the same, from 8 more).
TAGS_IN_ARRAYS_FROM = 24


def _score_from_tags(codes: Sequence[int], tables: Sequence[Sequence[float]]) -> float | None:
    """A session's exact score from its entries for the query's terms (in plan order; 0: absent), when one term
    is present or each is in one message whose index its tag holds: terms of one message add up, the best
    message counts. ``None`` when a term is in several messages, or in one past the tags' range."""
    sums: dict[int, float] = {}  # tag → the weights of the terms it names, added in plan order as _evaluate adds them
    present = 0
    for code, table in zip(codes, tables):
        if code:
            present += 1
            tag, weight = code & 0xFF, table[code >> 8]
            sums[tag] = sums[tag] + weight if tag in sums else weight
    # A tag of MULTI, or LAST_TAG, is at LAST_TAG or above: it names no one message (one term alone: its best one).
    if present > 1 and max(sums) >= LAST_TAG:
        return None
    return max(sums.values())
