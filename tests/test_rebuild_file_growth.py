"""A rebuild straight after another reuses the pages that rebuild freed, so rebuilding again does not grow the file.

LMDB reuses the pages a commit freed only once a later commit exists: a rebuild's rewrite that came straight after
another large commit could not reuse what that commit freed, and took new pages at the end of the file instead.
"""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from eventstore import ChatMessage, SessionStore, StoreReadOnly
from projections.catalog import Catalog
from projections.messages import MessageLists
from projections.search.index import SearchIndex

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


def _copies(path: Path, *names: str) -> list[Path]:
    return [Path(shutil.copytree(path, path.parent / name)) for name in names]


def _bytes_once_opened(path: Path) -> int:
    with SessionStore(path) as store:
        return store.stats().bytes


def _released(path: Path) -> None:
    """Commit the write that changes nothing, so that the next write reuses the pages the last one freed."""
    with SessionStore(path) as store:
        store._environment.release_freed_pages()


def test_a_rebuild_on_open_reuses_the_pages_the_last_write_before_it_freed(
        path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """The last write before the open (a rebuild of the search index) freed the old index's pages: the catalog and
    message lists, rebuilt on open for a code version change, reuse them as after a write that changes nothing."""
    with SessionStore(path) as store:
        store.rebuild_projections(["search"])
    straight, released = _copies(path, "straight", "released")
    _released(released)
    monkeypatch.setattr(Catalog, "code_version", Catalog.code_version + 1)
    monkeypatch.setattr(MessageLists, "code_version", MessageLists.code_version + 1)
    assert _bytes_once_opened(straight) <= _bytes_once_opened(released)


def test_a_search_index_rebuilt_on_open_reuses_the_pages_the_rebuild_before_it_freed(
        path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Every read model's code changed: the search index, rebuilt after the catalog and message lists, reuses the
    pages their rebuild freed, as when it is rebuilt on an open of its own after a write that changes nothing."""
    together, apart = _copies(path, "together", "apart")
    monkeypatch.setattr(Catalog, "code_version", Catalog.code_version + 1)
    monkeypatch.setattr(MessageLists, "code_version", MessageLists.code_version + 1)
    _bytes_once_opened(apart)
    _released(apart)
    monkeypatch.setattr(SearchIndex, "code_version", SearchIndex.code_version + 1)
    assert _bytes_once_opened(together) <= _bytes_once_opened(apart)
