"""A catch-up builds its batch's writes in its read transaction (``IndexWriter.written_bytes``), makes room for them,
then writes them; a term new to the index and to the batch has its blocks without a map summarized as they come.
After any history, with commands, catch-ups, redactions, rebuilds and searches run between a catch-up's build and
its write (where it makes room), on LMDB and in memory, the index holds byte for byte what the general path stores
(every block raised through its summary, no term held or spliced, the writes built in the write transaction), passes
``verify``, and finds what an index rebuilt from the log finds."""

from __future__ import annotations

import contextlib
import tempfile
from collections.abc import Callable
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from eventstore import ChatMessage, SessionExists, SessionNotFound, SessionStore
from eventstore.storage import MemoryStorage
from projections.search import formats, writer

from conftest import FakeClock
from test_search import MAP_BANDS
from test_search_bulk_writer import Stored, small_forms, stored_index

KEYS = ["a", "b", "c", "d", "e"]
WORDS = ["apple", "banana", "cherry", "fig", "zeta", "gpt-4"]
texts = st.lists(st.sampled_from(WORDS), min_size=1, max_size=5).map(" ".join)
#: What runs where a catch-up makes room: after its batch is built, before its write transaction.
BETWEEN = ["nothing", "append", "catch_up", "redact", "rebuild", "search", "clear"]
steps = st.lists(st.one_of(
    st.tuples(st.sampled_from(["append", "remove_last", "update_last", "clear", "redact", "delete", "replace",
                               "restore", "fork"]), st.sampled_from(KEYS), st.lists(texts, max_size=4)),
    st.tuples(st.just("catch_up"), st.sampled_from(BETWEEN), st.lists(texts, min_size=1, max_size=3)),
), min_size=1, max_size=30)

Step = tuple[str, str, list[str]]
Hits = dict[str, list[tuple[str, int]]]


def messages(batch: list[str]) -> list[ChatMessage]:
    return [ChatMessage.user(text) for text in batch]


def between(store: SessionStore, what: str, batch: list[str]) -> None:
    if what == "append":
        store.append_many("a", messages(batch))
    elif what == "catch_up":
        store.append_many("b", messages(batch))
        store.catch_up()
    elif what == "redact" and store.session_exists("a"):
        store.redact("a", "test")
    elif what == "rebuild":
        store.rebuild_projections(["search"])
    elif what == "search":
        store.append_many("c", messages(batch))
        store.search_messages(batch[0], 10)
    elif what == "clear" and store.session_exists("a"):
        store.clear_messages("a")


def caught_up_with(store: SessionStore, what: str, batch: list[str]) -> None:
    """A catch-up of a few new messages at least, ``what`` run once where it makes room for its write."""
    make_room = store._search._make_room
    ran: list[str] = []

    def making_room(size: int) -> None:
        if not ran:
            ran.append(what)
            between(store, what, batch)
        make_room(size)

    store._search._make_room = making_room
    try:
        store.append_many("e", messages(batch))
        store.catch_up()
    finally:
        store._search._make_room = make_room
    assert ran == [what]


def run(store: SessionStore, step: Step) -> None:
    command, key, batch = step
    if command == "catch_up":
        caught_up_with(store, key, batch)
    elif command == "append" or (command == "replace" and not store.session_exists(key)):
        store.append_many(key, messages(batch or ["fig"]))
    elif command == "fork":
        with contextlib.suppress(SessionExists, SessionNotFound):  # the target lives, or the source does not
            store.fork(key, KEYS[(KEYS.index(key) + 1) % len(KEYS)])
    elif command == "restore" and store.history(key):
        store.restore(key, version=1 + len(batch) % len(store.history(key)))
    elif not store.session_exists(key):
        return
    elif command == "replace":
        store.replace_messages(key, messages(batch))
    elif command == "delete":
        store.delete_session(key)
    elif command == "redact":
        store.redact(key, "test")
    elif not store.load(key):
        return
    elif command == "remove_last":
        store.remove_last(key)
    elif command == "update_last":
        store.update_last(key, ChatMessage.user(batch[0] if batch else "zeta"))
    elif command == "clear":
        store.clear_messages(key)


def hits(store: SessionStore) -> Hits:
    return {word: sorted((hit.session_key, hit.index) for hit in store.search_messages(word, 1000)) for word in WORDS}


def general_path(patch: pytest.MonkeyPatch) -> None:
    """Every block raised through its summary (no term held as its columns or spliced onto its head stored whole),
    and the writes built in the write transaction (the batch settled before it, as a catch-up's always was)."""

    def settled(batch: writer.IndexWriter) -> int:
        batch.settle()
        return 0

    patch.setattr(writer, "mapped_size", lambda _sessions: True)
    patch.setattr(writer.IndexWriter, "_splice", lambda *_args: False)
    patch.setattr(writer.IndexWriter, "written_bytes", settled)


def built(script: list[Step], opened: Callable[[Path, FakeClock], SessionStore]) -> tuple[Stored, Hits]:
    """The index of ``script``, checked by ``verify`` and against an index rebuilt from the log."""
    clock = FakeClock()
    with tempfile.TemporaryDirectory() as directory, opened(Path(directory), clock) as store:
        for step in script:
            clock.advance(seconds=1)
            run(store, step)
        store.catch_up()
        assert store.verify().ok
        stored, found = stored_index(store), hits(store)
        store.rebuild_projections(["search"])
        assert store.verify().ok
        assert hits(store) == found
        return stored, found


ENGINES: dict[str, Callable[[Path, FakeClock], SessionStore]] = {
    "lmdb": lambda path, clock: SessionStore(path, clock=clock, durable=False),
    "memory": lambda path, clock: SessionStore.on_storage(MemoryStorage(path), clock=clock),
}


@settings(deadline=None)
@given(steps, st.sampled_from([0, 1, 3, formats.WHOLE_UP_TO]), st.sampled_from([formats.BLOCK_BITS, 1, 2]),
       st.sampled_from(MAP_BANDS), st.sampled_from([200_000, 1, 3]), st.sampled_from(sorted(ENGINES)))
def test_a_catch_up_stores_what_the_general_path_stores(script: list[Step], whole: int, block_bits: int,
                                                        map_band: tuple[int, int], batch: int, engine: str) -> None:
    with pytest.MonkeyPatch.context() as patch, small_forms(block_bits, map_band, batch, writer._POSTED_FROM):
        patch.setattr(formats, "WHOLE_UP_TO", whole)
        built_here = built(script, ENGINES[engine])
        general_path(patch)
        assert built_here == built(script, ENGINES[engine])
