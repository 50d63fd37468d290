"""The message path's parts cut by which query terms their messages hold (``queries._held_parts``) and taken level by
level while their bound can reach the limit-th score (``queries._by_level``): the cuts against a plain model of
them, the walk against scoring every message, and whole queries of two to four words, whose messages hold
different subsets of the words and repeat them at different levels, against a plain BM25 as sessions are edited
between catch-ups."""

from __future__ import annotations

import tempfile
from collections.abc import Iterator
from pathlib import Path

from hypothesis import example, given, settings
from hypothesis import strategies as st
from pyroaring import BitMap

from eventstore import SessionStore
from projections.search import queries as search_queries
from projections.search.scoring import LEVEL_WEIGHTS

from conftest import FakeClock
from test_search import ReferenceSearch, run_script_step, search
from test_search_by_messages import message_path

#: Messages over a small key space: each key's set of held terms (by place) and its level.
KEYS = 48
holdings = st.lists(st.sets(st.integers(0, 3)), min_size=KEYS, max_size=KEYS)
key_levels = st.lists(st.integers(1, len(LEVEL_WEIGHTS) - 1), min_size=KEYS, max_size=KEYS)
weights = st.lists(st.sampled_from([0.25, 0.5, 1.0, 1.5, 2.0]), min_size=4, max_size=4)


def term_maps(held: list[set[int]], terms: int) -> list[BitMap]:
    return [BitMap(key for key, places in enumerate(held) if place in places) for place in range(terms)]


class _Levels:
    """What ``_by_level`` reads of the joined blocks: the messages by level, best first."""

    def __init__(self, levels: list[int]) -> None:
        self.by_key = levels

    def by_level(self, keys: BitMap) -> Iterator[tuple[int, BitMap]]:
        for level in sorted({self.by_key[key] for key in keys}, reverse=True):
            yield level, BitMap(key for key in keys if self.by_key[key] == level)


class TestHeldParts:
    @given(holdings, st.integers(2, 4), st.integers(0, 15), st.floats(0, 4))
    @example([set()] * KEYS, 2, 1, 0.0)  # two terms, no message of the chosen one: no cut, not an empty one
    def test_the_cuts_are_the_messages_by_the_other_terms_they_hold(self, held: list[set[int]], terms: int,
                                                                    chosen: int, top: float) -> None:
        """The cuts of a part are disjoint, each of the messages holding exactly the other terms its tables are of,
        and together every message of the part holding two terms or more (counting those of ``chosen``)."""
        chosen &= (1 << terms) - 1
        held = [places & set(range(terms)) for places in held]
        maps = term_maps(held, terms)
        tables = [[float(place * 100 + level) for level in range(3)] for place in range(terms)]  # place: [0] // 100
        part = BitMap(key for key, places in enumerate(held)
                      if all(place in places for place in range(terms) if chosen >> place & 1))
        cuts = list(search_queries._held_parts(part, chosen, top, maps, tables))
        found = BitMap()
        for keys, bound, others in cuts:
            assert keys and bound == top and not keys & found
            found |= keys
            places = {int(table[0]) // 100 for table in others}
            assert not places & {place for place in range(terms) if chosen >> place & 1}
            for key in keys:
                if terms > 2:
                    assert {place for place in held[key] if not chosen >> place & 1} == places, key
                else:  # two terms: every message here holds both, and the part is not cut
                    assert places == {place for place in range(terms) if not chosen >> place & 1}
        expected = part if terms == 2 else BitMap(
            key for key in part if len(held[key] | {place for place in range(terms) if chosen >> place & 1}) >= 2)
        assert found == expected


class TestCells:
    @given(holdings, st.integers(0, 4), st.integers(-1, 5), st.sets(st.integers(0, KEYS - 1)))
    @example([{0, 1}] * KEYS, 2, 2, set(range(KEYS)))  # every message in every set: one cut, split by none
    @example([set()] * KEYS, 0, 1, {0})  # no sets: no cut is in one of them
    def test_the_cells_are_the_messages_grouped_by_the_sets_holding_them(self, held: list[set[int]], sets: int,
                                                                        least: int, part: set[int]) -> None:
        """Against grouping each message of the part by the sets holding it: the groups of ``least`` sets or
        more, by their bits ascending, none empty."""
        maps = term_maps(held, sets)
        expected: dict[int, set[int]] = {}
        for key in part:
            bits = sum(1 << place for place in range(sets) if place in held[key])
            if bits.bit_count() >= least:
                expected.setdefault(bits, set()).add(key)
        found = search_queries._cells(BitMap(part), maps, least)
        assert [(set(cut), bits) for cut, bits in found] == [(expected[bits], bits) for bits in sorted(expected)]


class TestByLevel:
    @settings(max_examples=100)
    @given(holdings, key_levels, st.integers(2, 4), weights, st.sampled_from([1, 2, 3, 10, 50]),
           st.integers(1, 16), st.lists(st.tuples(st.integers(1, 15), st.integers(1, len(LEVEL_WEIGHTS) - 1)),
                                        max_size=6))
    @example([{0, 1, 2}] * 4 + [{0, 1}] * 20 + [{1, 2}] * 24, [3] * 4 + [9] * 44, 3, [1.0, 1.0, 1.0, 1.0], 2, 16, [])
    # a part whose messages tie the limit-th score (a session of single terms scoring what they do) is still taken
    @example([{0, 1}] + [set()] * (KEYS - 1), [5] * KEYS, 3, [1.0, 1.0, 1.0, 1.0], 1, 1, [(0b011, 5)])
    def test_the_walk_scores_every_session_that_can_be_among_the_best(
            self, held: list[set[int]], levels: list[int], terms: int, weight: list[float], limit: int,
            per_session: int, singles: list[tuple[int, int]]) -> None:
        """Messages where no term repeats, each scoring its held terms at its level: the walk by level, which
        leaves out the parts that no longer reach, finds the exact score of every session scoring at least the
        limit-th best of scoring every message (sessions of single terms among them, scoring what some terms
        score at a level, so that scores tie), and no score above a session's; each part taken at a level is
        taken with its messages' exact score."""
        held = [places & set(range(terms)) for places in held]
        maps = term_maps(held, terms)
        tables = [[weight[place] * level_weight for level_weight in LEVEL_WEIGHTS] for place in range(terms)]
        plain = BitMap(key for key, places in enumerate(held) if len(places) >= 2)
        exact = {key: sum(tables[place][levels[key]] for place in sorted(held[key])) for key in plain}
        start = {sid + 1000: sum(tables[place][level] for place in range(terms) if chosen >> place & 1)
                 for sid, (chosen, level) in enumerate(singles)}  # sessions of single terms, not here
        scored = search_queries._TopScores(limit, dict(start))
        taken = BitMap()

        def take(parts_taken: list[tuple[BitMap, float]], level: int) -> None:
            for keys, score in parts_taken:
                assert keys and not keys & taken
                taken.update(keys)
                for key in keys:
                    assert levels[key] == level and exact[key] == score, key
                    sid = key // per_session
                    if score > scored.get(sid, 0.0):
                        scored[sid] = score

        if plain:
            parts = list(search_queries._held_parts(plain, 0, 0.0, maps, tables))
            search_queries._by_level(_Levels(levels), plain, parts, scored, take)  # type: ignore[arg-type]
        best = dict(start)
        for key, score in exact.items():
            best[key // per_session] = max(best.get(key // per_session, 0.0), score)
        ranked = sorted(best.values(), reverse=True)
        kth = ranked[limit - 1] if len(ranked) >= limit else 0.0
        for sid, score in best.items():
            assert scored.get(sid, 0.0) <= score
            if score >= kth:
                assert scored.get(sid) == score, sid


#: The words of the queries: each message holds any subset of them, each from one to four times, among fillers, so
#: that messages hold different subsets of a query's terms and repeat them at different levels.
WORDS = ["the", "of", "and", "to"]
texts = st.tuples(*(st.integers(0, 4) for _ in WORDS), st.integers(0, 6)).map(
    lambda counts: " ".join([word for word, count in zip(WORDS, counts) for _ in range(count)]
                            + [f"f{number}" for number in range(counts[-1])]) or "f0")
keywords = st.lists(st.sampled_from(WORDS), min_size=2, max_size=4, unique=True).map(" ".join)
#: Commands of a script: sessions appended to (a copy of another session's last texts makes scores tie), edited,
#: cleared, redacted and deleted, with catch-ups between.
commands = st.sampled_from(["append"] * 6 + ["copy"] * 2 + ["remove_last", "update_last", "clear", "redact",
                                                             "delete", "catch_up"])


class TestQueriesOfHeldTerms:
    @settings(max_examples=40)
    @given(st.lists(st.tuples(st.integers(0, 15), st.lists(texts, min_size=1, max_size=3), commands),
                    min_size=8, max_size=60),
           st.lists(keywords, min_size=1, max_size=4), st.sampled_from([1, 2, 10, 50]), st.sampled_from([1, 2, 3]))
    @example([(n, ["the of and", "the the of f1 f2"], "append") for n in range(6)]
             + [(n + 6, ["the and and to", "of to f1 f2 f3"], "copy") for n in range(6)]
             + [(3, ["to to to of"], "update_last"), (0, [], "catch_up"), (4, ["x"], "remove_last")],
             ["the of and to", "the and to", "of to"], 2, 2)
    def test_the_ranking_is_a_plain_bm25s(self, script: list[tuple[int, list[str], str]], queries: list[str],
                                          limit: int, block_bits: int) -> None:
        """Every query of several words present is answered on the message path, and ranks as a plain BM25 does,
        after each catch-up and at the end."""
        with message_path(1, block_bits) as answered, tempfile.TemporaryDirectory() as directory:
            clock = FakeClock()
            with SessionStore(Path(directory), clock=clock, durable=False) as store:
                last: list[str] = ["the of"]
                for number, batch, command in script:
                    clock.advance(seconds=1)
                    if command == "catch_up":
                        store.catch_up()
                        self.check(store, queries, limit, answered)
                        continue
                    if command == "copy":  # the same texts as the step before: sessions that tie
                        batch, command = last, "append"
                    run_script_step(store, f"s{number}", batch, command)
                    last = batch
                store.catch_up()
                self.check(store, queries, limit, answered)
                assert store.verify().ok

    @staticmethod
    def check(store: SessionStore, queries: list[str], limit: int, answered: list[int]) -> None:
        reference = ReferenceSearch(store)
        for keyword in queries:
            before = len(answered)
            assert search(store, keyword, limit) == reference.search(keyword, limit), keyword
            if sum(1 for word in keyword.split() if reference.scores(word)) > 1:
                assert len(answered) == before + 1, keyword
