"""An events file's trailer is refused unless its fields have the types export writes.

Python's ``1 == True`` and ``2.0 == 2`` let a trailer reading ``"end": 1``,
``"events": 2.0`` or ``"events": true`` (in a file of one event) pass the
check: a changed byte an import accepted without a word.
"""

from __future__ import annotations

import io
from pathlib import Path

import pytest

from eventstore import ChatMessage, SessionStore
from eventstore.interchange import BadExportFile, check_events, export_events, import_events
from eventstore.storage import MemoryStorage


def exported(events: int) -> bytes:
    store = SessionStore.on_storage(MemoryStorage())
    for number in range(events):
        store.append("k", ChatMessage.user(f"message {number}"))
    out = io.BytesIO()
    export_events(store, out)
    return out.getvalue()


@pytest.mark.parametrize(("events", "was", "changed"), [
    (2, b'"end":true', b'"end":1'),
    (2, b'"events":2', b'"events":2.0'),
    (1, b'"events":1', b'"events":true'),
    (0, b'"events":0', b'"events":false'),
    (0, b'"last_hash":null', b'"last_hash":0'),
])
def test_a_trailer_field_of_another_type_is_refused(tmp_path: Path, events: int, was: bytes,
                                                   changed: bytes) -> None:
    good = exported(events)
    assert check_events(io.BytesIO(good)).events == events
    assert good.count(was) == 1
    (tmp_path / "events.jsonl").write_bytes(good.replace(was, changed))
    with pytest.raises(BadExportFile, match=f"line {events + 2}: not a trailer line"):
        check_events(io.BytesIO(good.replace(was, changed)))
    with SessionStore(tmp_path / "copy") as copy:
        with pytest.raises(BadExportFile, match="not a trailer line"):
            import_events(copy, tmp_path / "events.jsonl")
        assert copy.stats().events == 0
