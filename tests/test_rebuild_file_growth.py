"""A rebuild straight after another reuses the pages that rebuild freed, so rebuilding again does not grow the file.

LMDB reuses the pages a commit freed only once a later commit exists: a rebuild's rewrite that came straight after
another large commit could not reuse what that commit freed, and took new pages at the end of the file instead.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from eventstore import ChatMessage, SessionStore, StoreReadOnly

SESSIONS = 300


@pytest.fixture
def path(tmp_path: Path) -> Path:
    with SessionStore(tmp_path / "store") as store:
        for n in range(SESSIONS):
            store.append_many(f"s{n}", [ChatMessage.user(f"message {m} of session {n} about topic{m * n % 97}")
                                        for m in range(12)])
        store.catch_up()
    return tmp_path / "store"


@pytest.mark.parametrize("names", [["catalog"], ["messages"], ["search"], None])
def test_a_second_rebuild_in_a_row_does_not_grow_the_file(path: Path, names: list[str] | None) -> None:
    with SessionStore(path) as store:
        store.rebuild_projections(names)
        after_first = store.stats().bytes
        store.rebuild_projections(names)
        assert store.stats().bytes <= after_first


def test_the_rebuild_leaves_no_trace_of_its_release(path: Path) -> None:
    """What the rebuild commits to release the freed pages is taken out again in the same commit."""
    with SessionStore(path) as store:
        before = store.stats().checkpoints
        store.rebuild_projections()
        assert store.stats().checkpoints.keys() == before.keys()
        assert store.verify().ok


@pytest.mark.parametrize("names", [["catalog"], ["search"], None])
def test_a_read_only_store_beside_a_writable_one_refuses_a_rebuild_having_committed_nothing(
        path: Path, names: list[str] | None) -> None:
    """The read-only store object shares the process's writable environment, so the refusal is its own."""
    with SessionStore(path) as writable, SessionStore(path, readonly=True) as store:
        before = writable._environment.last_commit()
        with pytest.raises(StoreReadOnly):
            store.rebuild_projections(names)
        assert writable._environment.last_commit() == before
