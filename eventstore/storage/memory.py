"""The in-memory storage engine: the reference semantics of the ``Storage`` protocol, and fast unit tests.

Each key space is a sorted list of keys beside a dict of values. Committed
spaces are never changed in place: a write transaction copies a space the
first time it changes it, and its commit publishes the new set of spaces in
one assignment. So a read transaction keeps the state it began with however
many commits follow, a failed body leaves nothing behind, and readers never
wait. One lock admits one writer at a time.
"""

from __future__ import annotations

import threading
from bisect import bisect_left, bisect_right, insort
from collections.abc import Callable, Iterable, Iterator, Mapping
from contextlib import contextmanager
from pathlib import Path
from typing import TypeVar

import attrs

from .._errors import IncompatibleStore, StoreBusy, StoreClosed, StoreReadOnly
from .protocol import MAX_KEY_SIZE, Durability, Space, SpaceUsage, StorageUsage, VacuumRewrite, WriteTransaction

__all__ = ["MemorySpace", "MemoryStorage", "MemoryTransaction"]

T = TypeVar("T")


@attrs.frozen
class MemorySpace:
    """A key space of a ``MemoryStorage``, by name."""

    name: str

    @property
    def handle(self) -> str:
        return self.name


class _Table:
    """One key space's contents: keys in byte order, and their values."""

    __slots__ = ("keys", "values")

    def __init__(self, keys: list[bytes] | None = None, values: dict[bytes, bytes] | None = None) -> None:
        self.keys = keys if keys is not None else []
        self.values = values if values is not None else {}

    def copy(self) -> _Table:
        return _Table(list(self.keys), dict(self.values))


_EMPTY = _Table()


def _check_key(key: bytes) -> None:
    if not 0 < len(key) <= MAX_KEY_SIZE:
        raise ValueError(f"a key must have 1 to {MAX_KEY_SIZE} bytes, not {len(key)}")


class _Contents:
    """What every handle on one in-memory store shares: the committed spaces and the writer's lock."""

    def __init__(self) -> None:
        # (commit count, spaces by name), replaced whole by each commit; spaces in it are never changed.
        self.committed: tuple[int, Mapping[str, _Table]] = (0, {})
        self.write_lock = threading.Lock()
        self.writing_thread: int | None = None  # the thread that holds ``write_lock``
        #: Called after each commit; replaced whole when one is added or stopped, so a commit reads a stable list.
        self.listeners: tuple[Callable[[], None], ...] = ()

    @contextmanager
    def exclusive(self, path: Path) -> Iterator[None]:
        """The writer's lock, refused to the thread that holds it: it would wait for itself for ever."""
        if self.writing_thread == threading.get_ident():
            raise StoreBusy.write_in_progress(path)
        with self.write_lock:
            yield


class MemoryTransaction:
    """``WriteTransaction`` (and ``ReadTransaction``) over one snapshot of a ``MemoryStorage``."""

    def __init__(self, snapshot_id: int, tables: Mapping[str, _Table], *, writable: bool) -> None:
        self._id = snapshot_id
        self._tables = dict(tables)
        self._writable = writable
        self._copied: set[str] = set()  # spaces this transaction owns (copied from the snapshot)

    @property
    def tables(self) -> Mapping[str, _Table]:
        return self._tables

    def _table(self, space: Space) -> _Table:
        return self._tables.get(space.name, _EMPTY)

    def _own(self, space: Space) -> _Table:
        if not self._writable:
            raise StoreReadOnly("this is a read transaction")
        if space.name not in self._copied:
            self._tables[space.name] = self._table(space).copy()
            self._copied.add(space.name)
        return self._tables[space.name]

    def get(self, space: Space, key: bytes) -> bytes | None:
        return self._table(space).values.get(key)

    def get_many(self, space: Space, keys: Iterable[bytes]) -> dict[bytes, bytes]:
        values = self._table(space).values
        return {key: values[key] for key in keys if key in values}

    def get_each(self, space: Space, keys: Iterable[bytes]) -> list[bytes | None]:
        return list(map(self._table(space).values.get, keys))

    def scan(self, space: Space, start: bytes | None = None, *, reverse: bool = False
             ) -> Iterator[tuple[bytes, bytes]]:
        for key in self.scan_keys(space, start, reverse=reverse):
            yield key, self._table(space).values[key]

    def scan_values(self, space: Space, start: bytes | None = None, *, reverse: bool = False
                    ) -> Iterator[bytes]:
        for key in self.scan_keys(space, start, reverse=reverse):
            yield self._table(space).values[key]

    def scan_keys(self, space: Space, start: bytes | None = None, *, reverse: bool = False) -> Iterator[bytes]:
        # Each step looks the next key up afresh, so the body may change the space while it scans.
        keys = self._table(space).keys
        if reverse:
            index = len(keys) - 1 if start is None else bisect_left(keys, start) - 1
        else:
            index = 0 if start is None else bisect_left(keys, start)
        while 0 <= index < len(keys):
            key = keys[index]
            yield key
            keys = self._table(space).keys
            index = bisect_left(keys, key) - 1 if reverse else bisect_right(keys, key)

    def before(self, space: Space, key: bytes) -> tuple[bytes, bytes] | None:
        return next(self.scan(space, key, reverse=True), None)

    def last(self, space: Space) -> tuple[bytes, bytes] | None:
        return next(self.scan(space, reverse=True), None)

    def count(self, space: Space) -> int:
        return len(self._table(space).keys)

    def snapshot_id(self) -> int:
        return self._id

    def put(self, space: Space, key: bytes, value: bytes) -> None:
        _check_key(key)
        table = self._own(space)
        if key not in table.values:
            insort(table.keys, key)
        table.values[key] = value

    def insert(self, space: Space, key: bytes, value: bytes) -> bool:
        _check_key(key)
        if key in self._table(space).values:
            return False
        self.put(space, key, value)
        return True

    def append(self, space: Space, key: bytes, value: bytes) -> bool:
        _check_key(key)
        keys = self._table(space).keys
        if keys and key <= keys[-1]:
            return False
        table = self._own(space)
        table.keys.append(key)
        table.values[key] = value
        return True

    def append_many(self, space: Space, items: Iterable[tuple[bytes, bytes]]) -> None:
        pairs = list(items)
        keys = self._table(space).keys
        previous = keys[-1] if keys else b""
        for key, _ in pairs:
            _check_key(key)
            if key <= previous:
                raise ValueError("append_many: the keys do not ascend after every key of the space")
            previous = key
        for key, value in pairs:
            self.append(space, key, value)

    def delete(self, space: Space, key: bytes) -> bool:
        if key not in self._table(space).values:
            return False
        table = self._own(space)
        del table.values[key]
        del table.keys[bisect_left(table.keys, key)]
        return True

    def delete_range(self, space: Space, start: bytes, stop: bytes) -> int:
        keys = self._table(space).keys
        low, high = bisect_left(keys, start), bisect_left(keys, stop)
        if low >= high:
            return 0
        table = self._own(space)
        for key in table.keys[low:high]:
            del table.values[key]
        del table.keys[low:high]
        return high - low

    def clear(self, space: Space) -> None:
        self._own(space)
        self._tables[space.name] = _Table()


class MemoryStorage:
    """A store held in this process's memory, gone when the last reference to it goes.

    ``open_again`` gives another handle on the same contents (as opening the same
    path twice does on disk), read-only if asked; ``release`` closes one handle.

    Args:
        path: names the store in messages; nothing is written there.
        durability: recorded for the caller, and without effect: nothing survives the process.
    """

    def __init__(self, path: Path = Path(":memory:"), *, durability: Durability = Durability.FULL) -> None:
        self.path = path
        self.durability = durability
        self.readonly = False
        self._contents = _Contents()
        self._released = False

    def open_again(self, *, readonly: bool = False) -> MemoryStorage:
        """A new handle on this store's contents (usable even after this handle was released)."""
        handle = MemoryStorage(self.path, durability=self.durability)
        handle._contents = self._contents
        handle.readonly = readonly
        return handle

    def _check_open(self) -> None:
        if self._released:
            raise StoreClosed("the store is closed")

    def space(self, name: str) -> MemorySpace:
        self._check_open()
        if self.readonly and name not in self._contents.committed[1]:
            raise IncompatibleStore(f"the store has no {name} space; open it writable once to create it")
        with self._contents.exclusive(self.path):
            commits, tables = self._contents.committed
            if name not in tables:
                self._contents.committed = (commits, {**tables, name: _Table()})
        return MemorySpace(name)

    @contextmanager
    def read(self) -> Iterator[MemoryTransaction]:
        self._check_open()
        commits, tables = self._contents.committed
        yield MemoryTransaction(commits, tables, writable=False)

    def write(self, body: Callable[[WriteTransaction], T]) -> T:
        self._check_open()
        if self.readonly:
            raise StoreReadOnly(f"the store at {self.path} is open read-only")
        with self._contents.exclusive(self.path):
            self._contents.writing_thread = threading.get_ident()
            try:
                commits, tables = self._contents.committed
                transaction = MemoryTransaction(commits + 1, tables, writable=True)
                result = body(transaction)
                self._contents.committed = (commits + 1, transaction.tables)
            finally:
                self._contents.writing_thread = None
        for listener in self._contents.listeners:
            listener()
        return result

    def make_room(self, size: int) -> None:
        """Nothing to do: the contents grow as they are written."""

    def release_freed_pages(self) -> None:
        """Nothing to do: nothing freed waits for a later commit."""

    def last_commit(self) -> int:
        self._check_open()
        return self._contents.committed[0]

    def watch_commits(self, listener: Callable[[], None]) -> Callable[[], None]:
        contents, path = self._contents, self.path
        with contents.exclusive(path):
            contents.listeners = (*contents.listeners, listener)

        def stop() -> None:
            with contents.exclusive(path):
                contents.listeners = tuple(other for other in contents.listeners if other is not listener)

        return stop

    def file_size(self) -> int:
        return 0

    def usage(self) -> StorageUsage:
        """Entries and key and value bytes per space; no pages."""
        self._check_open()
        spaces = self._contents.committed[1]
        return StorageUsage(0, 0, 0, tuple(
            SpaceUsage(name, len(table.keys), sum(map(len, table.keys)), sum(map(len, table.values.values())))
            for name, table in sorted(spaces.items())))

    def page_problems(self) -> list[str]:
        """No file, so no page to damage."""
        self._check_open()
        return []

    def vacuum(self, reopen: Callable[[], None], rewrite: VacuumRewrite | None = None) -> None:
        """Nothing to compact: only the spaces ``rewrite`` names change, in one commit; ``reopen`` runs all the
        same, as the protocol promises callers."""
        self._check_open()
        if self.readonly:
            raise StoreReadOnly(f"the store at {self.path} is open read-only")
        with self._contents.exclusive(self.path):
            if rewrite is not None:
                commits, tables = self._contents.committed
                changes = rewrite(MemoryTransaction(commits, tables, writable=False))
                changed = dict(tables)
                for name, change in changes.items():
                    if name in tables:
                        table = tables[name]
                        pairs = dict(change((key, table.values[key]) for key in table.keys))
                        changed[name] = _Table(sorted(pairs), pairs)
                self._contents.committed = (commits + 1, changed)
        reopen()

    def release(self) -> None:
        self._released = True

    def release_waits_for_this_thread(self) -> bool:
        return False  # releasing waits for nothing
