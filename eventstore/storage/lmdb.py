"""The LMDB environment: opened once per path and process, grown when full, guarded against fork.

LMDB forbids opening one environment twice in a process (closing either copy
drops the other's locks), using an environment in a forked child, and
resizing the map while a transaction of this process is active. This module
is the one place that deals with those rules:

* ``Environment.acquire`` hands out one shared, reference-counted environment per
  (process, path);
* every transaction checks the process id and refuses a forked child;
* a gate lets any number of transactions run together, or one map resize alone.
"""

from __future__ import annotations

import enum
import fcntl
import os
import shutil
import threading
from contextlib import contextmanager
from pathlib import Path
from typing import BinaryIO, Callable, ContextManager, Iterator, TypeVar

import lmdb

from ._errors import (
    EventStoreError,
    IncompatibleStore,
    StoreBusy,
    StoreClosed,
    StoreCorrupted,
    StoreFull,
    StoreNotFound,
    StoreReadOnly,
    StoreUsedAfterFork,
)

__all__ = ["Durability", "Environment", "Transaction"]

T = TypeVar("T")
Transaction = lmdb.Transaction

_INITIAL_MAP_SIZE = 64 << 20
_MAX_DBS = 32
# Reader slots: one per concurrent read transaction in all processes. Slots of
# processes that died are reclaimed on every open, so only live readers count.
_MAX_READERS = 1024
_READER_CHECK_EVERY = 64
# Transactions a forked child inherited, kept referenced so that they are never ended there.
_INHERITED: list[Transaction] = []
_USERS_LOCK = "users.lock"
_VACUUM_DIR = "vacuum.tmp"


class Durability(str, enum.Enum):
    """What a commit survives, and what it costs (named after SQLite's ``synchronous`` levels).

    A crash of the process never loses a commit in any mode: the kernel has it.
    """

    #: Every commit survives power loss. LMDB flushes twice per commit (data pages, then the meta page).
    FULL = "full"
    #: One flush per commit (the meta page is written, not flushed): a power loss or OS crash may roll
    #: back the latest commit, never damages the store (SQLite's WAL with ``synchronous=NORMAL``).
    NORMAL = "normal"
    #: No flush: a power loss or OS crash may lose recent commits or damage the store (LMDB's
    #: ``MDB_NOSYNC``; ``verify`` would report it). For bulk loads and scratch stores.
    OFF = "off"


# What py-lmdb raises when the file's pages do not make sense.
_DAMAGE = (lmdb.CorruptedError, lmdb.PageNotFoundError, lmdb.InvalidError, lmdb.BadValsizeError,
           lmdb.PageFullError, lmdb.IncompatibleError)


def _on_read_only_media(path: Path) -> bool:
    return bool(os.statvfs(path).f_flag & os.ST_RDONLY)


def _is_permission_error(exc: lmdb.Error) -> bool:
    return any(word in str(exc) for word in ("Permission denied", "Read-only file system"))


def _fsync(path: Path) -> None:
    descriptor = os.open(path, os.O_RDONLY)
    try:
        os.fsync(descriptor)
    finally:
        os.close(descriptor)


class _Gate:
    """Many transactions at once, or one map resize alone."""

    def __init__(self) -> None:
        self._condition = threading.Condition()
        self._active = 0
        self._resizing = False
        self._owner: int | None = None
        self._held = threading.local()

    def enter_shared(self) -> None:
        with self._condition:
            # The thread that holds the gate alone may still open transactions (vacuum reopens databases).
            while self._resizing and self._owner != threading.get_ident():
                self._condition.wait()
            self._active += 1
        self._held.count = getattr(self._held, "count", 0) + 1

    def leave_shared(self) -> None:
        self._held.count -= 1
        with self._condition:
            self._active -= 1
            if not self._active:
                self._condition.notify_all()

    @contextmanager
    def exclusive(self) -> Iterator[None]:
        if getattr(self._held, "count", 0):
            # Waiting here for our own open transaction would never end.
            raise StoreFull(
                "the store's map must grow, which cannot happen while this thread holds an "
                "open read (finish iterating before writing)"
            )
        with self._condition:
            while self._resizing:
                self._condition.wait()
            self._resizing = True
            while self._active:
                self._condition.wait()
            self._owner = threading.get_ident()
        try:
            yield
        finally:
            with self._condition:
                self._resizing = False
                self._owner = None
                self._condition.notify_all()


class Environment:
    """One open LMDB environment, shared by every ``SessionStore`` of a process on that path."""

    _registry: dict[tuple[int, str], Environment] = {}
    _registry_lock = threading.Lock()

    def __init__(self, path: Path, *, durability: Durability, max_size: int | None, readonly: bool) -> None:
        self.path = path
        self.max_size = max_size
        self._pid = os.getpid()
        self._references = 0
        self._gate = _Gate()
        self._write_lock = threading.RLock()  # re-entered when vacuum reopens the databases
        self.durability = durability
        self._commits = 0
        # A store in a directory we cannot write (read-only media, say) serves reads.
        self.readonly = readonly or not os.access(path, os.W_OK)
        if self.readonly and not (path / "data.mdb").exists():
            raise StoreNotFound(f"there is no store at {path}")
        # Every process holds a shared lock on this file while the store is open, so
        # that vacuum can tell whether it has the store to itself.
        self._users: BinaryIO | None = None
        try:
            self._users = open(path / _USERS_LOCK, "rb" if self.readonly else "a+b")  # noqa: SIM115 - until release()
            fcntl.flock(self._users, fcntl.LOCK_SH)
        except FileNotFoundError:
            pass  # a read-only store that was never opened writable by this version
        self._env = self._open_lmdb()
        self._clear_stale_readers()

    def _exclude_writers(self) -> None:
        """Hold ``users.lock`` alone while reading without a reader slot: writers wait to open the store."""
        if self._users is None:
            return  # never opened writable by this version: there is no writer to keep out
        try:
            fcntl.flock(self._users, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            raise StoreBusy(f"{self.path} is open for writing elsewhere, and this process cannot register "
                            "as a reader (its lock file is not writable)") from None

    def _clear_stale_readers(self) -> None:
        """Free reader slots left by processes that died mid-read (LMDB does not, by itself)."""
        try:
            self._env.reader_check()
        except lmdb.Error:
            pass  # no reader table (read-only media): nothing to clear

    def _open_lmdb(self) -> lmdb.Environment:
        size = min(_INITIAL_MAP_SIZE, self.max_size) if self.max_size else _INITIAL_MAP_SIZE
        options = dict(map_size=size, max_dbs=_MAX_DBS, sync=self.durability is not Durability.OFF,
                       metasync=self.durability is Durability.FULL, max_readers=_MAX_READERS, readonly=self.readonly)
        try:
            try:
                return lmdb.open(str(self.path), **options)
            except lmdb.Error as exc:
                if not self.readonly or not _is_permission_error(exc):
                    raise
                # We cannot write lock.mdb, so LMDB cannot protect our snapshot from a writer.
                # On read-only media no writer can exist; elsewhere, keep writers out while we read.
                if not _on_read_only_media(self.path):
                    self._exclude_writers()
                return lmdb.open(str(self.path), lock=False, **options)
        except lmdb.InvalidError as exc:
            raise StoreCorrupted(f"{self.path} is not a usable store: {exc}") from None
        except lmdb.Error as exc:
            raise EventStoreError(f"cannot open the store at {self.path}: {exc}") from None

    @classmethod
    def acquire(cls, path: Path, *, durability: Durability = Durability.FULL, max_size: int | None = None,
                readonly: bool = False) -> Environment:
        """The process's environment for ``path``, opened on first use.

        A read-only request shares a writable environment already open; a writable
        request for a path this process opened read-only raises ``StoreBusy``.
        """
        key = (os.getpid(), str(path.resolve()))
        with cls._registry_lock:
            environment = cls._registry.get(key)
            if environment is None:
                if any(other[1] == key[1] for other in cls._registry):
                    # py-lmdb (and LMDB) forbid a second open of a path in a process, and a
                    # forked child inherits the parent's open environment.
                    raise StoreUsedAfterFork(
                        f"{path} was open in the parent when this process forked, so it cannot be opened "
                        "here; start workers with multiprocessing's 'spawn' or 'forkserver' method")
                environment = cls(path, durability=durability, max_size=max_size, readonly=readonly)
                cls._registry[key] = environment
            elif environment.readonly and not readonly:
                raise StoreBusy(f"{path} is open read-only in this process; close it before opening it writable")
            elif (environment.durability, environment.max_size) != (durability, max_size):
                # One environment serves both: silently weaker durability or no cap would surprise.
                raise StoreBusy(f"{path} is already open in this process with durability "
                                f"{environment.durability.value!r}, "
                                f"max_size={environment.max_size}; open it with the same options")
            environment._references += 1
            return environment

    def release(self) -> None:
        """Drop one reference; the last one closes the environment."""
        with self._registry_lock:
            self._references -= 1
            if self._references:
                return
            self._registry.pop((self._pid, str(self.path.resolve())), None)
        if os.getpid() == self._pid:
            with self._gate.exclusive():
                self._env.close()
        if self._users is not None:
            self._users.close()

    def vacuum(self, reopen: Callable[[], None]) -> None:
        """Rewrite the data file compactly (LMDB's compacting copy) and swap it in.

        Freed pages, which may still hold old bytes, are left behind. The new file
        is complete and on disk before an atomic rename replaces the old one.
        Every named database handle is invalid afterwards: ``reopen`` opens them
        again before any other thread may start a transaction.

        Raises:
            StoreBusy: another store object in this process, or another process, has the store open.
        """
        self._refuse_if_readonly()
        assert self._users is not None
        with self._registry_lock:
            if self._references != 1:
                raise StoreBusy("vacuum needs the store to itself; close the other SessionStore objects first")
        with self._write_lock, self._gate.exclusive():
            try:
                fcntl.flock(self._users, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                fcntl.flock(self._users, fcntl.LOCK_SH)
                raise StoreBusy("vacuum needs the store to itself; another process has it open") from None
            try:
                scratch = self.path / _VACUUM_DIR
                shutil.rmtree(scratch, ignore_errors=True)
                scratch.mkdir()
                self._env.copy(str(scratch), compact=True)
                _fsync(scratch / "data.mdb")
                self._env.close()
                os.replace(scratch / "data.mdb", self.path / "data.mdb")
                _fsync(self.path)
                scratch.rmdir()
                self._env = self._open_lmdb()
                reopen()
            finally:
                fcntl.flock(self._users, fcntl.LOCK_SH)

    def open_db(self, name: bytes) -> lmdb._Database:
        """Open (creating if needed) a named database; call once per name at startup."""
        if self.readonly:
            with self._gate_only():
                try:
                    # py-lmdb keeps a handle only if it opened the read transaction itself.
                    return self._env.open_db(name, create=False)
                except lmdb.NotFoundError:
                    raise IncompatibleStore(f"the store has no {name.decode()} database; open it writable once "
                                            "with this version to upgrade it") from None
        with self._write_lock, self._transaction(write=True) as txn:
            # Passing the transaction explicitly: open_db would otherwise start its own
            # write transaction, which hangs while this thread holds one.
            return self._env.open_db(name, txn=txn)

    @contextmanager
    def _gate_only(self) -> Iterator[None]:
        self._gate.enter_shared()
        try:
            yield
        finally:
            self._gate.leave_shared()

    def _refuse_if_readonly(self) -> None:
        if self.readonly:
            raise StoreReadOnly(f"the store at {self.path} is open read-only")

    def read(self) -> ContextManager[Transaction]:
        """A read transaction: a consistent snapshot. Keep it short: it pins old pages."""
        return self._transaction(write=False)

    def write(self, body: Callable[[Transaction], T]) -> T:
        """Run ``body`` in one write transaction and commit; grow the map and retry if full.

        ``body`` may run more than once, so it must do nothing but work in the transaction.
        """
        self._refuse_if_readonly()
        while True:
            try:
                with self._write_lock, self._transaction(write=True) as txn:
                    return body(txn)
            except lmdb.MapFullError:
                self._grow()

    def _grow(self) -> None:
        self._clear_stale_readers()  # pages pinned by dead readers may be all the room needed
        with self._gate.exclusive():
            current = self._env.info()["map_size"]
            if self.max_size is not None and current >= self.max_size:
                raise StoreFull(f"the store reached its size cap of {self.max_size} bytes")
            wanted = current * 2
            self._env.set_mapsize(min(wanted, self.max_size) if self.max_size else wanted)

    @contextmanager
    def _transaction(self, *, write: bool) -> Iterator[Transaction]:
        if os.getpid() != self._pid:
            raise StoreUsedAfterFork(
                "this store was opened before fork(); open a new SessionStore in the child process"
            )
        if not self._references:
            raise StoreClosed("the store is closed")
        while True:
            self._gate.enter_shared()
            try:
                txn = self._env.begin(write=write)
                break
            except lmdb.MapResizedError:
                self._gate.leave_shared()
                # Another process grew the map: adopt its size and try again.
                with self._gate.exclusive():
                    self._env.set_mapsize(0)
            except lmdb.ReadersFullError:
                self._gate.leave_shared()
                if not self._env.reader_check():
                    raise EventStoreError(
                        f"the store at {self.path} has {self._env.max_readers()} readers at once, its limit"
                    ) from None
            except BaseException:
                self._gate.leave_shared()
                raise
        try:
            try:
                yield txn
            except BaseException:
                self._end(txn, commit=False)
                raise
            self._end(txn, commit=True)
        except (lmdb.MapFullError, lmdb.ReadonlyError):
            raise  # handled by write(): grow the map, or refuse
        except _DAMAGE as exc:
            raise StoreCorrupted(f"the LMDB file is damaged: {exc}") from None
        except lmdb.Error as exc:
            raise EventStoreError(f"the store at {self.path} failed: {exc}") from None
        finally:
            self._gate.leave_shared()

    def _end(self, txn: Transaction, *, commit: bool) -> None:
        if os.getpid() != self._pid:
            # A forked child unwinding a transaction it inherited: ending it would free the
            # parent's reader slot in the shared lock file. Keep it alive and untouched.
            _INHERITED.append(txn)
            return
        if commit:
            txn.commit()
        else:
            txn.abort()
        self._commits += 1
        if self._commits % _READER_CHECK_EVERY == 0:
            self._clear_stale_readers()  # dead readers would pin pages and grow the file

    def file_size(self) -> int:
        """Size of the data file on disk, in bytes."""
        return os.path.getsize(self.path / "data.mdb")
