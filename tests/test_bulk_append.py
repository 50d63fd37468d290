"""What a bulk import writes: one record an event, each with an id of its own, compact once the store compresses."""

from __future__ import annotations

from pathlib import Path

from eventstore import ChatMessage, SessionStore
from eventstore._compression import TRAINING_EVENTS

from test_tamper import items

MESSAGES = 20


def test_each_event_of_append_many_has_its_own_id_and_its_payload_digest(tmp_path: Path) -> None:
    """Past the dictionary's training, every event of every ``append_many`` has a distinct id, its record is
    compact (layout 2, its payload digest recomputed rather than stored), and the store verifies."""
    sessions = TRAINING_EVENTS // MESSAGES + 5
    with SessionStore(tmp_path / "store", durable=False) as store:
        for number in range(sessions):
            store.append_many(f"s{number}", [ChatMessage.user(f"message {i} of session {number}")
                                             for i in range(MESSAGES)])
        events = list(store.events())
        assert store.verify().ok
    assert len({event.event_id for event in events}) == len(events) == sessions * MESSAGES
    compact = [record for _, record in items(tmp_path / "store", b"log.events")][-5 * MESSAGES:]
    assert all(record[0] == 2 for record in compact), "records past the training are in layout 2"
    # Each is its payload's own SHA-256, so none is stored (the flag of a stored digest is off).
    assert not any(record[1] & 2 for record in compact)
