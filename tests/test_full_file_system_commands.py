"""Commands on a store whose file system fills up: each one that cannot commit raises ``StoreFull`` (it was a bare
``EventStoreError`` quoting LMDB's "Input/output error", the way LMDB reports a write cut short), nothing
acknowledged is lost, and the store takes commands again once there is room."""

from __future__ import annotations

import contextlib
from pathlib import Path

from eventstore import ChatMessage, EventStoreError, SessionStore, StoreFull

from test_damage import tiny_file_system  # noqa: F401  (the fixture: a 1 MiB tmpfs)


def test_commands_on_a_full_file_system_raise_store_full(tiny_file_system: Path) -> None:  # noqa: F811
    filler = tiny_file_system / "filler"
    path = tiny_file_system / "store"
    acknowledged: dict[str, list[str]] = {}
    refused: list[EventStoreError] = []
    with SessionStore(path) as store:
        with open(filler, "wb") as file, contextlib.suppress(OSError):  # a few dozen appends fill the rest
            file.write(b"\x01" * (600 << 10))
        for number in range(400):
            key, text = f"k{number % 7}", " ".join(f"w{number}x{word}" for word in range(150))
            try:
                store.append(key, ChatMessage.user(text))
            except EventStoreError as exc:
                refused.append(exc)
                continue
            acknowledged.setdefault(key, []).append(text)
        assert refused, "the file system never filled up"
        assert all(isinstance(exc, StoreFull) for exc in refused), {type(exc).__name__: str(exc) for exc in refused}
        for call in (store.catch_up, lambda: store.redact("k1", "asked to forget"), store.vacuum):
            try:
                call()
            except EventStoreError as exc:
                assert isinstance(exc, StoreFull), exc
        filler.unlink()
        store.append("after", ChatMessage.user("room again"))
        for key, texts in acknowledged.items():
            if key != "k1":
                assert [message.content for message in store.load(key)] == texts
        assert store.load("after") == [ChatMessage.user("room again")]
        assert store.verify().ok
