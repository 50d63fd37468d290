"""Redaction that forgets: after ``redact`` and ``vacuum`` no byte sequence of the redacted text is left in any file
of the store's directory (the log, the snapshots, every read model, the term dictionary, free pages)."""

from __future__ import annotations

from pathlib import Path

import pytest

from eventstore import REDACTED, ChatMessage, SessionQuery, SessionStore
from eventstore.storage import WriteTransaction
from eventstore.storage.lmdb import Environment
from projections.search.tokenizer import token_spans

from conftest import FakeClock

#: Words the redacted session shares with another one: they stay, and stay findable.
SHARED = ("harbour", "lantern")
#: The redacted session's messages: ASCII words in mixed case (stored as written in the log, folded in the
#: index), a one-character word (the shortest token the tokenizer keeps; four UTF-8 bytes), multi-byte words,
#: a word whose folded form differs (Crème: creme) and short words that only the whole-text search can look for.
SECRET_TEXTS = (
    "Meet me at the Harbour: passphrase Zanzibarquokka \U0001d537 Straße Crème 秘密鍵",
    "the lantern code is Vexillology and Quixotry",
    "typing",
)
UPDATED = "scratch that, it is Pumpernickel Obsequious"
#: Byte sequences of one to three bytes occur by chance in any binary file (hashes, ids, page headers),
#: so single tokens are looked for from four bytes on; shorter words are covered by the whole texts.
MIN_NEEDLE_BYTES = 4


def needles() -> set[bytes]:
    """Every sequence the redaction must remove: each message's whole text, and each of its tokens as
    written and as the index folds it (the UTF-8 of each)."""
    found: set[bytes] = set()
    for text in (*SECRET_TEXTS[:-1], UPDATED):
        found.add(text.encode())
        for start, end, term in token_spans(text):
            if term not in SHARED:
                found.update({text[start:end].encode(), term.encode()})
    return {needle for needle in found if len(needle) >= MIN_NEEDLE_BYTES}


def files_holding(directory: Path, needle: bytes) -> list[str]:
    """The files under ``directory`` whose raw bytes contain ``needle``."""
    return sorted(str(path.relative_to(directory)) for path in directory.rglob("*")
                  if path.is_file() and needle in path.read_bytes())


def leaks(directory: Path) -> dict[bytes, list[str]]:
    return {needle: files for needle in sorted(needles()) if (files := files_holding(directory, needle))}


def sessions(store: SessionStore, keyword: str) -> list[str]:
    return [metadata.key for metadata in store.search(SessionQuery(keyword))]


def write_history(store: SessionStore, clock: FakeClock) -> None:
    """The secret session (snapshots, an update, a restore, an idempotent append), sessions sharing two of its
    words, and filler."""
    store.append("other", ChatMessage.user("the harbour lantern is lit"))
    for text in SECRET_TEXTS:
        clock.advance(seconds=1)
        store.append("secret", ChatMessage.user(text), idempotency_key=f"append {text[:8]}")
    store.update_last("secret", ChatMessage.assistant(UPDATED))
    version = len(store.history("secret"))
    store.append("secret", ChatMessage.user("later"))
    store.restore("secret", version=version)
    store.compact("secret")
    for number in range(30):
        store.append(f"filler{number % 3}", ChatMessage.user(f"filler message {number} about the weather"))
    assert ["other", "secret"] == sorted(sessions(store, "harbour"))  # the index holds the words now


@pytest.fixture
def history(tmp_path: Path) -> Path:
    clock = FakeClock()
    with SessionStore(tmp_path, clock=clock, snapshot_every=3) as store:
        write_history(store, clock)
        assert store.stats().snapshots >= 2
    return tmp_path


class TestRedactedTextLeavesEveryFile:
    def test_the_needles_are_there_before_the_redaction(self, history: Path) -> None:
        """Every needle is in data.mdb before the redaction (so that its absence later means something)."""
        assert {needle: ["data.mdb"] for needle in sorted(needles())} == leaks(history)

    def test_a_popped_message_leaves_with_the_redaction(self, tmp_path: Path) -> None:
        """A message that ``pop_last`` removed with an idempotency key is not kept in the key's record."""
        with SessionStore(tmp_path) as store:
            store.append_many("secret", [ChatMessage.user("first"),
                                         ChatMessage.user(SECRET_TEXTS[0], {"note": SECRET_TEXTS[1]})])
            store.pop_last("secret", idempotency_key="pop")
            store.redact("secret", "user request")
            store.vacuum()
        assert {} == leaks(tmp_path)

    def test_redact_then_vacuum(self, history: Path) -> None:
        """After redact the index and every live record have forgotten the text, but freed pages may still
        hold it; after vacuum no file holds any of it, shared words are still found, and the store verifies."""
        with SessionStore(history) as store:
            store.redact("secret", "user request")
            assert ([], []) == (sessions(store, "zanzibarquokka"), sessions(store, "redacted"))
            store.catch_up()
        still_there = leaks(history)
        assert still_there and all(files == ["data.mdb"] for files in still_there.values())  # freed pages
        with SessionStore(history) as store:
            store.vacuum()
            assert {} == leaks(history)
            assert (["other"], ["other"]) == (sessions(store, "harbour"), sessions(store, "lantern"))
            assert ([], []) == (sessions(store, "zanzibarquokka"), store.search_messages(REDACTED))
            assert (True, []) == (store.verify().ok, store.verify().problems)


def test_vacuum_keeps_no_stale_bytes_of_live_pages(tmp_path: Path) -> None:
    """A value overwritten in one transaction by a shorter one leaves the old bytes in the unused tail of its
    live overflow pages, which LMDB's compacting copy carries over; vacuum writes only the live key-values."""
    environment = Environment.acquire(tmp_path)
    try:
        space = environment.space("test.values")
        stale, kept = b"a" * 9000 + b"StaleSecret" + b"b" * 300, b"c" * 9000

        def overwrite(txn: WriteTransaction) -> None:
            txn.put(space, b"key", stale)
            txn.put(space, b"key", kept)

        environment.write(overwrite)
        assert ["data.mdb"] == files_holding(tmp_path, b"StaleSecret")
        environment.vacuum(reopen=lambda: None)
        space = environment.space("test.values")
        with environment.read() as txn:
            assert (kept, []) == (txn.get(space, b"key"), files_holding(tmp_path, b"StaleSecret"))
    finally:
        environment.release()


def test_verify_reports_snapshot_blobs_no_snapshot_names(tmp_path: Path) -> None:
    """A snapshot blob that no snapshot names (message text nothing else would show) is reported, without its
    text; rebuilding the messages projection drops it."""
    with SessionStore(tmp_path, snapshot_every=2) as store:
        store.append_many("k", [ChatMessage.user("one"), ChatMessage.user("two")])
        assert (1, True) == (store.stats().snapshots, store.verify().ok)
        stream_id = 1
        store._write(lambda txn: store._snapshots.put_blob(txn, stream_id, b"Leftover text"))
        problems = store.verify().problems
        assert 1 == len(problems) and problems[0].startswith("1 snapshot blobs belong to no snapshot"), problems
        assert "redacted" in problems[0] and "vacuum" in problems[0] and "Leftover" not in problems[0]
        store.rebuild_projections(["messages"])
        assert (0, True) == (store.stats().snapshots, store.verify().ok)
