"""A session's count of indexed messages (``search.sessions``) decides where its next postings go: the chunk it
fills, or the new chunk it begins. Damaged, it is refused with ``StoreCorrupted`` before anything is written. A
count too large, and a multiple of the chunk size, began a chunk far past the others (searches then failed); one too
small replaced a stored chunk with the new postings, and searches no longer found the messages it held; one too small
but not a multiple filled a full chunk past its size; a removal took out a message that was not the last."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import lmdb
import pytest

from eventstore import ChatMessage, SessionStore, StoreCorrupted
from projections.search.formats.chunks import CHUNK_MESSAGES
from projections.search.formats.keys import id_key, session_of_value, session_value
from projections.search.reader import IndexReader

from _damage import change_value

#: Session "a" holds two full chunks of postings and two messages in a third.
MESSAGES = 2 * CHUNK_MESSAGES + 2
#: Damaged counts of session "a": too small or too large, at a chunk boundary or not, near or far.
COUNTS = [
    0,
    CHUNK_MESSAGES,
    2 * CHUNK_MESSAGES,
    MESSAGES - 1,
    MESSAGES + 1,
    3 * CHUNK_MESSAGES,
    10 * CHUNK_MESSAGES,
    CHUNK_MESSAGES + 2,
    10 * CHUNK_MESSAGES + 2,
]

COMMANDS: dict[str, Callable[[SessionStore], object]] = {
    "append": lambda store: store.append("a", ChatMessage.user("fresh")),
    "append_many": lambda store: store.append_many("a", [ChatMessage.user(f"fresh{n}") for n in range(70)]),
    "remove_last": lambda store: store.remove_last("a"),
    "clear_messages": lambda store: store.clear_messages("a"),
    "replace_messages": lambda store: store.replace_messages("a", [ChatMessage.user("summary")]),
}


def _word(number: int) -> str:
    return f"word{number:03d}"


def _store(path: Path) -> None:
    with SessionStore(path, durable=False) as store:
        store.append_many("a", [ChatMessage.user(f"{_word(number)} common") for number in range(MESSAGES)])
        store.append_many("b", [ChatMessage.user("common other")])
        store.catch_up()


def _plant(path: Path, count: int) -> None:
    """Session "a"'s (stream 1) count of indexed messages replaced by ``count``."""
    change_value(path, b"search.sessions", id_key(1),
                 lambda value: session_value(count, session_of_value(id_key(1), value)[1]))


def _search_spaces(path: Path) -> dict[bytes, list[tuple[bytes, bytes]]]:
    """Every entry of the search index's databases."""
    environment = lmdb.open(str(path), max_dbs=64, readonly=True, lock=False)
    try:
        with environment.begin() as txn:
            names = [bytes(key) for key, _ in txn.cursor() if bytes(key).startswith(b"search.")]
            return {
                name: [
                    (bytes(key), bytes(value))
                    for key, value in txn.cursor(db=environment.open_db(name, txn=txn, create=False))
                ]
                for name in names
            }
    finally:
        environment.close()


def test_the_store_has_the_chunks_the_damaged_counts_are_measured_against(tmp_path: Path) -> None:
    _store(tmp_path)
    docs = [key for key, _ in _search_spaces(tmp_path)[b"search.docs"]]
    assert docs[:3] == [bytes.fromhex(f"00000001{number:08x}") for number in range(3)]
    assert MESSAGES not in COUNTS


def _assert_catch_up_refused_writing_nothing(path: Path, command: str) -> None:
    """Run ``command`` on the damaged store; its catch-up must raise and leave every search database as it was."""
    before = _search_spaces(path)
    with SessionStore(path, durable=False) as store:
        COMMANDS[command](store)
        with pytest.raises(StoreCorrupted, match="search index is damaged"):
            store.catch_up()
    assert _search_spaces(path) == before


@pytest.mark.parametrize("count", COUNTS)
@pytest.mark.parametrize("command", sorted(COMMANDS))
def test_a_catch_up_after_a_command_on_a_session_with_a_damaged_count_writes_nothing(
    tmp_path: Path, command: str, count: int
) -> None:
    _store(tmp_path)
    _plant(tmp_path, count)
    _assert_catch_up_refused_writing_nothing(tmp_path, command)
    with SessionStore(tmp_path, durable=False) as store:
        assert "search" in store.verify().damaged
        store.rebuild_projections(["search"])
        assert store.verify().ok


@pytest.mark.parametrize("count", COUNTS)
def test_a_query_through_an_append_to_a_session_with_a_damaged_count_is_refused(tmp_path: Path, count: int) -> None:
    """A query folds the few events the index lacks in memory: the same appends, refused the same way (a count
    too small at a chunk boundary answered without the messages of the chunk it replaced)."""
    _store(tmp_path)
    _plant(tmp_path, count)
    with SessionStore(tmp_path, durable=False) as store:
        store.append("a", ChatMessage.user("fresh"))
        assert store.search_index_lag() == 1
        with pytest.raises(StoreCorrupted, match="search index is damaged"):
            store.search_messages(_word(70))


@pytest.mark.parametrize("count", [CHUNK_MESSAGES, CHUNK_MESSAGES + 2, 2 * CHUNK_MESSAGES])
def test_a_query_reading_the_chunks_of_a_session_with_a_damaged_count_through_other_events_is_refused(
    tmp_path: Path, count: int
) -> None:
    """Events of another session that the index lacks make a query read every session's chunks through them, as
    their count says: a count too small answered without the messages past it."""
    _store(tmp_path)
    _plant(tmp_path, count)
    with SessionStore(tmp_path, durable=False) as store:
        store.append("b", ChatMessage.user("fresh"))
        with pytest.raises(StoreCorrupted, match="search index is damaged"):
            store.search_messages(_word(MESSAGES - 1))


def _lose_record(path: Path) -> None:
    """Session "a"'s (stream 1) record of indexed messages deleted, its chunks of postings left."""
    environment = lmdb.open(str(path), max_dbs=64)
    try:
        with environment.begin(write=True) as txn:
            assert txn.delete(id_key(1), db=environment.open_db(b"search.sessions", txn=txn, create=False))
    finally:
        environment.close()


@pytest.mark.parametrize("command", sorted(COMMANDS))
def test_a_catch_up_after_a_command_on_a_session_whose_record_is_lost_writes_nothing(
    tmp_path: Path, command: str
) -> None:
    """A lost record reads as no messages: the session's next postings went to a new first chunk, over the one
    stored, and its other chunks stayed behind the count."""
    _store(tmp_path)
    _lose_record(tmp_path)
    _assert_catch_up_refused_writing_nothing(tmp_path, command)


def test_a_query_through_an_append_to_a_session_whose_record_is_lost_is_refused(tmp_path: Path) -> None:
    _store(tmp_path)
    _lose_record(tmp_path)
    with SessionStore(tmp_path, durable=False) as store:
        store.append("a", ChatMessage.user("fresh"))
        with pytest.raises(StoreCorrupted, match="search index is damaged"):
            store.search_messages("fresh")


def test_the_sessions_after_a_rebuild_are_found_again(tmp_path: Path) -> None:
    """What the refusals above keep: the rebuilt index finds every message, the one appended too."""
    _store(tmp_path)
    _plant(tmp_path, CHUNK_MESSAGES)
    with SessionStore(tmp_path, durable=False) as store:
        store.append("a", ChatMessage.user("fresh"))
        with pytest.raises(StoreCorrupted):
            store.catch_up()
        store.rebuild_projections(["search"])
        assert [hit.index for hit in store.search_messages(_word(70))] == [70]
        assert [hit.index for hit in store.search_messages("fresh")] == [MESSAGES]


def _count_lookups(monkeypatch: pytest.MonkeyPatch) -> list[tuple[str, int]]:
    """Each read of a session's stored chunks of postings from now on: what read it, and the session."""
    looks: list[tuple[str, int]] = []
    for name in ("chunk", "chunks", "last_chunk"):
        real = getattr(IndexReader, name)

        def spy(
            self: IndexReader, sid: int, *args: int, real: Callable[..., object] = real, name: str = name
        ) -> object:
            looks.append((name, sid))
            return real(self, sid, *args)

        monkeypatch.setattr(IndexReader, name, spy)
    return looks


@pytest.mark.parametrize("messages", [1, CHUNK_MESSAGES - 1, CHUNK_MESSAGES, 3 * CHUNK_MESSAGES + 5])
def test_a_session_new_to_the_index_is_checked_by_no_read_of_its_chunks(
    tmp_path: Path, messages: int, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The check costs a catch-up of new sessions nothing: no session record, no chunk to look for."""
    _store(tmp_path)
    looks = _count_lookups(monkeypatch)
    with SessionStore(tmp_path, durable=False) as store:
        store.append_many("c", [ChatMessage.user(f"novel{number:03d}") for number in range(messages)])
        store.catch_up()
        assert looks == []
        assert [hit.index for hit in store.search_messages(f"novel{messages - 1:03d}")] == [messages - 1]


@pytest.mark.parametrize("messages", [1, CHUNK_MESSAGES - 2, CHUNK_MESSAGES - 1, 3 * CHUNK_MESSAGES])
@pytest.mark.parametrize("before", [0, CHUNK_MESSAGES - 2])
def test_appends_to_a_stored_session_read_its_chunks_once(
    tmp_path: Path, messages: int, before: int, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The check of an indexed session's count is one lookup of its last chunk, which the appends then extend:
    whether the count falls inside a chunk or at a chunk boundary (``before`` messages first bring it there), and
    however many boundaries the appends cross."""
    _store(tmp_path)
    with SessionStore(tmp_path, durable=False) as store:
        store.append_many("a", [ChatMessage.user("filler") for _ in range(before)])
        store.catch_up()
        looks = _count_lookups(monkeypatch)
        store.append_many("a", [ChatMessage.user(f"more {number}") for number in range(messages)])
        store.catch_up()
        assert len(looks) == 1 and looks[0][1] == 1
        monkeypatch.undo()
        assert store.verify().ok
