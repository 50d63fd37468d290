"""Deferred read models are generic: a second one works by registering it next to the search index."""

from __future__ import annotations

import struct
from collections.abc import Iterable, Iterator, Mapping, Sequence
from contextlib import contextmanager

from eventstore import ChatMessage, SessionStore
from eventstore._audit import verify
from eventstore._deferred import Deferred, DeferredReadModels
from eventstore._log import LoggedEvent
from eventstore.storage import ReadTransaction, WriteTransaction
from projections.session import SessionSnapshot

_COUNT = struct.Struct(">Q")


class EventCounts:
    """A batch and a view at once: events per stream, as stored plus what was folded in memory."""

    def __init__(self, model: CountingModel, txn: ReadTransaction, fresh: bool) -> None:
        self._model, self._txn, self.fresh = model, txn, fresh
        self.changed: dict[int, int] = {}

    def written_bytes(self) -> int:
        """Nothing to finish: counts are folded as they come; a key and a count a stream."""
        return 2 * _COUNT.size * len(self.changed)

    def count(self, stream_id: int) -> int:
        if stream_id in self.changed or self.fresh:
            return self.changed.get(stream_id, 0)
        raw = self._txn.get(self._model.space, _COUNT.pack(stream_id))
        return 0 if raw is None else int(_COUNT.unpack(raw)[0])


class CountingModel:
    """The smallest deferred read model: how many events each stream has."""

    name = "event-counts"
    code_version = 1
    payload_types: frozenset[str] = frozenset()  # it counts events: no payload is read

    def __init__(self, store: SessionStore) -> None:
        self.space = store._environment.space("test.event-counts")

    def prepare(self, txn: ReadTransaction, fresh: bool = False) -> EventCounts:
        return EventCounts(self, txn, fresh)

    def fold(self, batch: EventCounts, stream_id: int, events: Sequence[LoggedEvent]) -> None:
        batch.changed[stream_id] = batch.count(stream_id) + len(events)

    def write(self, batch: EventCounts, txn: WriteTransaction) -> None:
        if batch.fresh:
            self.clear(txn)
        for stream_id, count in batch.changed.items():
            txn.put(self.space, _COUNT.pack(stream_id), _COUNT.pack(count))

    @contextmanager
    def batch(self, txn: WriteTransaction) -> Iterator[EventCounts]:
        counts = EventCounts(self, txn, False)
        yield counts
        self.write(counts, txn)

    def overlay(self, txn: ReadTransaction, pending: Iterable[tuple[int, Sequence[LoggedEvent]]],
                read_only: bool = False) -> EventCounts:
        counts = EventCounts(self, txn, False)
        for stream_id, events in pending:
            self.fold(counts, stream_id, events)
        return counts

    def reader(self, txn: ReadTransaction, read_only: bool = False) -> EventCounts:
        return EventCounts(self, txn, False)

    def clear(self, txn: WriteTransaction) -> None:
        txn.clear(self.space)

    def check_view(self, view: EventCounts, sessions: Mapping[int, SessionSnapshot]) -> list[str]:
        return [f"event-counts: stream {sid} counts {view.count(sid)}, the log has {session.head.version}"
                for sid, session in sorted(sessions.items()) if view.count(sid) != session.head.version]


def register(store: SessionStore) -> tuple[Deferred[EventCounts, EventCounts], DeferredReadModels]:
    counting = Deferred(CountingModel(store), store._log, store._checkpoints, store._read, store._write,
                        store._make_room, store._release_freed_pages, False, store.path)
    return counting, DeferredReadModels([store._search, counting])


def count_of(counting: Deferred[EventCounts, EventCounts], stream_id: int) -> int:
    """The model's count for a stream, read as of every committed event."""
    return counting.query(lambda view, _: view.count(stream_id))


def stream_ids(store: SessionStore, *keys: str) -> dict[str, int]:
    with store._read() as txn:
        found = {key: store._log.stream_id(txn, key) for key in keys}
    return {key: sid for key, sid in found.items() if sid is not None}


def checked(store: SessionStore, registry: DeferredReadModels) -> list[str]:
    """``verify``'s problems with every registered model checked."""
    with store._read() as txn:
        return verify(txn, store._log, store._snapshots, registry.checkers(txn)).problems


def test_a_second_model_is_read_up_to_date_caught_up_and_checked(store: SessionStore) -> None:
    store.append_many("a", [ChatMessage.user("one"), ChatMessage.user("two")])
    store.append("b", ChatMessage.user("three"))
    counting, registry = register(store)
    assert ["search", "event-counts"] == registry.names()
    ids = stream_ids(store, "a", "b")
    # Read-your-writes before any catch-up: the missing events are folded in memory, and verify sees them so.
    assert {"a": 2, "b": 1} == {key: count_of(counting, sid) for key, sid in ids.items()}
    assert [] == checked(store, registry)
    assert 3 <= registry.catch_up()
    with store._read() as txn:
        assert 0 == counting.lag(txn)
    assert {"a": 2, "b": 1} == {key: count_of(counting, sid) for key, sid in ids.items()}


def test_a_damaged_model_is_found_and_rebuilt(store: SessionStore) -> None:
    store.append_many("a", [ChatMessage.user("one"), ChatMessage.user("two")])
    counting, registry = register(store)
    registry.catch_up()
    sid = stream_ids(store, "a")["a"]
    space = store._environment.space("test.event-counts")
    store._write(lambda txn: txn.put(space, _COUNT.pack(sid), _COUNT.pack(7)))
    assert 7 == count_of(counting, sid)
    assert [f"event-counts: stream {sid} counts 7, the log has 2"] == checked(store, registry)
    registry.rebuild(["event-counts"])
    assert (2, []) == (count_of(counting, sid), checked(store, registry))
