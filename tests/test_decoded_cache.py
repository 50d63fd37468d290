"""The cache of decoded sessions stays warm and right when commits report their changes out of order."""

from __future__ import annotations

import itertools
import threading
import time
from pathlib import Path

from hypothesis import given
from hypothesis import strategies as st

from eventstore import ChatMessage, RecordedEvent, SessionStore
from eventstore.services.cache import DecodedSessions
from eventstore.storage import WriteTransaction
from eventstore.storage.lmdb import Environment
from projections.session import Entry, apply_edit, message_edit

from strategies import histories


def folded(history: list[RecordedEvent]) -> tuple[Entry, ...]:
    entries: list[Entry] = []
    for event in history:
        apply_edit(entries, message_edit(event))
    return tuple(entries)


@st.composite
def shuffled_batches(draw: st.DrawFn) -> tuple[list[RecordedEvent], list[list[RecordedEvent]]]:
    """A history, and its events cut into commits that report in any order."""
    history = draw(histories(max_size=20))
    cuts = sorted(draw(st.sets(st.integers(1, max(1, len(history) - 1)), max_size=len(history))))
    bounds = [0, *[cut for cut in cuts if cut < len(history)], len(history)]
    batches = [history[start:end] for start, end in itertools.pairwise(bounds) if end > start]
    return history, draw(st.permutations(batches))


@given(shuffled_batches())
def test_advances_out_of_order_leave_the_session_at_its_last_version(case: tuple[
        list[RecordedEvent], list[list[RecordedEvent]]]) -> None:
    history, batches = case
    cache = DecodedSessions(4)
    cache.remember("session", 0, ())
    for batch in batches:
        cache.advance(batch)
    for version in range(len(history)):  # never a list for a version it is not at
        assert cache.get("session", version) in (None, folded(history[:version]))
    assert cache.get("session", len(history)) == folded(history)


def test_a_reader_that_raced_a_commit_does_not_push_the_cache_back() -> None:
    cache = DecodedSessions(4)
    message = ChatMessage("user", "hi")
    cache.remember("session", 3, ((message, 1),))
    cache.remember("session", 2, ())
    assert cache.get("session", 3) == ((message, 1),)
    assert cache.get("session", 2) is None


def test_threads_appending_to_one_session_keep_it_cached(tmp_path: Path) -> None:
    writers = 8
    with SessionStore(tmp_path / "store", durable=False) as store:
        store.append("session", ChatMessage("user", "first"))
        store.load("session")  # the session is cached from here on
        environment = store._environment
        assert isinstance(environment, Environment)
        holding, release = threading.Event(), threading.Event()

        def blocker(txn: WriteTransaction) -> None:
            holding.set()
            release.wait()

        first = threading.Thread(target=environment.write, args=(blocker,))
        first.start()
        holding.wait()
        threads = [threading.Thread(target=store.append, args=("session", ChatMessage("user", str(index))))
                   for index in range(writers)]
        for thread in threads:
            thread.start()
        while len(environment._group._queued) < writers:  # all of them commit in one group
            time.sleep(0.001)
        release.set()
        for thread in [first, *threads]:
            thread.join()
        version = store.session_at("session").version
        cached = store._decoded.get("session", version)
        assert cached is not None
        store._decoded.clear()
        assert [message for message, _ in cached] == store.load("session")
