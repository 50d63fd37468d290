"""``SessionStore.stats(databases=True)``: where the bytes go, per named database, on each engine."""

from __future__ import annotations

from pathlib import Path

import pytest

from eventstore import ChatMessage, InvalidArgument, SessionStore
from eventstore.storage import StorageUsage

from conftest import ENGINES, lmdb_storage, open_store


def _spaces(usage: StorageUsage | None) -> dict[str, tuple[int, int, int]]:
    assert usage is not None
    return {space.name: (space.entries, space.key_bytes, space.value_bytes) for space in usage.spaces}


def _fill(store: SessionStore) -> None:
    store.append_many("alpha", [ChatMessage("user", "x" * 3000), ChatMessage("assistant", "hello")])
    store.append("beta", ChatMessage("user", "short"))


@pytest.mark.parametrize("engine", ENGINES)
def test_counts_each_space_as_the_data_stands(engine: str, tmp_path: Path) -> None:
    with open_store(engine, tmp_path / "store") as store:
        _fill(store)
        found = store.stats(databases=True)
        spaces = _spaces(found.usage)
        assert spaces["log.events"][:2] == (3, 3 * 8)
        assert spaces["log.stream_keys"] == (2, 2 * 8, len("alpha") + len("beta"))
        # The messages of both sessions are in the read model: at least their contents' bytes.
        assert spaces["messages.chunks"][0] == 2 and spaces["messages.chunks"][2] >= 3000 + 5 + 5
        assert store.stats().usage is None  # only when asked: it visits every key and value


def test_engines_agree_on_entries_and_key_bytes(tmp_path: Path) -> None:
    found = {}
    for engine in ENGINES:
        with open_store(engine, tmp_path / engine) as store:
            _fill(store)
            found[engine] = {name: counts[:2] for name, counts in _spaces(store.stats(databases=True).usage).items()
                             if counts[0]}
    assert found["lmdb"] == found["memory"]


def test_pages_and_free_pages_of_the_file(tmp_path: Path) -> None:
    with SessionStore(tmp_path / "store") as store:
        _fill(store)
        usage = store.stats(databases=True).usage
        assert usage is not None
        pages = {space.name: space for space in usage.spaces}
        assert pages["messages.chunks"].overflow_pages >= 1  # a 3,000-byte chunk does not fit a leaf node
        assert usage.page_size == lmdb_storage(store)._env.stat()["psize"]
        held = sum(space.pages for space in usage.spaces)
        assert held + usage.free_pages <= usage.file_pages
        store.delete_session("alpha")  # its chunk's overflow page is freed, and stays in the file
        store.append("gamma", ChatMessage("user", "later"))
        after = store.stats(databases=True).usage
        assert after is not None and after.free_pages >= 1


def test_databases_must_be_a_bool(tmp_path: Path) -> None:
    with SessionStore(tmp_path / "store") as store, pytest.raises(InvalidArgument):
        store.stats(databases="yes")  # type: ignore[arg-type]
