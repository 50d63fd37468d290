"""A term's summary joins its blocks' sessions (``Summary.sorted_sids``, which ``entries_of`` and a query's best
sessions read) as a plain dict of the term's sessions has them: blocks of any size, session ids up to the
greatest, one block or many; ``entries_of`` finds them alike one by one and over whole arrays
(``ENTRIES_IN_ARRAYS_FROM``)."""

from __future__ import annotations

from unittest import mock

from hypothesis import example, given
from hypothesis import strategies as st

from projections.search import formats
from projections.search.formats import summaries
from projections.search.formats.summaries import MULTI, Block, Summary, summary_of

codes = st.builds(lambda level, index, multi: level << 8 | index | (MULTI if multi else 0),
                  st.integers(1, 255), st.integers(0, 127), st.booleans())
ids = st.one_of(st.integers(0, 5000), st.integers(0, 2**32 - 1))


def blocks_of(model: dict[int, int]) -> list[tuple[int, Block]]:
    """The term's stored blocks: its sessions by block, each block's summary built from its entries."""
    by_block: dict[int, dict[int, int]] = {}
    for sid, code in model.items():
        by_block.setdefault(sid >> formats.BLOCK_BITS, {})[sid & ((1 << formats.BLOCK_BITS) - 1)] = code
    found = []
    for number in sorted(by_block):
        raw = summary_of(by_block[number])
        assert raw is not None
        found.append((number, Block(raw)))
    return found


@given(st.dictionaries(ids, codes, min_size=1, max_size=300), st.sampled_from([1, 2, 8, 12]), st.lists(ids))
@example({0: 1 << 8, 2**32 - 1: 255 << 8}, 12, [0, 1, 2**32 - 1])
@example({sid * 4099: (sid % 255 + 1) << 8 | MULTI for sid in range(20)}, 12, [1, 4098, 4099, 2**32 - 1, 0])
def test_the_joined_sessions_are_the_terms(model: dict[int, int], bits: int, probes: list[int]) -> None:
    """The joined sessions are the term's, ascending, beside their levels and tags; a session's entry is its own,
    and 0 for one without the term."""
    with mock.patch.object(formats, "BLOCK_BITS", bits):
        summary = Summary(blocks_of(model))
        ordered = sorted(model)
        assert ordered == list(summary.sorted_sids())
        assert (bytes(model[sid] >> 8 for sid in ordered), bytes(model[sid] & 0xFF for sid in ordered)) == (
            summary.best_levels(), summary.tags())
        for threshold in (0, len(ordered + probes) + 1):  # over whole arrays, then one by one
            with mock.patch.object(summaries, "ENTRIES_IN_ARRAYS_FROM", threshold):
                assert [model.get(sid, 0) for sid in ordered + probes] == summary.entries_of(ordered + probes)
