"""The files of an LMDB store beside LMDB's own: what each is for, and the checks and fixes made at open.

A store's directory holds LMDB's data and lock files, ``users.lock`` (held shared while open, so that
``vacuum`` can tell it is alone), and a marker that says a store existed there, so that a store whose
data file went missing is refused instead of silently starting over.
"""

from __future__ import annotations

import contextlib
import errno
import json
import os
import stat
import uuid
from pathlib import Path
from typing import BinaryIO

import lmdb

from .._errors import StoreCorrupted, StoreFull, StoreInaccessible, StoreNotFound
from . import lmdb_check

# Reader slots: one per concurrent read transaction in all processes. Slots of
# processes that died are reclaimed on every open, so only live readers count.
MAX_READERS = 1024
USERS_LOCK = "users.lock"
DATA = "data.mdb"
LOCK = "lock.mdb"
#: Written when a store is created (or first opened writable by a version that writes it): a store
#: that has existed never silently starts over because its data file went missing or empty.
MARKER = "store.json"
_MARKER_FORMAT = "eventstore"
#: Present from just before a creation makes the data file until the marker is written: an empty data file beside
#: it is a creation under way (LMDB serialises it) or killed before LMDB wrote its first pages, not a lost store.
CREATING = "creating"
# LMDB's lock file: a header of two cache lines plus one 64-byte slot per reader beyond the first.
_LOCK_FILE_BYTES = 192 + 64 * (MAX_READERS - 1)
# A data file of at most this many pages (4 MiB) has every page checked at each open (a walk costs time
# in proportion to the pages: docs/benchmarks.md); a larger one has only its meta pages, size and tree
# roots checked, and every page by verify.
_WALK_AT_OPEN_PAGES = 1024


def on_read_only_media(path: Path) -> bool:
    return bool(os.statvfs(path).f_flag & os.ST_RDONLY)


def is_permission_error(exc: lmdb.Error) -> bool:
    return any(word in str(exc) for word in ("Permission denied", "Read-only file system"))


def fsync(path: Path) -> None:
    descriptor = os.open(path, os.O_RDONLY)
    try:
        os.fsync(descriptor)
    finally:
        os.close(descriptor)


def file_identity(path: Path) -> tuple[int, int] | None:
    """(device, inode) of a file, or None if there is none."""
    try:
        found = os.stat(path)
    except FileNotFoundError:
        return None
    return found.st_dev, found.st_ino


def check_files(path: Path) -> None:
    """Refuse a data file that is missing or empty where a store has existed, or that LMDB would crash on.

    Raises:
        StoreCorrupted: naming the file and what is wrong (a data or lock file that is not a regular file too).
    """
    data = path / DATA
    try:
        found = data.stat()
    except FileNotFoundError:
        size = -1
    else:
        if not stat.S_ISREG(found.st_mode):  # LMDB would wait forever reading a FIFO
            raise StoreCorrupted(f"{data} is not a regular file, so it is not a store's data file; put data.mdb "
                                 "back from a backup, or remove it if nothing was ever stored there")
        size = found.st_size
    lock = path / LOCK
    with contextlib.suppress(FileNotFoundError):
        if not stat.S_ISREG(lock.stat().st_mode):  # LMDB fails on it with a bare OS error
            raise StoreCorrupted(f"{lock} is not a regular file, so it is not the store's LMDB lock file; remove it")
    if size > 0:
        lmdb_check.check_file(data, walk_pages_up_to=_WALK_AT_OPEN_PAGES)
        return
    if size == 0 and (path / CREATING).exists() and not (path / MARKER).exists():
        return
    # A missing data file beside lock files alone is a creation killed before LMDB made the file: nothing was
    # ever committed there. An empty one beside them is a store made before the marker existed, emptied.
    witnesses = (MARKER, LOCK, USERS_LOCK) if size == 0 else (MARKER,)
    traces = [name for name in witnesses if (path / name).exists()]
    if traces:
        state = "is empty" if size == 0 else "is missing"
        raise StoreCorrupted(
            f"{data} {state}, but a store existed at {path} ({', '.join(traces)} is there): opening it would "
            f"silently start a new, empty store. Put data.mdb back from a backup; if nothing was ever "
            f"stored there, remove the directory")


def open_users_lock(lock: Path, *, create: bool) -> BinaryIO | None:
    """Open ``users.lock`` to hold a lock on (read access is enough), or None if a read-only open finds none.

    Raises:
        StoreInaccessible: this process may not read it.
        StoreCorrupted: it is not a regular file (a directory, a FIFO, a symbolic link).
        StoreFull: there is no room to create it.
    """
    # Non-blocking: opening a FIFO planted there would otherwise wait for a writer forever.
    flags = os.O_RDONLY | os.O_NONBLOCK | os.O_NOFOLLOW | os.O_CLOEXEC | (os.O_CREAT if create else 0)
    not_a_lock_file = StoreCorrupted(f"{lock} is not a regular file, so it is not the store's lock file; remove it")
    try:
        descriptor = os.open(lock, flags, 0o644)
    except FileNotFoundError:
        if create:
            raise StoreNotFound(f"there is no store at {lock.parent}: the directory is gone") from None
        return None  # a read-only store that was never opened writable by this version
    except PermissionError:
        raise StoreInaccessible(f"this process may not open {lock}, so it cannot take part in the store's "
                                "locking; fix the file's permissions or open the store as its owner") from None
    except OSError as exc:
        if exc.errno in (errno.EISDIR, errno.ELOOP):
            raise not_a_lock_file from None
        if exc.errno in (errno.ENOSPC, errno.EDQUOT):
            raise StoreFull(f"no room on the file system to create {lock}") from None
        raise StoreInaccessible(f"cannot open {lock}: {exc.strerror}") from None
    if not stat.S_ISREG(os.fstat(descriptor).st_mode):
        os.close(descriptor)
        raise not_a_lock_file
    return os.fdopen(descriptor, "rb")


def undo_creation(path: Path) -> None:
    """Remove what a failed creation left (a full disk, say), so that the next try is a creation again.

    A data file of two pages at most holds LMDB's meta pages and nothing committed.
    """
    data = path / DATA
    if data.exists() and data.stat().st_size > 2 * os.sysconf("SC_PAGE_SIZE"):
        return  # another process created the store meanwhile
    for name in (DATA, LOCK, USERS_LOCK, CREATING):
        (path / name).unlink(missing_ok=True)


def note_creation(path: Path) -> None:
    """Say that a creation is under way, before LMDB makes the data file (see ``CREATING``)."""
    # Without the note, an interrupted creation is refused as a lost store: safe, if less convenient. The note
    # must reach the disk before the data file can, or a crash may keep only the latter.
    with contextlib.suppress(OSError):
        (path / CREATING).touch()
        fsync(path)


def write_marker(path: Path) -> None:
    """Record that a store exists here (atomically; a failure to write it is not fatal to the open)."""
    marker = path / MARKER
    if marker.exists():
        return
    scratch = path / f".{MARKER}.{os.getpid()}.tmp"
    try:
        scratch.write_text(json.dumps({"format": _MARKER_FORMAT, "version": 1, "id": uuid.uuid4().hex}) + "\n")
        fsync(scratch)
        os.replace(scratch, marker)
        fsync(path)
    except OSError:
        scratch.unlink(missing_ok=True)  # a full disk, say: the next writable open tries again


def reserve_lock_file(path: Path) -> None:
    """Give LMDB's lock file its blocks before LMDB maps it: a sparse one is a SIGBUS on a full disk.

    Raises:
        StoreFull: the file system has no room for it.
    """
    lock = path / LOCK
    try:
        descriptor = os.open(lock, os.O_RDWR | os.O_CREAT, 0o644)
    except PermissionError:
        return  # LMDB says so itself, and a read-only open copes
    except IsADirectoryError:
        raise StoreCorrupted(f"{lock} is a directory, not the store's LMDB lock file; remove it") from None
    try:
        if os.fstat(descriptor).st_size <= _LOCK_FILE_BYTES:
            os.posix_fallocate(descriptor, 0, _LOCK_FILE_BYTES)
    except OSError as exc:
        if exc.errno in (errno.ENOSPC, errno.EDQUOT):
            raise StoreFull(f"no room on the file system for the store at {path}: {exc.strerror}") from None
        if exc.errno not in (errno.EOPNOTSUPP, errno.EINVAL):
            raise StoreInaccessible(f"cannot prepare {lock}: {exc.strerror}") from None
    finally:
        os.close(descriptor)
