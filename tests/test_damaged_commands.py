"""Commands on a damaged store: random bytes flipped in any named database of a store with its compression
dictionary (compressed records and chunks, runs in the stream index, payloads, forks, a redaction), then every
kind of command. Each one works or raises the store's own error (``StoreCorrupted`` and the like), never another
exception. ``tests/test_garbage.py`` does the same for reads (searches among them), and checks their answers
against ``verify``."""

from __future__ import annotations

import contextlib
import random
import shutil
from collections.abc import Callable, Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import lmdb
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from eventstore import ChatMessage, EventStoreError, SessionQuery, SessionStore, _log

from _damage import damaged_copy, flips
from test_compressed_model import WORDS

KEYS = ("a", "b", "c", "fork of a")


def _text(count: int, salt: int) -> str:
    return " ".join(WORDS[(number * 7 + salt) % len(WORDS)] for number in range(count))


@pytest.fixture(scope="module")
def pristine(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Path, dict[bytes, int]]]:
    """A store written through every command, and how many entries each of its named databases holds."""
    path = tmp_path_factory.mktemp("damaged-commands") / "store"
    with pytest.MonkeyPatch.context() as patches:
        patches.setattr(_log, "TRAINING_EVENTS", 8)
        with SessionStore(path, durable=False, snapshot_every=4) as store:
            for round_ in range(4):
                for key in KEYS[:3]:
                    store.append_many(key, [ChatMessage("user", _text(60, round_ + number),
                                                        {"n": number} if number % 2 else None)
                                            for number in range(3)])
            store.fork("a", "fork of a")
            store.set_session_state("b", "running", "turn")
            store.update_last("c", ChatMessage("assistant", _text(40, 5), {"tool": "x"}))
            store.redact("c", "asked to forget")
            store.catch_up()
    environment = lmdb.open(str(path), max_dbs=64, readonly=True, lock=False)
    with environment.begin() as txn:
        names = [bytes(name) for name, _ in txn.cursor()]
        sizes = {name: txn.stat(environment.open_db(name, txn=txn, create=False))["entries"] for name in names}
    environment.close()
    yield path, {name: size for name, size in sizes.items() if size}
    shutil.rmtree(path.parent, ignore_errors=True)


def _commands(store: SessionStore, key: str) -> list[Callable[[], object]]:
    long_ago = datetime(2000, 1, 1, tzinfo=UTC)
    return [
        lambda: store.append(key, ChatMessage.user(_text(80, 1))),
        lambda: store.append_many(key, [ChatMessage("user", _text(50, 2), {"p": [1]}), ChatMessage.user("z")]),
        lambda: store.pop_last(key),
        lambda: store.remove_last(key),
        lambda: store.update_last(key, ChatMessage("assistant", _text(30, 3), {"q": 1})),
        lambda: store.replace_messages(key, [ChatMessage.user("kept"), ChatMessage.user(_text(70, 4))]),
        lambda: store.set_session_state(key, "running", "t2"),
        lambda: store.set_session_name(key, "renamed"),
        lambda: store.fork(key, f"another fork of {key}"),
        lambda: store.restore(key, version=2),
        lambda: store.restore(key, as_of=long_ago + timedelta(days=10_000)),
        lambda: store.redact(key, "asked again"),
        lambda: store.compact(key),
        lambda: store.delete_session(key),
        lambda: store.load_last(key, 2),
        lambda: store.search(SessionQuery(_text(3, 1))),
        lambda: store.search_messages(_text(2, 6)),
        lambda: store.cleanup_stale(10**6),
    ]


@settings(suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture],
          report_multiple_bugs=False)
@given(damage=flips, key=st.sampled_from(KEYS), order=st.randoms(use_true_random=False))
def test_commands_on_a_damaged_store_work_or_raise_the_stores_own_errors(
        pristine: tuple[Path, dict[bytes, int]], tmp_path: Path, damage: list[tuple[int, int, int, int]], key: str,
        order: random.Random) -> None:
    source, sizes = pristine
    copy = tmp_path / "damaged"
    damaged_copy(source, copy, sizes, damage)
    try:
        store = SessionStore(copy, durable=False)
    except EventStoreError:
        return  # refused at open
    with store:
        commands = _commands(store, key)
        order.shuffle(commands)
        for command in commands:
            with contextlib.suppress(EventStoreError):  # refused: fine; any other exception fails the test
                command()
