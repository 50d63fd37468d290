"""A block's level groups stay ascending when an edit moves a session between levels (``formats.summary_set``, which
removals and a batch's few raises of sessions a block already holds go through), as the stored form says and as a
block built at once has them: an edited block is byte for byte the block of its entries built anew. A block whose
groups an earlier version left out of order still reads and edits. A block's sessions are grouped by level in numpy
from a few dozen, in the bytes of grouping them in Python."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

from hypothesis import example, given
from hypothesis import strategies as st

from eventstore import ChatMessage, SessionStore
from projections.search import formats
from projections.search.formats import summaries
from projections.search.formats.arrays import packed_u16s, u16s
from projections.search.formats.summaries import MULTI, Block, summary_extend, summary_of, summary_set

#: Blocks of more than this many sessions keep level groups here (a few, so that small examples have them).
GROUPED_FROM = 4

codes = st.builds(lambda level, index, multi: level << 8 | index | (MULTI if multi else 0),
                  st.integers(1, 4), st.integers(0, 3), st.booleans())
entries = st.dictionaries(st.integers(0, 40), codes, min_size=GROUPED_FROM + 1, max_size=30)
edits = st.lists(st.tuples(st.integers(0, 40), st.one_of(st.just(0), codes)), min_size=1, max_size=20)


@contextmanager
def grouped_from(sessions: int) -> Iterator[None]:
    saved, formats.GROUPED_FROM = formats.GROUPED_FROM, sessions
    try:
        yield
    finally:
        formats.GROUPED_FROM = saved


def groups_of(raw: bytes) -> list[tuple[int, list[int]]]:
    return [(level, list(u16s(members))) for level, members in Block(raw).groups()]


@given(entries, edits)
@example({number: (1 if number % 2 else 2) << 8 for number in range(8)}, [(2, 1 << 8)])
def test_an_edited_block_is_the_block_of_its_entries(start: dict[int, int], changes: list[tuple[int, int]]) -> None:
    """Each edit (a session added, moved to another level, given another tag, taken out) leaves the block that
    ``summary_of`` builds from the same entries: its level groups ascending, in the same bytes."""
    with grouped_from(GROUPED_FROM):
        model = dict(start)
        raw = summary_of(model)
        for sid, code in changes:
            assert raw is not None
            raw = summary_set(raw, sid, code)
            if code:
                model[sid] = code
            else:
                model.pop(sid, None)
            assert raw == summary_of(model)
            if raw is not None:
                assert all(members == sorted(members) for _, members in groups_of(raw))


def test_a_group_stored_out_of_order_still_reads_and_edits() -> None:
    """A block written before groups were kept ascending (a moved session last in its group) gives every session's
    level from its groups, and its sessions can still be moved and taken out."""
    with grouped_from(GROUPED_FROM):
        model = {number: (1 if number % 2 or number == 2 else 2) << 8 for number in range(8)}
        built = summary_of(model)
        assert built is not None and groups_of(built) == [(2, [0, 4, 6]), (1, [1, 2, 3, 5, 7])]
        old_form = built[:-10] + packed_u16s([1, 3, 5, 7, 2])  # level 1's group last, session 2 moved in
        assert groups_of(old_form) == [(2, [0, 4, 6]), (1, [1, 3, 5, 7, 2])]
        assert Block(old_form).entries() == model
        assert summary_set(old_form, 2, 2 << 8) == summary_of({**model, 2: 2 << 8})
        taken = summary_set(old_form, 2, 0)
        assert taken is not None and Block(taken).entries() == {sid: code for sid, code in model.items() if sid != 2}


def test_a_removal_keeps_the_stored_groups_ascending(store: SessionStore) -> None:
    """A removal that lowers a session into a level other sessions hold already stores the group ascending."""
    with grouped_from(GROUPED_FROM):
        for number in range(8):
            lower = number % 2 or number == 2
            store.append(f"s{number}", ChatMessage.user("apple banana cherry" if lower else "apple"))
        store.append("s2", ChatMessage.user("apple"))  # a better level than its first message's
        store.catch_up()
        store.remove_last("s2")  # back to its first message's level, which other sessions hold
        store.catch_up()
        with store._environment.read() as txn:
            view = store._search_index.prepare(txn)
            apple = view.tid("apple")
            assert apple is not None
            raw = view.block_raw(apple, 0)
        assert raw is not None and Block(raw).grouped
        assert all(members == sorted(members) for _, members in groups_of(raw))
        assert store.verify().ok


@given(st.dictionaries(st.integers(0, (1 << 12) - 1), st.integers(0, 255), max_size=300), st.integers(0, 300))
@example({number: 7 for number in range(40)}, 32)
def test_level_groups_sorted_in_numpy_are_those_sorted_in_python(levels_of: dict[int, int], from_: int) -> None:
    """A block's sessions grouped by level over whole arrays (from ``LEVEL_GROUPS_NUMPY_FROM`` sessions) are those
    of one sort in Python: best level first, ascending within a level, in the same bytes; and so are the blocks
    ``summary_extend`` builds from them, past a stored block too."""
    offsets = sorted(levels_of)
    columns = packed_u16s(offsets), bytes(map(levels_of.__getitem__, offsets)), bytes(len(offsets))
    saved = summaries.LEVEL_GROUPS_NUMPY_FROM
    try:
        summaries.LEVEL_GROUPS_NUMPY_FROM = 1 << 20
        in_python = list(summaries._level_groups(*columns[:2]))
        built_in_python = summary_extend(None, *columns)
        summaries.LEVEL_GROUPS_NUMPY_FROM = from_
        assert list(summaries._level_groups(*columns[:2])) == in_python
        assert summary_extend(None, *columns) == built_in_python
    finally:
        summaries.LEVEL_GROUPS_NUMPY_FROM = saved
    assert [level for level, _ in in_python] == sorted(set(columns[1]), reverse=True)
    assert [sid for _, members in in_python for sid in u16s(members)] == sorted(
        offsets, key=lambda sid: -levels_of[sid])
