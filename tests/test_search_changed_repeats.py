"""A block's repeated messages as a batch changes them (``maps.ChangedRepeats``): the stored keys and levels kept as
they are, the batch's changes held apart and merged when read. Whatever keys are set, updated and dropped, and
whenever the merged form is read between them, it holds what a dict of every repeat changed the same way holds,
and its stored value is the bytes of that dict's keys and levels encoded afresh (bitmaps built from sorted keys,
as the index always stored them; a bitmap changed in place may serialize to other bytes), merged in a dict or in
numpy."""

from __future__ import annotations

import random

import pytest
from hypothesis import example, given
from hypothesis import strategies as st
from pyroaring import BitMap

from projections.search.formats import maps
from projections.search.formats.maps import LAST_KEYS, MAP_SHIFT, ChangedRepeats, repeats_of_value, repeats_value

#: Message keys of a few sessions (offsets) and message indexes, so that runs of keys form and break, and of the
#: whole range of keys.
keys = st.one_of(
    st.builds(lambda index, offset: index << MAP_SHIFT | offset, st.integers(0, 3), st.integers(0, 40)),
    st.integers(0, LAST_KEYS - 1),
)
levels = st.integers(1, 255)
stored = st.dictionaries(keys, levels, max_size=200)
steps = st.lists(
    st.one_of(
        st.tuples(st.just("set"), st.lists(st.tuples(keys, levels), min_size=1, max_size=30)),
        st.tuples(st.just("drop"), st.integers(0, 40)),
        st.tuples(st.just("read"), st.just(0)),
    ),
    max_size=12,
)


def encoded(repeats: dict[int, int]) -> bytes:
    """The stored value of ``repeats`` built afresh from every key and level, sorted."""
    ordered = sorted(repeats)
    return repeats_value(BitMap(ordered), bytes(map(repeats.__getitem__, ordered)))


#: Stored keys whose bitmap, changed in place by these drops and sets, keeps a run container where one built afresh
#: has an array of the same size.
IN_PLACE_DIFFERS = {
    key: 1
    for key in (
        0,
        1,
        2,
        4,
        6,
        7,
        8,
        13,
        17,
        19,
        20,
        22,
        23,
        24,
        26,
        27,
        30,
        38,
        40,
        43,
        44,
        46,
        47,
        52,
        53,
        54,
        55,
        56,
        57,
        60,
        61,
        62,
    )
}


@given(stored, steps, st.sampled_from([0, maps.MERGED_IN_ARRAYS_FROM, 1 << 20]))
@example(IN_PLACE_DIFFERS, [("drop", 25), ("drop", 26), ("drop", 37), ("set", [(22, 1), (54, 1)])], 0)
def test_the_merged_repeats_are_those_of_a_dict_changed_the_same_way(
    before: dict[int, int], script: list[tuple[str, object]], in_arrays_from: int
) -> None:
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(maps, "MERGED_IN_ARRAYS_FROM", in_arrays_from)
        changed_the_same_way(before, script)


def changed_the_same_way(before: dict[int, int], script: list[tuple[str, object]]) -> None:
    changed = ChangedRepeats(repeats_of_value(encoded(before)) if before else None)
    model = dict(before)
    for command, argument in script:
        if command == "set":
            assert isinstance(argument, list)
            changed.update(argument[1:])
            changed.set(*argument[0])
            model.update(argument[1:])
            model[argument[0][0]] = argument[0][1]
        elif command == "drop":
            assert isinstance(argument, int)
            changed.drop_session(argument)
            model = {key: level for key, level in model.items() if key & (1 << MAP_SHIFT) - 1 != argument}
        else:
            merged_keys, merged_levels = changed.merged()
            assert (list(merged_keys), merged_levels) == (sorted(model), bytes(model[key] for key in sorted(model)))
        assert bool(changed) == bool(model)
    assert changed.changed == any(command != "read" for command, _ in script)
    if model:
        assert repeats_value(*changed.merged()) == encoded(model)


def dense(seed: int, density: float) -> dict[int, int]:
    """Repeats filling the first two containers (65,536 keys each) densely: runs of 1 to 30 keys and gaps between
    them, so that their containers hold more keys than an array does, some near that bound, as bitsets or runs."""
    rng = random.Random(seed)
    found: dict[int, int] = {}
    key = rng.randrange(50)
    while key < 2 << 16:
        run = rng.randint(1, 30)
        found.update((each, rng.randint(1, 9)) for each in range(key, min(key + run, 2 << 16)))
        key += run + rng.randint(1, max(1, round(run / density)))
    return found


#: Keys in the dense containers, and sessions there (a session's keys are 4,096 apart).
dense_keys = st.integers(0, (2 << 16) - 1)
dense_steps = st.lists(
    st.one_of(
        st.tuples(st.just("set"), st.lists(st.tuples(dense_keys, levels), min_size=1, max_size=30)),
        st.tuples(st.just("drop"), st.integers(0, (1 << MAP_SHIFT) - 1)),
        st.tuples(st.just("read"), st.just(0)),
    ),
    max_size=12,
)


@given(st.integers(0, 1 << 32), st.sampled_from([0.03, 0.035, 0.05, 0.5, 3.0]), dense_steps)
def test_dense_containers_changed_in_place_store_what_a_dict_does(
    seed: int, density: float, script: list[tuple[str, object]]
) -> None:
    """Containers of more keys than an array holds are changed in place (their bitsets and runs never tie in size),
    those of fewer, and those a change takes across that bound, built afresh."""
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(maps, "MERGED_IN_ARRAYS_FROM", 0)
        changed_the_same_way(dense(seed, density), script)
