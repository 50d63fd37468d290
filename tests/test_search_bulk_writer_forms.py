"""The index writer that notes a run's messages only for the terms it holds in several (``writer._POSTED_FROM``)
stores exactly the bytes of the one that noted every message, on the forms ``test_search_bulk_writer`` leaves out:
term ids at and past 65,536 (the postings' high run), runs past ``LAST_TAG`` messages (one map key stands for
several), messages where a term has a level of its own, and forks and restores (which replace a session's messages
in one edit), with the catch-up batches and sessions' runs split as there."""

from __future__ import annotations

import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from eventstore import ChatMessage, SessionStore, _deferred
from projections.search import writer
from projections.search.formats import summaries

from conftest import FakeClock
from test_search import run_script_step
from test_search_bulk_writer import small_forms, stored_index

#: Blocks of two sessions, and maps in every block.
FORMS = (1, (1, 1 << 20))
WORDS = ["apple", "fig", "banana", "cherry", "date"]
texts = st.one_of(
    st.lists(st.sampled_from(WORDS), min_size=1, max_size=5).map(" ".join),
    # a word repeated: a level of its own for it in a longer message
    st.tuples(st.sampled_from(WORDS), st.integers(2, 12), st.sampled_from(WORDS))
    .map(lambda drawn: " ".join([drawn[0]] * drawn[1] + [drawn[2]] * 4)),
)
steps = st.lists(st.tuples(st.sampled_from(["a", "b", "c"]),
                           st.one_of(st.lists(texts, min_size=1, max_size=5),
                                     texts.map(lambda text: [text] * (summaries.LAST_TAG + 3))),
                           st.sampled_from(["append"] * 4 + ["remove_last", "update_last", "clear", "fork",
                                                             "restore"])),
                 min_size=1, max_size=12)


@pytest.fixture(scope="module")
def many_terms() -> Iterator[Path]:
    """A store whose index holds 65,600 terms already: every word of the scripts gets an id past 65,535 (built with
    the forms the scripts take)."""
    with tempfile.TemporaryDirectory() as directory:
        path = Path(directory) / "store"
        with small_forms(*FORMS, _deferred.DEFERRED_BATCH, 1), \
                SessionStore(path, clock=FakeClock(), durable=False) as store:
            filler = " ".join(f"filler{number:05d}x" for number in range(65_600))
            store.append("filler", ChatMessage.user(filler))
            store.catch_up()
        yield path


def step(store: SessionStore, key: str, batch_texts: list[str], command: str) -> None:
    if command == "fork" and store.load(key):
        into = f"{key}-fork{len(store.list_sessions())}"
        store.fork(key, into)
        store.append(into, ChatMessage.user(batch_texts[0]))
    elif command == "restore" and len(store.history(key)) > 2:
        store.restore(key, len(store.history(key)) - 2)
    else:
        run_script_step(store, key, batch_texts, "append" if command in ("fork", "restore") else command)


def build(origin: Path | None, script: list[tuple[str, list[str], str]], batch: int, posted_from: int
          ) -> dict[str, list[tuple[bytes, bytes]]]:
    """The index of ``script`` on a copy of ``origin`` (or an empty store), caught up at the end."""
    clock = FakeClock()
    with tempfile.TemporaryDirectory() as directory:
        path = Path(directory) / "store"
        if origin is not None:
            shutil.copytree(origin, path)
        with small_forms(*FORMS, batch, posted_from), \
                SessionStore(path, clock=clock, durable=False) as store:
            for key, batch_texts, command in script:
                clock.advance(seconds=1)
                step(store, key, batch_texts, command)
            store.catch_up()
            assert store.verify().ok
            return stored_index(store)


@pytest.mark.slow
@settings(max_examples=15)
@given(script=steps, batch=st.sampled_from([_deferred.DEFERRED_BATCH, 1, 7]), high=st.booleans())
def test_the_stored_bytes_are_those_of_noting_every_message(many_terms: Path, script: list[tuple[str, list[str],
                                                                                                  str]],
                                                            batch: int, high: bool) -> None:
    origin = many_terms if high else None
    assert build(origin, script, batch, posted_from=1) == build(origin, script, batch, writer._POSTED_FROM)
