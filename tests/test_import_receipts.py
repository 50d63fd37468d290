"""An import's receipt tells its source apart: given without the source's SHA-256, the digest of the sessions given
stands for it, so other sessions under a name already imported are a changed source, never silently dropped."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from eventstore import ChatMessage, SessionStore, SourceChanged
from eventstore._bookkeeping import ImportReceipts
from eventstore._values import ImportReceipt
from eventstore.events import MessageAppended, SessionEvent, SessionRenamed
from eventstore.services.replication import sessions_digest
from eventstore.storage import MemoryStorage

MOMENT = datetime(2026, 1, 1, tzinfo=UTC)


def said(text: str, at: datetime = MOMENT) -> list[tuple[datetime, SessionEvent]]:
    return [(at, MessageAppended(ChatMessage.user(text)))]


def test_other_sessions_under_a_source_name_already_imported_are_a_changed_source(tmp_path: Path) -> None:
    with SessionStore(tmp_path / "store") as store:
        store.import_sessions({"a": said("first")}, source="export.json")
        with pytest.raises(SourceChanged, match=r"export\.json changed since it was imported"):
            store.import_sessions({"b": said("second")}, source="export.json")
        assert store.list_sessions() == ["a"]
        assert [receipt.sessions for receipt in store.import_receipts()] == [1]


def test_the_same_sessions_again_in_another_order_are_already_imported(tmp_path: Path) -> None:
    sessions = {"a": said("one"), "b": said("two")}
    with SessionStore(tmp_path / "store") as store:
        first = store.import_sessions(sessions, source="export.json")
        before = list(store.events())
        again = store.import_sessions(dict(reversed(sessions.items())), source="export.json")
        assert (first.already_imported, again.already_imported) == (False, True)
        assert list(store.events()) == before


@pytest.mark.parametrize("other", [
    {"a": said("one", MOMENT + timedelta(microseconds=1))},  # another time
    {"a": said("one!")},  # another message
    {"b": said("one")},  # another key
    {"a": said("one") + said("one")},  # one more event
    {"a": [(MOMENT, SessionRenamed("one"))]},  # another kind of event
])
def test_the_digest_tells_what_sessions_hold_apart(other: dict[str, list[tuple[datetime, SessionEvent]]]) -> None:
    assert sessions_digest(other) != sessions_digest({"a": said("one")})
    assert sessions_digest({"a": said("one")}) == sessions_digest({"a": said("one")})


def test_a_given_sha256_is_the_receipts(tmp_path: Path) -> None:
    with SessionStore(tmp_path / "store") as store:
        store.import_sessions({"a": said("first")}, source="file", size=10, sha256="ab" * 32)
        assert [(r.size, r.sha256) for r in store.import_receipts()] == [(10, "ab" * 32)]
        # The same file's digest with other sessions: the caller vouches that the file is the same.
        assert store.import_sessions({"b": said("second")}, source="file", size=10, sha256="ab" * 32).already_imported


def test_a_receipt_written_without_a_digest_lets_the_import_go_on_skipping_the_keys_it_holds() -> None:
    """Before imports derived a digest, a receipt given none had an empty one: it tells nothing apart, so the keys
    decide, as they do without a receipt."""
    storage = MemoryStorage()
    with SessionStore.on_storage(storage) as store:
        store.import_sessions({"a": said("first")})
        receipts = ImportReceipts(storage)  # what an earlier version wrote
        storage.write(lambda txn: receipts.put(txn, ImportReceipt("old.json", 0, "", 1, 1)))
        outcome = store.import_sessions({"a": said("first"), "b": said("second")}, source="old.json")
        assert (outcome.already_imported, outcome.skipped, outcome.receipt.sessions) == (False, ("a",), 1)
        assert sorted(store.list_sessions()) == ["a", "b"]
