"""Search over sessions whose ids reach 2**24 (once the shared-sessions path's switch from bitmaps to sets; a
block boundary of the index too), beside a session of a low id: the ranking equals a plain BM25's over the
current messages, through edits, redactions and forks, for every query shape.

The ids are reached cheaply: the log gives a new session the id after its greatest one, so a session key planted
at an id just below ``HIGH_IDS`` (with its entry in the key index, as the log writes them) makes the sessions
created after it straddle that id."""

from __future__ import annotations

import hashlib
import struct
import tempfile
from pathlib import Path

import lmdb
from hypothesis import given, settings
from hypothesis import strategies as st

from eventstore import ChatMessage, SessionQuery, SessionStore

from _damage import end_key
from conftest import FakeClock
from test_search import ReferenceSearch, keys

HIGH_IDS = 1 << 24  # a multiple of the index's blocks of sessions: the script's sessions straddle two blocks
WORDS = [f"w{number}" for number in range(8)]
KEYS = ["a", "b", "c", "d", "e"]
texts = st.lists(st.sampled_from(WORDS), min_size=1, max_size=6).map(" ".join)
commands = st.lists(st.one_of(
    st.tuples(st.just("append"), st.sampled_from(KEYS), st.lists(texts, min_size=1, max_size=3)),
    st.tuples(st.sampled_from(["remove_last", "redact", "delete"]), st.sampled_from(KEYS), st.just([])),
    st.tuples(st.just("update_last"), st.sampled_from(KEYS), st.lists(texts, min_size=1, max_size=1)),
    st.tuples(st.just("fork"), st.sampled_from(KEYS), st.just([]))), min_size=1, max_size=30)
queries = st.lists(st.sampled_from([*WORDS, "w*", '"w1 w2"', '"w3 w*"']), min_size=1, max_size=4).map(" ".join)


def _plant_session_below(path: Path, stream_id: int) -> None:
    """A session key at ``stream_id`` with no events: the next session the log creates gets the id after it."""
    key = b"planted"
    environment = lmdb.open(str(path), max_dbs=64)
    try:
        with environment.begin(write=True) as txn:
            txn.put(hashlib.sha256(key).digest(), struct.pack(">Q", stream_id),
                    db=environment.open_db(b"log.keys", txn=txn, create=False))
            txn.put(struct.pack(">Q", stream_id), key, db=environment.open_db(b"log.stream_keys", txn=txn,
                                                                              create=False))
    finally:
        environment.close()


@settings(max_examples=40)
@given(st.sampled_from([3, 1, 0]), commands, st.lists(queries, min_size=1, max_size=4), st.integers(1, 6))
def test_sessions_across_high_ids_rank_as_a_plain_bm25(below: int, script: list[tuple[str, str, list[str]]],
                                                           keywords: list[str], limit: int) -> None:
    with tempfile.TemporaryDirectory() as directory:
        path, clock = Path(directory), FakeClock()
        with SessionStore(path, clock=clock, durable=False) as store:
            store.append("early", ChatMessage.user("w1 w2 w3"))  # a session of a low id, in the bitmaps' range
        _plant_session_below(path, HIGH_IDS - below - 1)
        with SessionStore(path, clock=clock, durable=False) as store:
            forks = 0
            for command, key, contents in script:
                clock.advance(seconds=1)
                held = bool(store.load(key))
                if command == "append" or not held:
                    store.append_many(key, [ChatMessage.user(text) for text in contents or ["w0"]])
                elif command == "remove_last":
                    store.remove_last(key)
                elif command == "update_last":
                    store.update_last(key, ChatMessage.user(contents[0]))
                elif command == "redact":
                    store.redact(key, "asked to forget")
                elif command == "delete":
                    store.delete_session(key)
                else:
                    forks += 1
                    store.fork(key, f"fork {forks} of {key}")
            reference = ReferenceSearch(store)
            for keyword in keywords:
                assert reference.search(keyword, limit) == keys(store.search(SessionQuery(keyword, limit))), keyword
                scores = reference.scores(keyword)
                hits = store.search_messages(keyword, 100)
                assert {hit.session_key for hit in hits} == set(scores), keyword
        assert _last_session_id(path) >= HIGH_IDS - below  # the script's sessions took the high ids


def _last_session_id(path: Path) -> int:
    return int(struct.unpack(">Q", end_key(path, b"log.stream_keys", last=True))[0])
