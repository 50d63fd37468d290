"""The catalog, message-list and checkpoint read models on every storage engine, driven directly:
what they hold after applying histories in random batches must be what the session fold gives."""

from __future__ import annotations

import itertools
import tempfile
from collections.abc import Callable
from pathlib import Path

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from eventstore import RecordedEvent
from eventstore.storage import Storage
from projections.catalog import Catalog
from projections.messages import MessageLists
from projections.readmodel import Checkpoints
from projections.session import SessionSnapshot, empty_snapshot, fold

from strategies import histories

KEYS = ("alpha", "beta", "gamma")

# ``open_storage`` only opens engines; every example opens its own store in a fresh directory.
# Fewer examples than the profile's: each runs on every engine, and the model tests cover the same folds.
_engines = settings(max_examples=30, suppress_health_check=[HealthCheck.function_scoped_fixture])


@st.composite
def batched_histories(draw: st.DrawFn) -> list[tuple[int, list[RecordedEvent]]]:
    """A history per key, cut into batches, the batches of different keys interleaved: (stream id, batch)."""
    pending = {}
    for stream_id, key in enumerate(KEYS, start=1):
        history = draw(histories(key=key, max_size=12))
        cuts = sorted(draw(st.sets(st.integers(1, max(len(history) - 1, 1)), max_size=4)))
        bounds = [0, *[cut for cut in cuts if cut < len(history)], len(history)]
        pending[stream_id] = [history[a:b] for a, b in itertools.pairwise(bounds) if b > a]
    batches = []
    while any(pending.values()):
        stream_id = draw(st.sampled_from(sorted(s for s, left in pending.items() if left)))
        batches.append((stream_id, pending[stream_id].pop(0)))
    return batches


def folded(batches: list[tuple[int, list[RecordedEvent]]]) -> dict[int, SessionSnapshot]:
    """Each stream's session, folded from its events in order."""
    sessions = {stream_id: empty_snapshot(key) for stream_id, key in enumerate(KEYS, start=1)}
    for stream_id, batch in batches:
        sessions[stream_id] = fold(sessions[stream_id], batch)
    return sessions


def applied(storage: Storage, batches: list[tuple[int, list[RecordedEvent]]]) -> tuple[Catalog, MessageLists]:
    catalog, messages = Catalog(storage.space), MessageLists(storage.space)
    for stream_id, batch in batches:
        def body(txn, stream_id=stream_id, batch=batch):
            catalog.apply(txn, stream_id, batch)
            messages.apply(txn, stream_id, batch)

        storage.write(body)
    return catalog, messages


@_engines
@given(batches=batched_histories())
def test_read_models_agree_with_the_fold(open_storage: Callable[[Path], Storage], batches):
    """Heads, message lists, listings and the models' own checks match the fold of each history."""
    sessions = folded(batches)
    with tempfile.TemporaryDirectory() as directory:
        storage = open_storage(Path(directory))
        try:
            catalog, messages = applied(storage, batches)
            live = {stream_id: s for stream_id, s in sessions.items() if s.head.exists}
            with storage.read() as txn:
                for stream_id, session in sessions.items():
                    assert (session.head if session.head.exists else None) == catalog.head(txn, stream_id)
                    assert list(session.messages) == messages.entries(txn, stream_id)
                    assert [message.content for message, _ in session.messages] == messages.contents(txn, stream_id)
                assert live.keys() == {stream_id for stream_id, _ in catalog.heads(txn)}
                listed = catalog.metadata_by_activity(txn)
                assert sorted(s.head.key for s in live.values()) == sorted(m.key for m in listed)
                assert sorted((m.last_activity for m in listed), reverse=True) == [m.last_activity for m in listed]
                running = {s.head.key for s in live.values()
                           if s.head.state is not None and s.head.state.turn_started_at is not None}
                assert running == {head.key for head in catalog.running(txn)}
                assert [] == catalog.check(txn, sessions) == messages.check(txn, sessions)
        finally:
            storage.release()


@_engines
@given(batches=batched_histories())
def test_clear_and_rebuild_in_one_batch(open_storage: Callable[[Path], Storage], batches):
    """Clearing the models and applying each stream's whole history at once gives the same entries."""
    with tempfile.TemporaryDirectory() as directory:
        storage = open_storage(Path(directory))
        try:
            catalog, messages = applied(storage, batches)
            with storage.read() as txn:
                before = catalog.dump(txn), messages.dump(txn)
            whole = {stream_id: [event for s, batch in batches if s == stream_id for event in batch]
                     for stream_id in {s for s, _ in batches}}

            def rebuild(txn):
                catalog.clear(txn)
                messages.clear(txn)
                for stream_id, events in sorted(whole.items()):
                    catalog.apply(txn, stream_id, events)
                    messages.apply(txn, stream_id, events)

            storage.write(rebuild)
            with storage.read() as txn:
                assert before == (catalog.dump(txn), messages.dump(txn))
        finally:
            storage.release()


def test_checkpoints(tmp_path, open_storage):
    """Checkpoints keep the latest code version and position per read model."""
    storage = open_storage(tmp_path)
    try:
        checkpoints = Checkpoints(storage.space)
        with storage.read() as txn:
            assert (None, {}) == (checkpoints.get(txn, "catalog"), checkpoints.all(txn))
        storage.write(lambda txn: checkpoints.put(txn, "catalog", 2, 10))
        storage.write(lambda txn: checkpoints.put(txn, "messages", 3, 7))
        storage.write(lambda txn: checkpoints.put(txn, "catalog", 2, 12))
        with storage.read() as txn:
            assert (2, 12) == checkpoints.get(txn, "catalog")
            assert {"catalog": (2, 12), "messages": (3, 7)} == checkpoints.all(txn)
    finally:
        storage.release()
