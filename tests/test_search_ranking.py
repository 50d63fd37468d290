"""``scoring.ranked``, the order of results: the same keys in the same order as a plain stable sort, whether it
sorts every key (a few times ``limit``) or keeps a heap (more)."""

from __future__ import annotations

from hypothesis import given
from hypothesis import strategies as st

from projections.search.scoring import ranked, ranked_sessions


@given(st.dictionaries(st.integers(0, 400), st.tuples(st.sampled_from([0.5, 1.25, 1.25, 2.0]), st.integers(0, 3)),
                       max_size=120),
       st.integers(1, 60))
def test_ranked_is_a_stable_sort_by_score_then_recency(entries: dict[int, tuple[float, int]], limit: int) -> None:
    """Scores and recencies repeat (recency ties too, which only a stable order decides)."""
    scored = {key: score for key, (score, _) in entries.items()}

    def recency(key: int) -> tuple[int, ...]:
        return (entries[key][1],)

    plain = sorted(scored, key=lambda key: (-scored[key], tuple(-part for part in recency(key))))[:limit]
    assert ranked(scored, recency, limit) == plain


def test_both_ways_are_taken() -> None:
    """A query's few candidates are sorted; many keys (say, ``search_messages``' scored messages) go to a heap."""
    scored = {key: float(key % 7) for key in range(1000)}
    for limit in (1, 5, 50, 250, 1000):
        assert ranked(scored, lambda key: (key % 3, key), limit) == sorted(
            scored, key=lambda key: (scored[key], key % 3, key), reverse=True)[:limit]


@given(st.dictionaries(st.integers(0, 400), st.tuples(st.sampled_from([0.5, 1.25, 1.25, 2.0]),
                                                      st.none() | st.integers(0, 3)), max_size=300),
       st.integers(1, 60))
def test_ranked_sessions_is_ranked_by_activity_then_session(entries: dict[int, tuple[float, int | None]],
                                                             limit: int) -> None:
    """Both ways (sorted, a heap past a few times ``limit``), sessions without an activity as the oldest."""
    scored = {sid: score for sid, (score, _) in entries.items()}
    activity = {sid: active for sid, (_, active) in entries.items() if active is not None}
    assert ranked_sessions(scored, activity, limit) == ranked(scored, lambda sid: (activity.get(sid, 0), sid), limit)
