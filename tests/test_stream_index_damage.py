"""A stream index entry (``log.streams``) damaged so that it leads a session's versions to another session's
records: a run whose count grew, a position moved. Every read and command that follows the index to the records
must refuse (``StoreCorrupted``), never answer with the other session's events, append after them, or redact them.
"""

from __future__ import annotations

import struct
from collections.abc import Iterator
from pathlib import Path

import pytest

from eventstore import ChatMessage, SessionStore, StoreCorrupted
from eventstore.storage import WriteTransaction

from conftest import stream_id_of

_STREAM_KEY = struct.Struct(">QQ")
_RUN = struct.Struct(">QI")
_POSITION = struct.Struct(">Q")


def _a_then_b(path: Path) -> SessionStore:
    """A store where session "a" holds positions 1 to 3 (one run) and "b" positions 4 and 5."""
    store = SessionStore(path, durable=False)
    store.append_many("a", [ChatMessage.user(f"a{number}") for number in range(3)])
    store.append_many("b", [ChatMessage.user(f"b{number}") for number in range(2)])
    return store


#: What the index entry of "a"'s first version becomes, each a way to reach "b"'s records, and a version of "a"
#: the damaged entry leads to one of them.
DAMAGE = {
    "a run whose count grew past its session's events": (_RUN.pack(1, 5), 4),
    "a run moved onto the next session's events": (_RUN.pack(3, 3), 2),
    "an entry of one event moved to another session's": (_POSITION.pack(4), 1),
}


@pytest.fixture(params=sorted(DAMAGE))
def damage(request: pytest.FixtureRequest) -> tuple[bytes, int]:
    return DAMAGE[request.param]


@pytest.fixture
def damaged(damage: tuple[bytes, int], tmp_path: Path) -> Iterator[SessionStore]:
    store = _a_then_b(tmp_path / "store")
    with store._environment.read() as txn:
        stream_id = stream_id_of(store._log, txn, "a")

    def rewrite(txn: WriteTransaction) -> None:
        txn.put(store._log._streams, _STREAM_KEY.pack(stream_id, 1), damage[0])

    store._environment.write(rewrite)
    with store:
        yield store


def _read_b(store: SessionStore) -> list[tuple[int, bytes]]:
    with store._environment.read() as txn:
        return [(event.position, event.encoded.payload) for event in store._log.read_all(txn)
                if event.session_key == "b"]


def test_history_and_past_versions_refuse_rather_than_show_another_sessions_events(
        damaged: SessionStore, damage: tuple[bytes, int]) -> None:
    with pytest.raises(StoreCorrupted, match="stream index"):
        damaged.history("a")
    with pytest.raises(StoreCorrupted, match="stream index"):
        damaged.session_at("a", version=damage[1])
    with pytest.raises(StoreCorrupted, match="stream index"):
        damaged.fork("a", "fork of a", version=damage[1])


def test_an_append_refuses_and_writes_nothing(damaged: SessionStore) -> None:
    with damaged._environment.read() as txn:
        head = damaged._log.head(txn)
    with pytest.raises(StoreCorrupted, match="stream index"):
        damaged.append("a", ChatMessage.user("after"))
    with damaged._environment.read() as txn:
        assert head == damaged._log.head(txn)


def test_a_redaction_refuses_and_leaves_the_other_sessions_records(damaged: SessionStore) -> None:
    records = _read_b(damaged)
    with pytest.raises(StoreCorrupted, match="stream index"):
        damaged.redact("a", "asked to forget")
    assert records == _read_b(damaged)
    assert ["b0", "b1"] == [message.content for message in damaged.load("b")]


def test_verify_names_the_damage(damaged: SessionStore) -> None:
    report = damaged.verify()
    assert not report.ok
    assert any("stream index" in problem for problem in report.problems)


def test_a_run_whose_count_shrank_is_damage_where_the_next_entry_begins(tmp_path: Path) -> None:
    """The versions a shrunk run no longer holds are missed, not skipped: a history or past version that needs
    them refuses, rather than leaving out a message."""
    with SessionStore(tmp_path / "store", durable=False) as store:
        store.append_many("a", [ChatMessage.user(f"a{number}") for number in range(3)])
        store.append_many("b", [ChatMessage.user("b")])
        store.append_many("a", [ChatMessage.user(f"a{number}") for number in range(3, 5)])
        with store._environment.read() as txn:
            stream_id = stream_id_of(store._log, txn, "a")
        store._environment.write(
            lambda txn: txn.put(store._log._streams, _STREAM_KEY.pack(stream_id, 1), _RUN.pack(1, 2)))
        with pytest.raises(StoreCorrupted, match="stream index"):
            store.history("a")
        with pytest.raises(StoreCorrupted, match="stream index"):
            store.session_at("a", version=4)
        assert [f"a{number}" for number in range(5)] == [message.content for message in store.load("a")]
