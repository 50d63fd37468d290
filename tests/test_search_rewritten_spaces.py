"""The search writer's whole-space rewrite (``writer._rewritten``) through the store: batches that change or delete
nearly every entry of the index's spaces, on LMDB and in memory, leave the searches a rebuild from the log gives."""

from __future__ import annotations

import random
from pathlib import Path

import pytest

from eventstore import ChatMessage, SessionStore
from eventstore.storage import MemoryStorage, Space, WriteTransaction
from projections.search import writer

WORDS = ("alpha", "beta", "gamma", "delta", "epsilon", "zeta")


def _searches(store: SessionStore) -> dict[str, list[tuple[str, int, str]]]:
    return {word: sorted((hit.session_key, hit.index, hit.message.content)
                         for hit in store.search_messages(word, limit=1000)) for word in WORDS}


@pytest.mark.parametrize("engine", ["lmdb", "memory"])
def test_batches_rewriting_whole_spaces_search_as_a_rebuild(tmp_path: Path, engine: str,
                                                            monkeypatch: pytest.MonkeyPatch) -> None:
    rewrites: list[str] = []
    rewritten = writer._rewritten

    def noted(txn: WriteTransaction, space: Space, items: list[tuple[bytes, bytes | None]]) -> None:
        rewrites.append(space.name)
        rewritten(txn, space, items)

    monkeypatch.setattr(writer, "_rewritten", noted)
    store = SessionStore(tmp_path / "store", durable=False) if engine == "lmdb" else \
        SessionStore.on_storage(MemoryStorage())
    rng = random.Random(19)
    keys = [f"s{number}" for number in range(6)]
    with store:
        for key in keys:
            store.append_many(key, [ChatMessage("user", " ".join(rng.choices(WORDS, k=3))) for _ in range(4)])
        store.catch_up()
        for key in keys:  # every session changes: every sessions and docs entry, most terms' summaries
            store.update_last(key, ChatMessage("user", " ".join(rng.choices(WORDS, k=4))))
        store.catch_up()
        for key in keys[:-1]:
            store.delete_session(key)
        store.catch_up()
        caught_up = _searches(store)
        store.rebuild_projections()
        assert caught_up == _searches(store)
        store.delete_session(keys[-1])  # every entry goes
        store.catch_up()
        assert not any(_searches(store).values())
        for key in keys:
            store.restore(key, version=5)
        store.catch_up()
        caught_up = _searches(store)
        store.rebuild_projections()
        assert caught_up == _searches(store)
        assert store.verify().ok
    assert {"search.sessions", "search.docs"} <= set(rewrites)
