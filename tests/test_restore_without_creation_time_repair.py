"""A restore recorded without its session's creation time (older imports let one in) takes that time from the log
alone where the store checks or repairs itself: a damaged snapshot before the restored version is reported by
``verify``, not blamed on the catalog, and ``rebuild_projections`` repairs it without copying its damage into the
catalog."""

from __future__ import annotations

from pathlib import Path

import attrs
import orjson

from eventstore import ChatMessage, SessionStore
from eventstore.events import MessageAppended, SessionEvent, SessionRestored

from test_import_integrity import START, sealed


def _without_creation_time(restored_version: int) -> SessionRestored:
    with attrs.validators.disabled():
        return SessionRestored(restored_version, True, (), "restored", None, None)


def test_a_damaged_snapshot_is_not_where_verify_and_a_rebuild_take_the_creation_time(tmp_path: Path) -> None:
    path = tmp_path / "store"
    created = START.replace(second=1)  # the time ``sealed`` records the first event at
    timeline: list[tuple[str, SessionEvent]] = [
        *[("k", MessageAppended(ChatMessage.user(text))) for text in ("a", "b", "c")], ("k", _without_creation_time(2))]
    with attrs.validators.disabled(), SessionStore(path, snapshot_every=2) as store:
        store.replicate(sealed(timeline))
    with SessionStore(path, snapshot_every=2) as store:
        def damage(txn):
            stream_id = store._log.stream_id(txn, "k")
            assert stream_id is not None
            record = orjson.loads(store._snapshots.get(txn, stream_id, 2) or b"")
            head = record["head"]
            store._snapshots.put(txn, stream_id, 2, orjson.dumps(
                {**record, "head": {**head, "created_at": head["created_at"] + 7_000_000}}))

        store._write(damage)
        store._decoded.clear()
        report = store.verify()
        assert ["snapshot of 'k' at version 2: differs from a fresh fold of the log"] == report.problems
        store.rebuild_projections()
        assert store.verify().ok
        metadata = store.get_session_metadata("k")
        assert metadata is not None and created == metadata.created_at == store.session_at("k").metadata.created_at
