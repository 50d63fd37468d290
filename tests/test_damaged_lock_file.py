"""LMDB's lock file damaged while no process has the store open (bytes flipped, cut short, zeroed, replaced by
noise): the next open makes it again, and the store reads, writes and verifies as before. (Changed under a process
that has the store open, it is shared memory that LMDB trusts: docs/damage.md says what that does.)"""

from __future__ import annotations

import random
from collections.abc import Callable
from pathlib import Path

import pytest

from eventstore import ChatMessage, SessionQuery, SessionStore

Damage = Callable[[bytearray, random.Random], bytearray]


def _flipped(data: bytearray, rng: random.Random) -> bytearray:
    for _ in range(32):
        data[rng.randrange(min(len(data), 4096))] ^= 1 << rng.randrange(8)
    return data


DAMAGES: dict[str, Damage] = {
    "flipped": _flipped,
    "cut short": lambda data, rng: data[:rng.randrange(len(data))],
    "header zeroed": lambda data, rng: bytearray(256) + data[256:],
    "noise": lambda data, rng: bytearray(rng.randbytes(len(data))),
    "emptied": lambda data, rng: bytearray(),
}


@pytest.mark.parametrize("seed", range(3))
@pytest.mark.parametrize("damage", sorted(DAMAGES))
def test_a_damaged_lock_file_of_a_closed_store_is_made_again(tmp_path: Path, damage: str, seed: int) -> None:
    path = tmp_path / "store"
    with SessionStore(path, durable=False) as store:
        store.append_many("a", [ChatMessage.user("alpha beta"), ChatMessage.user("gamma")])
        loaded = store.load("a")
    lock = path / "lock.mdb"
    lock.write_bytes(bytes(DAMAGES[damage](bytearray(lock.read_bytes()), random.Random(seed))))
    with SessionStore(path, readonly=True) as store:
        assert store.load("a") == loaded
    with SessionStore(path, durable=False) as store:
        assert store.load("a") == loaded
        store.append("a", ChatMessage.user("delta"))
        assert [found.key for found in store.search(SessionQuery("delta"))] == ["a"]
        assert store.verify().ok
