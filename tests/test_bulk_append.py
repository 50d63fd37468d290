"""What a bulk import writes: one record an event, each with an id of its own, compact once the store compresses."""

from __future__ import annotations

import hashlib
from pathlib import Path

from eventstore import ChatMessage, SessionStore
from eventstore._compression import TRAINING_EVENTS

MESSAGES = 20


def test_each_event_of_append_many_has_its_own_id_and_its_payload_digest(tmp_path: Path) -> None:
    """Past the dictionary's training, every event of every ``append_many`` has a distinct id and a payload
    digest that is its payload's SHA-256 (stored or recomputed alike), and the store verifies."""
    sessions = TRAINING_EVENTS // MESSAGES + 5
    with SessionStore(tmp_path / "store", durable=False) as store:
        for number in range(sessions):
            store.append_many(f"s{number}", [ChatMessage.user(f"message {i} of session {number}")
                                             for i in range(MESSAGES)])
        events = list(store.events())
        assert store.verify().ok
    assert len({event.event_id for event in events}) == len(events) == sessions * MESSAGES
    history = store_history_digests(tmp_path / "store", f"s{sessions - 1}")
    assert [digest for digest, _ in history] == [hashlib.sha256(payload).hexdigest() for _, payload in history]


def store_history_digests(path: Path, key: str) -> list[tuple[str, bytes]]:
    """(payload digest, stored payload) of each event of ``key``, read back through the log."""
    with SessionStore(path) as store:
        log, environment = store._log, store._environment
        with environment.read() as txn:
            stream_id = log.stream_id(txn, key)
            assert stream_id is not None
            return [(event.payload_digest.hex(), event.encoded.payload) for event in log.read_stream(txn, stream_id)]
