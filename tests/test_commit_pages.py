"""The pages a commit writes: nothing it leaves unchanged is written again."""

from __future__ import annotations

import os
from pathlib import Path

from benchmarks.commit_pages import COMMANDS, measure, page_owners, written_pages
from eventstore import ChatMessage, SessionStore


def _large(tag: str) -> ChatMessage:
    """A message too large to share its chunk with the next one (its payload does not compress)."""
    return ChatMessage("checkpoint", tag, payload={"blob": os.urandom(9_000).hex()})


def _pages_of_append(store: SessionStore, path: Path, key: str, message: ChatMessage) -> dict[str, int]:
    before = (path / "data.mdb").read_bytes()
    store.append(key, message)
    return dict(written_pages(before, (path / "data.mdb").read_bytes()))


def test_a_message_that_opens_a_new_chunk_leaves_the_full_chunk_unwritten(tmp_path: Path) -> None:
    """Appending to a session whose last chunk is full writes the new chunk alone: as many pages of the message
    read model as the same append to a new session."""
    path = tmp_path / "store"
    with SessionStore(path) as store:
        store.append("full", _large("first"))
        after_full = _pages_of_append(store, path, "full", _large("second"))
        after_none = _pages_of_append(store, path, "new", _large("first of its session"))
        assert [m.content for m in store.load("full")] == ["first", "second"]
    assert after_full["messages.chunks"] == after_none["messages.chunks"], (after_full, after_none)


def test_every_page_a_commit_writes_belongs_to_a_database(tmp_path: Path) -> None:
    """The page walk names every page a commit writes (a page it cannot place would hide a cost)."""
    results = measure(tmp_path, sessions=50, samples=3)
    assert set(results) == set(COMMANDS)
    for kind, counts in results.items():
        assert "unreachable" not in counts, kind
        assert counts["meta"] == 1 and counts["log.events"] >= 1 and counts["messages.chunks"] >= 1, (kind, counts)


def test_page_owners_name_the_meta_pages_and_every_named_database(tmp_path: Path) -> None:
    with SessionStore(tmp_path / "store") as store:
        store.append("a", ChatMessage.user("hello"))
        owners = page_owners((tmp_path / "store" / "data.mdb").read_bytes())
    assert owners[0] == owners[1] == "meta"
    assert {"main", "log.events", "log.streams", "catalog.sessions", "messages.chunks"} <= set(owners.values())
