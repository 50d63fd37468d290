"""Search index keys and values of fixed layouts, stored at another length (damage): every read of them through the
public API raises ``StoreCorrupted`` naming the database, the key and its length, and the length that belongs (they
raised ``struct.error``'s "unpack requires a buffer of 8 bytes", named only as damage to the search read model), and
``verify`` reports the same."""

from __future__ import annotations

import re
from collections.abc import Callable
from pathlib import Path

import pytest

from eventstore import ChatMessage, SessionQuery, SessionStore, StoreCorrupted
from projections.search.formats.keys import META_MESSAGES, META_NEXT_TID, chunk_key, id_key

from _damage import change_value, end_key, move_value

Damage = Callable[[Path], None]


def _store(path: Path) -> None:
    with SessionStore(path, durable=False) as store:
        store.append_many("a", [ChatMessage.user("alpha beta"), ChatMessage.user("beta gamma")])
        store.append_many("b", [ChatMessage.user("alpha"), ChatMessage.user("gamma")])
        store.catch_up()


def _rekeyed(database: bytes, key: bytes, new_key: bytes) -> Damage:
    """The value at ``key`` of ``database`` moved to ``new_key``."""
    return lambda path: move_value(path, database, key, new_key)


def _cut(database: bytes, key: bytes, length: int) -> Damage:
    """The value at ``key`` of ``database`` cut to ``length`` bytes."""
    return lambda path: change_value(path, database, key, lambda value: value[:length])


def _last_key(path: Path, database: bytes) -> bytes:
    return end_key(path, database, last=True)


def _first_level_cut(path: Path) -> None:
    """The first ``search.levels`` key (a block, then a level: 5 bytes) cut to 4."""
    key = end_key(path, b"search.levels", last=False)
    move_value(path, b"search.levels", key, key[:4])


def _append_then_catch_up(store: SessionStore) -> object:
    store.append("a", ChatMessage.user("delta"))
    return store.catch_up()


#: Session "b"'s one chunk of postings (session 2, chunk 0: 8 bytes) under a key of 7 or 9 bytes.
SHORT_CHUNK_KEY = _rekeyed(b"search.docs", chunk_key(2, 0), chunk_key(2, 0)[:7])
LONG_CHUNK_KEY = _rekeyed(b"search.docs", chunk_key(2, 0), chunk_key(2, 0) + b"\x00")

#: (damage, what the message names, the reads besides ``verify`` that meet it)
CASES: dict[str, tuple[Damage, str, dict[str, Callable[[SessionStore], object]]]] = {
    "a search.docs key cut short": (
        SHORT_CHUNK_KEY, r"search\.docs key 00000002000000 is damaged \(7 bytes where 8 belong\)", {
            "catch_up": lambda store: (store.append("b", ChatMessage.user("delta")), store.catch_up()),
            "search_messages": lambda store: (store.append("b", ChatMessage.user("delta")),
                                              store.search_messages("alpha")),
        }),
    "a search.docs key grown": (
        LONG_CHUNK_KEY, r"search\.docs key 000000020000000000 is damaged \(9 bytes where 8 belong\)", {
            "catch_up": lambda store: (store.append("b", ChatMessage.user("delta")), store.catch_up()),
        }),
    "a search.sessions value cut short": (
        _cut(b"search.sessions", id_key(1), 11),
        r"search\.sessions value at key 00000001 is damaged \(11 bytes where 12 belong\)", {
            "search_messages": lambda store: store.search_messages("alpha"),
            "catch_up": _append_then_catch_up,
        }),
    "a search.sessions key grown": (
        _rekeyed(b"search.sessions", id_key(2), id_key(2) + b"\x00"),
        r"search\.sessions key 0000000200 is damaged \(5 bytes where 4 belong\)", {}),
    "the search.meta count of messages cut short": (
        _cut(b"search.meta", META_MESSAGES, 7),
        r"search\.meta value at key 'messages' is damaged \(7 bytes where 8 belong\)", {
            "search": lambda store: store.search(SessionQuery("alpha")),
            "catch_up": _append_then_catch_up,
        }),
    "the search.meta next term id grown": (
        _cut(b"search.meta", META_NEXT_TID, 7),
        r"search\.meta value at key 'next_tid' is damaged \(7 bytes where 8 belong\)", {
            "catch_up": _append_then_catch_up,
        }),
    "the last search.names key grown": (
        lambda path: _rekeyed(b"search.names", _last_key(path, b"search.names"),
                              _last_key(path, b"search.names") + b"\x00")(path),
        r"search\.names key 0000000[0-9a-f]00 is damaged \(5 bytes where 4 belong\)", {
            "catch_up": _append_then_catch_up,
        }),
    "a search.levels key cut short": (
        _first_level_cut, r"search\.levels key 00000000 is damaged \(4 bytes where 5 belong\)", {}),
    "a search.terms value cut short": (
        _cut(b"search.terms", b"alpha", 2),
        r"search\.terms value at key 616c706861 is damaged \(2 bytes where at least 4 belong\)", {
            "search": lambda store: store.search(SessionQuery("alpha")),
        }),
}


@pytest.mark.parametrize(("case", "read"), [(case, read) for case, (_, _, reads) in CASES.items() for read in reads])
def test_a_read_names_the_damaged_key_or_value(tmp_path: Path, case: str, read: str) -> None:
    damage, named, reads = CASES[case]
    _store(tmp_path)
    damage(tmp_path)
    with SessionStore(tmp_path, durable=False) as store, pytest.raises(StoreCorrupted, match="search index's " + named):
        reads[read](store)


@pytest.mark.parametrize("case", sorted(CASES))
def test_verify_names_the_damaged_key_or_value(tmp_path: Path, case: str) -> None:
    damage, named, _ = CASES[case]
    _store(tmp_path)
    damage(tmp_path)
    with SessionStore(tmp_path, durable=False) as store:
        report = store.verify()
    assert report.damaged == {"search"}
    assert [problem for problem in report.problems if re.search(named, problem)], report.problems


@pytest.mark.usefixtures("terms_in_blocks")
def test_verify_names_a_damaged_key_of_a_terms_block(tmp_path: Path) -> None:
    _store(tmp_path)
    key = _last_key(tmp_path, b"search.blocks")
    _rekeyed(b"search.blocks", key, key[:7])(tmp_path)
    with SessionStore(tmp_path, durable=False) as store:
        report = store.verify()
    assert report.damaged == {"search"}
    assert f"search: the search index's search.blocks key {key[:7].hex()} is damaged (7 bytes where 8 belong)" in (
        report.problems), report.problems
