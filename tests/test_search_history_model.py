"""Search answers after any history of edits, forks, replacements and re-created sessions, caught up at any point,
compared with a plain scan of the current messages.

``test_search``'s history test covers appends, removals, clears, deletions, restores and redactions; this one adds
the commands that reach the index through other events (a fork, a replaced list, a transaction's commands, a
message carrying a payload of its own, which a catch-up decodes whole), and compares which messages match.
"""

from __future__ import annotations

import contextlib
import tempfile
from pathlib import Path
from typing import Any

from hypothesis import given, settings
from hypothesis import strategies as st

from eventstore import REDACTED, ChatMessage, SessionExists, SessionNotFound, SessionStore
from projections.search.tokenizer import tokenize

from conftest import FakeClock

KEYS = ["a", "b", "c"]
WORDS = ["apple", "banana", "cherry", "fig", "zeta"]
texts = st.lists(st.sampled_from(WORDS), min_size=1, max_size=4).map(" ".join)
messages = st.tuples(texts, st.booleans())  # its text, and whether it carries a payload of its own
history = st.lists(st.one_of(
    st.tuples(st.just("append"), st.sampled_from(KEYS), messages),
    st.tuples(st.just("append_many"), st.sampled_from(KEYS), st.lists(messages, min_size=1, max_size=3)),
    st.tuples(st.just("update_last"), st.sampled_from(KEYS), messages),
    st.tuples(st.just("remove_last"), st.sampled_from(KEYS)),
    st.tuples(st.just("replace"), st.sampled_from(KEYS), st.lists(messages, max_size=3)),
    st.tuples(st.just("fork"), st.sampled_from(KEYS), st.sampled_from(KEYS)),
    st.tuples(st.just("delete"), st.sampled_from(KEYS)),
    st.tuples(st.just("restore"), st.sampled_from(KEYS), st.integers(0, 20)),
    st.tuples(st.just("redact"), st.sampled_from(KEYS)),
    st.tuples(st.just("transaction"), st.sampled_from(KEYS), messages, st.sampled_from(KEYS)),
    st.tuples(st.just("catch_up")),
), max_size=30)


def message(spec: tuple[str, bool]) -> ChatMessage:
    text, carries = spec
    return ChatMessage.user(text, {"carried": text} if carries else None)


def run(store: SessionStore, clock: FakeClock, command: tuple[Any, ...]) -> None:
    name = command[0]
    if name == "append":
        store.append(command[1], message(command[2]))
    elif name == "append_many":
        store.append_many(command[1], [message(spec) for spec in command[2]])
    elif name == "update_last" and store.load(command[1]):
        store.update_last(command[1], message(command[2]))
    elif name == "remove_last" and store.load(command[1]):
        store.remove_last(command[1])
    elif name == "replace" and store.session_exists(command[1]):
        store.replace_messages(command[1], [message(spec) for spec in command[2]])
    elif name == "fork" and command[1] != command[2]:
        with contextlib.suppress(SessionExists, SessionNotFound):  # the target lives, or the source does not
            store.fork(command[1], command[2])
    elif name == "delete" and store.session_exists(command[1]):
        store.delete_session(command[1])
    elif name == "restore" and store.history(command[1]):
        store.restore(command[1], version=1 + command[2] % len(store.history(command[1])))
    elif name == "redact" and store.session_exists(command[1]):
        store.redact(command[1], "test")
    elif name == "transaction":
        with store.transaction() as tx:
            tx.append(command[1], message(command[2]))
            tx.append(command[3], message(command[2]))
    elif name == "catch_up":
        store.catch_up()
    clock.advance(seconds=1)


def matches(store: SessionStore, word: str) -> set[tuple[str, int]]:
    return {(hit.session_key, hit.index) for hit in store.search_messages(word, 1000)}


def scanned(store: SessionStore, word: str) -> set[tuple[str, int]]:
    """The messages holding ``word``, found by reading every live session (the placeholder holds no words)."""
    return {(key, index) for key in store.list_sessions() for index, found in enumerate(store.load(key))
            if found.content != REDACTED and word in tokenize(found.content)}


@settings(max_examples=60)
@given(history)
def test_search_finds_the_messages_a_scan_finds_after_any_history(commands: list[tuple[Any, ...]]) -> None:
    with tempfile.TemporaryDirectory() as directory:
        clock = FakeClock()
        with SessionStore(Path(directory), clock=clock, durable=False, snapshot_every=3) as store:
            for command in commands:
                run(store, clock, command)
            expected = {word: scanned(store, word) for word in WORDS}
            assert expected == {word: matches(store, word) for word in WORDS}  # caught up in memory
            store.catch_up()
            assert expected == {word: matches(store, word) for word in WORDS}
            with store._environment.read() as txn:
                caught_up = store._search_index.dump(txn)
            store.rebuild_projections(["search"])
            with store._environment.read() as txn:
                assert caught_up == store._search_index.dump(txn)
            assert store.verify().ok
