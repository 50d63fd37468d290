"""One LMDB transaction behind the storage protocol, and py-lmdb's errors as the store's."""

from __future__ import annotations

import errno
import os
from collections.abc import Iterable, Iterator
from operator import lt
from pathlib import Path

import lmdb

from .._errors import EventStoreError, StoreCorrupted, StoreFull, StoreReadOnly
from .protocol import MAX_KEY_SIZE, Space

# What py-lmdb raises when the file's pages do not make sense.
DAMAGE = (lmdb.CorruptedError, lmdb.PageNotFoundError, lmdb.InvalidError, lmdb.BadValsizeError,
           lmdb.PageFullError, lmdb.IncompatibleError)



class MapFull(StoreFull):
    """The map is full: ``Environment.write`` grows it and runs the body again (never raised further)."""


def translated(exc: lmdb.Error, path: Path | None = None) -> EventStoreError:
    """The store's error for a py-lmdb error, so that none leaves this module."""
    where = "the store" if path is None else f"the store at {path}"
    if isinstance(exc, lmdb.MapFullError):
        return MapFull(f"{where} needs a larger map")
    if isinstance(exc, lmdb.ReadonlyError):
        return StoreReadOnly(f"{where} cannot be written here: {exc}")
    if isinstance(exc, DAMAGE):
        return StoreCorrupted(f"the LMDB file is damaged: {exc}")
    if _no_room(exc, path):
        return StoreFull(f"no room on the file system for {where}; the command wrote nothing: {exc}")
    return EventStoreError(f"{where} failed: {exc}")


def _no_room(exc: lmdb.Error, path: Path | None) -> bool:
    """Whether ``exc`` is a write that a full file system stopped."""
    text = str(exc)
    if os.strerror(errno.ENOSPC) in text or os.strerror(errno.EDQUOT) in text:
        return True
    # LMDB reports a write cut short as an I/O error: on a file system with no room left, that is why it was.
    if path is None or os.strerror(errno.EIO) not in text:
        return False
    try:
        return os.statvfs(path).f_bavail == 0
    except OSError:
        return False


def bad_key(key: bytes) -> ValueError:
    return ValueError(f"a key must have 1 to {MAX_KEY_SIZE} bytes, not {len(key)}")


class LmdbSpace:
    """A named LMDB database; vacuum gives it the new file's handle when it reopens the environment."""

    __slots__ = ("handle", "name", "__weakref__")

    def __init__(self, name: str, handle: lmdb._Database) -> None:
        self.name = name
        self.handle = handle

    def __repr__(self) -> str:
        return f"LmdbSpace({self.name!r})"


class LmdbTransaction:
    """``WriteTransaction`` (and ``ReadTransaction``) over one py-lmdb transaction.

    Each method is one or two py-lmdb calls, and scans hand out py-lmdb's own C
    iterators: the seam costs a method call, not a copy. Each method turns a
    py-lmdb error into the store's own (``try`` costs nothing until it catches);
    an error while iterating a scan is turned by the transaction's ``with``.
    Ours are begun without ``buffers``, so py-lmdb returns ``bytes`` (``Transaction[bytes]``), never ``memoryview``.
    """

    __slots__ = ("_txn",)

    def __init__(self, txn: lmdb.Transaction[bytes]) -> None:
        self._txn = txn

    @property
    def raw(self) -> lmdb.Transaction[bytes]:
        """The py-lmdb transaction, for the engine's own use (opening databases)."""
        return self._txn

    def get(self, space: Space, key: bytes) -> bytes | None:
        try:
            return self._txn.get(key, db=space.handle)
        except lmdb.Error as exc:
            raise translated(exc) from None

    def get_many(self, space: Space, keys: Iterable[bytes]) -> dict[bytes, bytes]:
        try:
            return dict(self._txn.cursor(db=space.handle).getmulti(list(keys)))
        except lmdb.Error as exc:
            raise translated(exc) from None

    def get_each(self, space: Space, keys: Iterable[bytes]) -> list[bytes | None]:
        try:
            # A cursor's get is one LMDB call a key; getmulti makes two, and a pair and a key object per value.
            return list(map(self._txn.cursor(db=space.handle).get, keys))
        except lmdb.Error as exc:
            raise translated(exc) from None

    def _positioned(self, space: Space, start: bytes | None, reverse: bool) -> lmdb.Cursor[bytes] | None:
        try:
            cursor = self._txn.cursor(db=space.handle)
            if reverse:
                found = cursor.last() if start is None or not cursor.set_range(start) else cursor.prev()
            else:
                found = cursor.first() if start is None else cursor.set_range(start)
        except lmdb.Error as exc:
            raise translated(exc) from None
        return cursor if found else None

    def scan(self, space: Space, start: bytes | None = None, *, reverse: bool = False
             ) -> Iterator[tuple[bytes, bytes]]:
        cursor = self._positioned(space, start, reverse)
        if cursor is None:
            return iter(())
        return cursor.iterprev() if reverse else cursor.iternext()

    def scan_keys(self, space: Space, start: bytes | None = None, *, reverse: bool = False) -> Iterator[bytes]:
        cursor = self._positioned(space, start, reverse)
        if cursor is None:
            return iter(())
        return (cursor.iterprev if reverse else cursor.iternext)(values=False)

    def scan_values(self, space: Space, start: bytes | None = None, *, reverse: bool = False) -> Iterator[bytes]:
        cursor = self._positioned(space, start, reverse)
        if cursor is None:
            return iter(())
        return (cursor.iterprev if reverse else cursor.iternext)(keys=False)

    def before(self, space: Space, key: bytes) -> tuple[bytes, bytes] | None:
        cursor = self._positioned(space, key, True)
        return None if cursor is None else cursor.item()

    def last(self, space: Space) -> tuple[bytes, bytes] | None:
        cursor = self._positioned(space, None, True)
        return None if cursor is None else cursor.item()

    def count(self, space: Space) -> int:
        try:
            return self._txn.stat(space.handle)["entries"]
        except lmdb.Error as exc:
            raise translated(exc) from None

    def snapshot_id(self) -> int:
        try:
            return self._txn.id()
        except lmdb.Error as exc:
            raise translated(exc) from None

    def put(self, space: Space, key: bytes, value: bytes) -> None:
        try:
            self._txn.put(key, value, db=space.handle)
        except lmdb.BadValsizeError:
            raise bad_key(key) from None
        except lmdb.Error as exc:
            raise translated(exc) from None

    def insert(self, space: Space, key: bytes, value: bytes) -> bool:
        try:
            return self._txn.put(key, value, db=space.handle, overwrite=False)
        except lmdb.BadValsizeError:
            raise bad_key(key) from None
        except lmdb.Error as exc:
            raise translated(exc) from None

    def append(self, space: Space, key: bytes, value: bytes) -> bool:
        try:
            return self._txn.put(key, value, db=space.handle, append=True, overwrite=False)
        except lmdb.BadValsizeError:
            raise bad_key(key) from None
        except lmdb.Error as exc:
            raise translated(exc) from None

    def append_many(self, space: Space, items: Iterable[tuple[bytes, bytes]]) -> None:
        pairs = list(items)
        if not pairs:
            return
        keys = [key for key, _ in pairs]
        # Checked first so that a refused batch writes nothing: once these hold, and the first key
        # is appended, py-lmdb appends every other pair.
        longest = max(keys, key=len)
        if len(longest) > MAX_KEY_SIZE:
            raise bad_key(longest)
        # ``operator.lt``: half the cost a pair of ``bytes.__lt__``, whose slot wrapper is called through Python's
        # generic path.
        if not all(map(lt, keys, keys[1:])) or not self.append(space, *pairs[0]):
            raise ValueError("append_many: the keys do not ascend after every key of the space")
        if len(pairs) == 1:  # a command of one event: no cursor to make for the rest
            return
        try:
            self._txn.cursor(db=space.handle).putmulti(pairs[1:], append=True, overwrite=False)
        except lmdb.Error as exc:
            raise translated(exc) from None

    def delete(self, space: Space, key: bytes) -> bool:
        try:
            return self._txn.delete(key, db=space.handle)
        except lmdb.Error as exc:
            raise translated(exc) from None

    def delete_range(self, space: Space, start: bytes, stop: bytes) -> int:
        removed = 0
        try:
            cursor = self._txn.cursor(db=space.handle)
            if not cursor.set_range(start):
                return 0
            while cursor.key() < stop:
                # delete() moves the cursor to the next key; it returns False past the last one.
                deleted = cursor.delete()
                removed += 1
                if not deleted or not cursor.key():
                    break
        except lmdb.Error as exc:
            raise translated(exc) from None
        return removed

    def clear(self, space: Space) -> None:
        try:
            self._txn.drop(space.handle, delete=False)
        except lmdb.Error as exc:
            raise translated(exc) from None
