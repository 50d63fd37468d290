"""The search index's writer notes a run's messages for the message maps only for the terms the run holds in
several messages (``writer._POSTED_FROM``); a term's one message in a run is read from its note's tag when the
block has a map. The stored bytes are those of the writer that noted every message: every key and value of every
``search.*`` database, through a rebuild and through catch-ups in batches of several sizes."""

from __future__ import annotations

import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from hypothesis import example, given, settings
from hypothesis import strategies as st

from eventstore import SessionStore, _deferred
from projections.search import formats, writer
from projections.search.formats import META_GENERATION

from conftest import FakeClock
from test_search import MAP_BANDS, VOCABULARY, run_script_step

#: A few distinct words, so that runs of appends repeat terms across messages and blocks gain maps.
texts = st.lists(st.sampled_from(VOCABULARY[:8]), min_size=1, max_size=6).map(" ".join)
steps = st.lists(st.tuples(st.sampled_from(["a", "b", "c", "d", "e"]), st.lists(texts, min_size=1, max_size=6),
                           st.sampled_from(["append"] * 4 + ["remove_last", "update_last", "clear", "redact",
                                                             "delete"])),
                 min_size=1, max_size=20)

Stored = dict[str, list[tuple[bytes, bytes]]]


def stored_index(store: SessionStore) -> Stored:
    """Every key and value of every ``search.*`` database but the generation (a rebuild draws a new one)."""
    spaces = store._search_index._spaces
    found: Stored = {}
    with store._environment.read() as txn:
        for space in spaces.all():
            found[space.name] = [(bytes(key), bytes(value)) for key, value in txn.scan(space)
                                 if not (space is spaces.meta and bytes(key) == META_GENERATION)]
    return found


@contextmanager
def small_forms(block_bits: int, map_band: tuple[int, int], batch: int, posted_from: int) -> Iterator[None]:
    """Blocks, map bands and catch-up batches small enough that a short script crosses them."""
    saved = formats.BLOCK_BITS, formats.MAP_FROM, formats.MAP_UP_TO, _deferred.DEFERRED_BATCH, writer._POSTED_FROM
    formats.BLOCK_BITS, (formats.MAP_FROM, formats.MAP_UP_TO) = block_bits, map_band
    _deferred.DEFERRED_BATCH, writer._POSTED_FROM = batch, posted_from
    try:
        yield
    finally:
        formats.BLOCK_BITS, formats.MAP_FROM, formats.MAP_UP_TO, _deferred.DEFERRED_BATCH, writer._POSTED_FROM = saved


def builds(script: list[tuple[str, list[str], str]], caught_up_every: int | None, block_bits: int,
           map_band: tuple[int, int], batch: int, posted_from: int) -> tuple[Stored, Stored]:
    """The index of ``script`` (caught up every ``caught_up_every`` steps, and at the end), then rebuilt."""
    clock = FakeClock()
    with tempfile.TemporaryDirectory() as directory, small_forms(block_bits, map_band, batch, posted_from), \
            SessionStore(Path(directory), clock=clock, durable=False) as store:
        for number, (key, batch_texts, command) in enumerate(script, 1):
            clock.advance(seconds=1)
            run_script_step(store, key, batch_texts, command)
            if caught_up_every and number % caught_up_every == 0:
                store.catch_up()
        store.catch_up()
        assert store.verify().ok
        caught_up = stored_index(store)
        store.rebuild_projections(["search"])
        assert store.verify().ok
        return caught_up, stored_index(store)


class TestNotedFromTags:
    @settings(max_examples=40)
    @given(steps, st.sampled_from([None, 1, 3]), st.sampled_from([formats.BLOCK_BITS, 1]),
           st.sampled_from(MAP_BANDS), st.sampled_from([_deferred.DEFERRED_BATCH, 1, 5]))
    @example([("a", ["apple fig", "fig", "banana"], "append"), ("b", ["apple", "apple fig"], "append"),
              ("a", ["fig fig apple"], "append")], None, 1, (1, 1 << 20), 1 << 20)
    @example([("b", ["apple fig", "fig"], "append"), ("a", ["apple", "fig apple"], "append"),
              ("b", ["apple"], "append"), ("a", ["x"], "remove_last"), ("c", ["fig"], "append")], None, 1, (1, 2), 3)
    def test_the_stored_bytes_are_those_of_noting_every_message(self, script: list[tuple[str, list[str], str]],
                                                               caught_up_every: int | None, block_bits: int,
                                                               map_band: tuple[int, int], batch: int) -> None:
        """Noting only the terms a run holds in several messages stores exactly what noting every message did
        (``_POSTED_FROM = 1``), caught up (in one batch or several, sessions out of order and in several runs of a
        batch) and rebuilt, with blocks gaining, keeping and losing their maps."""
        every = builds(script, caught_up_every, block_bits, map_band, batch, posted_from=1)
        several = builds(script, caught_up_every, block_bits, map_band, batch, posted_from=writer._POSTED_FROM)
        assert every == several

    def test_a_run_of_one_message_a_term_gets_its_keys_from_the_tags(self) -> None:
        """Sessions whose terms are each in one message of their run, in a block with a map, still have every
        message in the term's map (none of them was noted a message at a time)."""
        script = [(f"s{number}", [f"apple {VOCABULARY[1 + number % 5]}", "fig"], "append") for number in range(12)]
        every = builds(script, None, formats.BLOCK_BITS, (1, 1 << 20), _deferred.DEFERRED_BATCH, posted_from=1)
        several = builds(script, None, formats.BLOCK_BITS, (1, 1 << 20), _deferred.DEFERRED_BATCH,
                         posted_from=writer._POSTED_FROM)
        assert every == several
        assert len(several[0]["search.maps"]) >= 2  # apple's and fig's maps at least
