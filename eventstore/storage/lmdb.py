"""The LMDB storage engine: the ``Storage`` protocol over one LMDB environment.

The environment is opened once per path and process, grown when full, and guarded against fork.

LMDB forbids opening one environment twice in a process (closing either copy
drops the other's locks), using an environment in a forked child, and
resizing the map while a transaction of this process is active. This module
is the one place that deals with those rules:

* ``Environment.acquire`` hands out one shared, reference-counted environment per
  (process, path);
* every transaction checks the process id and refuses a forked child;
* a forked child opens environments of its own: the inherited ones are never used,
  closed or freed there (see ``_after_fork_in_child``);
* a gate lets any number of transactions run together, or one map resize alone.

Beside it: ``lmdb_transaction`` (one transaction behind the storage protocol, py-lmdb's errors translated),
``lmdb_concurrency`` (the gate, the writers' lock and group commit) and ``lmdb_files`` (the store's own files
and the checks made at open).
"""

from __future__ import annotations

import ctypes
import errno
import fcntl
import functools
import os
import shutil
import threading
import time
import weakref
from collections.abc import Callable, Iterator
from contextlib import AbstractContextManager, contextmanager, suppress
from pathlib import Path
from typing import BinaryIO, ClassVar, TypeVar

import lmdb
from lmdb import _envid

from .._errors import (
    HELD_OPEN_BY,
    EventStoreError,
    IncompatibleStore,
    StoreBusy,
    StoreClosed,
    StoreCorrupted,
    StoreFull,
    StoreGrowthBlocked,
    StoreInaccessible,
    StoreNotFound,
    StoreReadOnly,
    StoreUsedAfterFork,
)
from . import lmdb_check
from .lmdb_concurrency import CommitListeners, Gate, GroupQueue, Member, WriteLock
from .lmdb_files import (
    CREATING,
    DATA,
    LOCK,
    MARKER,
    MAX_READERS,
    USERS_LOCK,
    check_files,
    file_identity,
    fsync,
    is_permission_error,
    note_creation,
    on_read_only_media,
    open_users_lock,
    reserve_lock_file,
    undo_creation,
    write_marker,
)
from .lmdb_transaction import LmdbSpace, LmdbTransaction, MapFull, translated
from .protocol import BeforeCommit, Durability, Outcome, SpaceUsage, StorageUsage, VacuumRewrite, WriteTransaction

__all__ = ["Environment", "LmdbSpace", "LmdbTransaction"]

T = TypeVar("T")

_INITIAL_MAP_SIZE = 64 << 20
#: Bytes of pages ``make_room`` keeps free a byte of keys and values to write: pages are partly filled (those that
#: split), each entry has a header, a large value takes whole pages, and a commit copies every page it changes.
_ROOM_FACTOR = 2
_MAX_DBS = 32
_READER_CHECK_EVERY = 64
_OPEN_ATTEMPTS = 8
# Seconds an open waits for another thread's close of the same store: a close waits for the transactions under
# way, so one begun by the opening thread itself would otherwise wait for it forever.
_CLOSE_WAIT = 30.0
# Transactions a forked child inherited, kept referenced so that they are never ended there.
_INHERITED: list[lmdb.Transaction[bytes]] = []
_VACUUM_DIR = "vacuum.tmp"
# A page check needs the meta page of its read transaction, which two commits meanwhile overwrite.
_PAGE_CHECK_ATTEMPTS = 100


# py-lmdb's identities of an environment's files, which it keeps for every environment open in the process.
_LMDB_ENV_KEYS: Callable[[str | bytes, bool], tuple[object, ...]] = _envid.env_keys


def _keep_forever(obj: object) -> None:
    """Hold a reference that is never dropped (py-lmdb closes an environment it frees, even in a forked child)."""
    ctypes.pythonapi.Py_IncRef(ctypes.py_object(obj))


def _env_keys_of_this_process(path: str | bytes, subdir: bool) -> tuple[object, ...]:
    return tuple((os.getpid(), key) for key in _LMDB_ENV_KEYS(path, subdir))


class _ThisProcess:
    """This process's id, kept by the fork hook: every transaction compares it twice, and ``os.getpid()`` is a
    system call (the two were about a sixth of a one-key read)."""

    pid = os.getpid()


_this_process = _ThisProcess()


def _after_fork_in_child() -> None:
    """Leave the environments inherited from the parent alone, and let this process open its own.

    LMDB lets a child open an environment of its own, but it must neither use nor close the inherited
    one: closing it would clear this process's reader slots in the shared lock file and drop its file
    locks. So the inherited ones stay allocated until the process ends, are never used (every
    transaction checks the process id), and leave the registry. py-lmdb's own registry of open files
    survives fork too and would refuse the child's open: keyed by process, it names the inherited
    environments as the parent's.
    """
    _this_process.pid = os.getpid()
    Environment._registry_lock = threading.Lock()  # another thread may have held it at the fork
    Environment._registry_changed = threading.Condition(Environment._registry_lock)
    Environment._registry.clear()
    for environment in list(_OPENED):
        _keep_forever(environment._env)
    _envid.env_keys = _env_keys_of_this_process


#: A key put into the main database and deleted in the same transaction (no named database bears it).
_RELEASE_KEY = b"\x00eventstore: release freed pages"


def _leave_as_it_was(txn: WriteTransaction) -> None:
    """Change nothing, in a write that commits: a key put into the main database and taken out again at once."""
    assert isinstance(txn, LmdbTransaction)  # this engine's writes hand out its own transactions
    raw = txn.raw
    raw.put(_RELEASE_KEY, b"")
    raw.delete(_RELEASE_KEY)


def _closed_while_held(path: Path) -> StoreClosed:
    """What a write of a thread holding a transaction open raises while another thread closes the store."""
    return StoreClosed(f"the store at {path} is being closed by another thread, which waits for every transaction "
                       f"of this process to end, and this thread holds one open {HELD_OPEN_BY}; nothing was written")


class _Discarded(Exception):
    """A group's ``before_commit`` said not to commit: the transaction aborts, each body has its outcome."""

    def __init__(self, outcomes: list[Outcome]) -> None:
        super().__init__("discarded before the commit")
        self.outcomes = outcomes


class _Transaction:
    """A transaction of ``Environment`` as a context manager class: a generator-based one was a fifth of a one-key
    read (``session_exists``), and a sixth of a lone command's write plumbing."""

    __slots__ = ("_environment", "_write", "_txn")

    def __init__(self, environment: Environment, write: bool = False) -> None:
        self._environment = environment
        self._write = write

    def __enter__(self) -> LmdbTransaction:
        environment = self._environment
        environment._refuse_if_forked()
        if not environment._references:
            raise StoreClosed("the store is closed")
        self._txn = environment._begin(self._write)
        if self._write:
            environment._writing_thread = threading.get_ident()
        return LmdbTransaction(self._txn)

    def __exit__(self, kind: type[BaseException] | None, error: BaseException | None, _trace: object) -> None:
        environment = self._environment
        try:
            environment._end(self._txn, commit=kind is None)
        except lmdb.Error as exc:
            raise translated(exc, environment.path) from None  # a full map: write() grows it and runs the body again
        finally:
            if self._write:
                environment._writing_thread = None
            environment._gate.leave_shared()
        if isinstance(error, lmdb.Error):
            raise translated(error, environment.path) from None


class Environment:
    """One open LMDB environment, shared by every ``SessionStore`` of a process on that path."""

    _registry: ClassVar[dict[tuple[int, str], Environment]] = {}
    _registry_lock = threading.Lock()
    #: Notified when a closing environment leaves the registry.
    _registry_changed = threading.Condition(_registry_lock)
    #: ``users.lock``, held shared while open; ``None`` until ``_open_files`` opens it, or where it is absent.
    #: Declared here, not set in ``__init__``, so the checker sees that ``_open_files`` may have set it.
    _users: BinaryIO | None = None

    def __init__(self, path: Path, *, durability: Durability, max_size: int | None, readonly: bool) -> None:
        self.path = path
        self.max_size = max_size
        self._pid = os.getpid()
        self._references = 0
        #: Its last reference is gone and its holder is closing it; it stays in the registry until closed.
        self._closing = False
        self._gate = Gate()
        self._write_lock = WriteLock()  # re-entered when vacuum reopens the databases
        self._writing_thread: int | None = None  # the thread whose write transaction is open
        # Every space handed out, so that vacuum can give each the new file's handle: a command that a
        # component made before the vacuum (queued behind it, say) then writes through it as through a new one.
        self._spaces: weakref.WeakSet[LmdbSpace] = weakref.WeakSet()
        self._group = GroupQueue()
        self._listeners = CommitListeners()
        self.durability = durability
        self._commits = 0
        # A store in a directory we cannot write (read-only media, say) serves reads.
        self.readonly = readonly or not os.access(path, os.W_OK)
        try:
            check_files(path)
        except PermissionError as exc:
            raise StoreInaccessible(f"this process may not read the store at {path}: {exc}") from None
        except OSError as exc:
            raise StoreInaccessible(f"cannot read the store at {path}: {exc}") from None
        if self.readonly and not (path / DATA).exists():
            raise StoreNotFound(f"there is no store at {path}")
        if self.readonly and (path / DATA).stat().st_size == 0:  # LMDB cannot read it ("Bad file descriptor")
            raise StoreNotFound(f"there is no store at {path}: its data file is empty (a creation that never "
                                "finished, or one under way)")
        creating = not self.readonly and not (path / DATA).exists()
        if creating:
            note_creation(path)
        try:
            self._open_files()
        except BaseException:
            if self._users is not None:
                self._users.close()
            if creating:
                undo_creation(path)
            raise
        #: Which data file this environment has open: a replaced one is another store (see ``acquire``).
        self.identity = file_identity(path / DATA)
        self._lock_identity = file_identity(path / LOCK)
        if not self.readonly:
            write_marker(path)
            if (path / MARKER).exists():
                (path / CREATING).unlink(missing_ok=True)
        self._clear_stale_readers()
        _OPENED.add(self)

    def _open_files(self) -> None:
        if not self.readonly:
            reserve_lock_file(self.path)
        # Every process holds a shared lock on this file while the store is open, so
        # that vacuum can tell whether it has the store to itself.
        self._users = open_users_lock(self.path / USERS_LOCK, create=not self.readonly)
        if self._users is not None:
            fcntl.flock(self._users, fcntl.LOCK_SH)
        self._env = self._open_lmdb()

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
        with suppress(lmdb.Error):  # no reader table (read-only media): nothing to clear
            self._env.reader_check()

    def _open_lmdb(self) -> lmdb.Environment:
        size = min(_INITIAL_MAP_SIZE, self.max_size) if self.max_size else _INITIAL_MAP_SIZE
        open_environment = functools.partial(  # the path as bytes: lmdb encodes a str as strict UTF-8
            lmdb.open, os.fsencode(self.path), map_size=size, max_dbs=_MAX_DBS,
            sync=self.durability is not Durability.OFF, metasync=self.durability is Durability.FULL,
            max_readers=MAX_READERS, readonly=self.readonly)
        try:
            try:
                return self._opened_while_others_grow(open_environment)
            except lmdb.Error as exc:
                if not self.readonly or not is_permission_error(exc):
                    raise
                # We cannot write lock.mdb, so LMDB cannot protect our snapshot from a writer.
                # On read-only media no writer can exist; elsewhere, keep writers out while we read.
                if not on_read_only_media(self.path):
                    self._exclude_writers()
                return open_environment(lock=False)
        except lmdb.InvalidError as exc:
            raise StoreCorrupted(f"{self.path} is not a usable store: {exc}") from None
        except lmdb.Error as exc:
            if os.strerror(errno.ENOSPC) in str(exc) or os.strerror(errno.EDQUOT) in str(exc):
                raise StoreFull(f"no room on the file system for the store at {self.path}: {exc}") from None
            raise StoreInaccessible(f"cannot open the store at {self.path}: {exc}") from None

    @staticmethod
    def _opened_while_others_grow(open_environment: Callable[[], lmdb.Environment]) -> lmdb.Environment:
        """``open_environment()``, opened again while another process's growth of the map gets in its way.

        LMDB sizes a new environment's map from the pages in use when it opens the file; py-lmdb then
        begins a transaction, which fails if another process grew the map and wrote past that size
        in between. Opening again reads the new size; each retry needs another growth in a few
        microseconds, so a handful always suffice."""
        for _attempt in range(_OPEN_ATTEMPTS - 1):
            try:
                return open_environment()
            except lmdb.MapResizedError:
                continue
        return open_environment()

    @classmethod
    def acquire(cls, path: Path, *, durability: Durability = Durability.FULL, max_size: int | None = None,
                readonly: bool = False) -> Environment:
        """The process's environment for ``path``, opened on first use.

        A read-only request shares a writable environment already open; a writable
        request for a path this process opened read-only raises ``StoreBusy``.
        """
        key = (os.getpid(), str(path.resolve()))
        with cls._registry_changed:
            environment = cls._registry.get(key)
            deadline = time.monotonic() + _CLOSE_WAIT
            while environment is not None and environment._closing:
                # Opening the files while they are still open would be refused by py-lmdb ("already open in
                # this process"), or, were it not, drop the closing environment's locks: wait for the close.
                if environment._gate.held_here():  # the close waits for this thread's transaction
                    raise StoreBusy(f"{path} is being closed by another thread of this process, which waits for "
                                    f"the transaction this thread holds open {HELD_OPEN_BY}; open it once that call "
                                    "returns")
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    raise StoreBusy(f"{path} is being closed by another thread of this process, which waits for "
                                    "the transactions under way; open it once that close returns")
                cls._registry_changed.wait(remaining)
                environment = cls._registry.get(key)
            if environment is not None and environment.identity != file_identity(path / DATA):
                # The directory was replaced (moved aside, restored from a backup) while this
                # process had it open: its holders keep the old file; this caller gets the new one.
                if environment._lock_identity == file_identity(path / LOCK):
                    # Two environments on one lock file would drop each other's locks (see above).
                    raise StoreBusy(f"{path / DATA} was replaced while this process had the store open; "
                                    "close the SessionStore objects of the old one first")
                del cls._registry[key]
                environment = None
            if environment is None:
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
        """Drop one reference; the last one closes the environment.

        The environment leaves the registry once closed, not before: ``acquire`` on the same path meanwhile
        waits for the close instead of opening the files a second time. The close itself runs outside the
        registry's lock, as it waits for the transactions still running in the process.
        """
        with self._registry_lock:
            if self._close_waits_for_this_thread():
                raise StoreBusy(f"the store at {self.path} cannot close from this thread, which holds one of its "
                                f"transactions open {HELD_OPEN_BY}: the close waits for every transaction of this "
                                "process to end; the store stays open: close it once that call returns")
            self._references -= 1
            if self._references:
                return
            self._closing = True
        try:
            if os.getpid() == self._pid:
                # A write of a thread holding a transaction open, queued behind a writer that waits at the gate
                # for this close, would wait for that writer while the close waits for it: it is refused.
                with self._group.refusing_held(functools.partial(_closed_while_held, self.path)), \
                        self._gate.exclusive(self.path):
                    self._env.close()
            if self._users is not None:
                self._users.close()
        finally:
            with self._registry_changed:
                key = (self._pid, str(self.path.resolve()))
                if self._registry.get(key) is self:  # not if it was replaced (see ``acquire``)
                    del self._registry[key]
                self._registry_changed.notify_all()

    def release_waits_for_this_thread(self) -> bool:
        with self._registry_lock:
            return self._close_waits_for_this_thread()

    def _close_waits_for_this_thread(self) -> bool:
        """Whether the close of this environment, under way or given by the next release, waits for a transaction
        this thread holds open. Only the last store object's release closes it, and only in the process that
        opened it: a forked child's release closes no environment and waits for nothing. Called under the
        registry's lock, which the count of references and the closing flag change under."""
        closes = self._closing or self._references == 1
        # The close waits for every transaction of the process to end, this thread's own among them.
        return closes and os.getpid() == self._pid and self._gate.held_here()

    def vacuum(self, reopen: Callable[[], None], rewrite: VacuumRewrite | None = None) -> None:
        """Rewrite the data file from its live key-values alone (changed on the way as ``rewrite`` says), and
        swap it in.

        Nothing but what the databases hold reaches the new file: not freed pages,
        nor the stale bytes a live page keeps in its unused space (LMDB's
        compacting copy copies those). The new file is complete and on disk
        before an atomic rename replaces the old one. Every space handed out
        gets the new file's handle, and ``reopen`` wires the store again,
        before any other thread may start a transaction; a command queued
        behind the vacuum then leads the next commit.

        Raises:
            StoreBusy: another store object in this process, or another process, has the store open.
        """
        self._refuse_if_forked()  # the child would replace the file under its parent
        self._refuse_if_readonly()
        assert self._users is not None
        with self._registry_lock:
            if self._references != 1:
                raise StoreBusy("vacuum needs the store to itself; close the other SessionStore objects first")
        try:
            with self._write_lock, self._growing():
                try:
                    fcntl.flock(self._users, fcntl.LOCK_EX | fcntl.LOCK_NB)
                except BlockingIOError:
                    fcntl.flock(self._users, fcntl.LOCK_SH)
                    raise StoreBusy("vacuum needs the store to itself; another process has it open") from None
                try:
                    scratch = self.path / _VACUUM_DIR
                    shutil.rmtree(scratch, ignore_errors=True)
                    scratch.mkdir()
                    try:
                        self._write_live_data(scratch, rewrite)
                    except BaseException as exc:
                        shutil.rmtree(scratch, ignore_errors=True)  # a partial copy: nothing to keep
                        if isinstance(exc, lmdb.Error):
                            raise translated(exc, self.path) from None
                        raise
                    fsync(scratch / "data.mdb")
                    self._env.close()
                    os.replace(scratch / "data.mdb", self.path / "data.mdb")
                    fsync(self.path)
                    scratch.rmdir()
                    self._env = self._open_lmdb()
                    self.identity = file_identity(self.path / DATA)
                    for space in list(self._spaces):
                        space.handle = self._open_db(space.name.encode())
                    reopen()
                finally:
                    fcntl.flock(self._users, fcntl.LOCK_SH)
        finally:
            self._group.wake_next()  # a command that queued while the vacuum held the lock leads next

    def _write_live_data(self, directory: Path, rewrite: VacuumRewrite | None) -> None:
        """Copy every named database, key by key in key order, into a new environment in ``directory``; those
        that ``rewrite`` names (given the copy's read transaction) as it says.

        Appending in key order fills each page; LMDB zero-fills the unused space of
        the pages it allocates (``meminit``, with ``writemap`` off), so the new
        file holds nothing but the live key-values and zeros. Commits do not
        flush: the caller flushes the finished file once.

        A rewrite may store more than the source holds (frames compressed again with another dictionary): the
        copy then starts again in a map twice the size, up to the size cap.

        Raises:
            StoreFull: the copy does not fit under the size cap.
        """
        map_size = self._env.info()["map_size"]
        while True:
            try:
                self._copy_live_data(directory, rewrite, map_size)
                return
            except lmdb.MapFullError:
                map_size = self._doubled_map(map_size)
                shutil.rmtree(directory)  # the partial copy, which its transaction left uncommitted
                directory.mkdir()

    def _copy_live_data(self, directory: Path, rewrite: VacuumRewrite | None, map_size: int) -> None:
        target = lmdb.open(os.fsencode(directory), map_size=map_size, max_dbs=_MAX_DBS, lock=False,
                           sync=False, metasync=False, meminit=True, writemap=False)
        try:
            with self._env.begin() as source:
                names = [bytes(name) for name in source.cursor().iternext(values=False)]
            with self._env.begin() as source, target.begin(write=True) as copy:
                changes = {} if rewrite is None else rewrite(LmdbTransaction(source))
                for name in names:
                    database = self._env.open_db(name, txn=source, create=False)
                    into = target.open_db(name, txn=copy, **database.flags())
                    pairs = source.cursor(db=database).iternext()
                    change = changes.get(name.decode(errors="replace"))
                    read, written = copy.cursor(db=into).putmulti(pairs if change is None else change(pairs),
                                                                  append=True)
                    if written != read:  # append refuses a key out of order: the source's order is damaged
                        raise StoreCorrupted(f"the {name.decode(errors='replace')} database of {self.path} has "
                                             "keys out of order; vacuum changed nothing")
        finally:
            target.close()

    def usage(self) -> StorageUsage:
        """Entries, key and value bytes and pages per named database, and the file's free pages.

        The pages that no database holds, past the two meta pages and the main database's (the names), are
        on LMDB's free list: freed by earlier commits, reused by later ones.
        """
        self._refuse_if_forked()
        with self._transaction(write=False) as txn:
            raw = txn.raw
            names = [bytes(name) for name in raw.cursor().iternext(values=False)]
            spaces = []
            for name in names:
                database = self._env.open_db(name, txn=raw, create=False)
                keys = values = 0
                for key, value in raw.cursor(db=database).iternext():
                    keys += len(key)
                    values += len(value)
                found = raw.stat(database)
                spaces.append(SpaceUsage(name.decode(errors="replace"), found["entries"], keys, values,
                                         found["branch_pages"], found["leaf_pages"], found["overflow_pages"]))
            main = self._env.stat()
            file_pages = self._env.info()["last_pgno"] + 1
        held = sum(space.pages for space in spaces) + main["branch_pages"] + main["leaf_pages"] + 2
        return StorageUsage(main["psize"], file_pages, file_pages - held, tuple(spaces))

    def page_problems(self) -> list[str]:
        """What is wrong with the pages of the data file, found before LMDB reads them (for ``verify``).

        LMDB aborts the process on a page that is not what its parent says; this walk reads
        the file itself, inside a read transaction that keeps its pages from being reused.
        """
        self._refuse_if_forked()
        if file_identity(self.path / DATA) != self.identity:
            return [f"{self.path / DATA} was replaced while this store object had it open; "
                    "its pages cannot be checked here (open the store again)"]
        for _ in range(_PAGE_CHECK_ATTEMPTS):
            with self.read() as txn:
                problems = lmdb_check.page_problems(self.path / DATA, txn.snapshot_id())
            if problems is not None:
                return problems
        raise StoreBusy(f"the pages of {self.path / DATA} could not be checked: writers commit faster than "
                        "a read transaction can start; try again")

    def space(self, name: str) -> LmdbSpace:
        """The named database ``name`` (created if needed); call once per name at startup."""
        if not self._references:
            raise StoreClosed("the store is closed")
        space = LmdbSpace(name, self._open_db(name.encode()))
        self._spaces.add(space)
        return space

    def _open_db(self, name: bytes) -> lmdb._Database:
        if self.readonly:
            while True:
                with self._gate_only():
                    try:
                        # py-lmdb keeps a handle only if it opened the read transaction itself.
                        return self._env.open_db(name, create=False)
                    except lmdb.MapResizedError:
                        pass
                    except lmdb.NotFoundError:
                        raise IncompatibleStore(f"the store has no {name.decode()} database; open it writable "
                                                "once with this version to upgrade it") from None
                    except lmdb.Error as exc:
                        raise translated(exc, self.path) from None
                self._adopt_grown_map()

        def open_db(txn: WriteTransaction) -> lmdb._Database:
            assert isinstance(txn, LmdbTransaction)
            # Passing the transaction explicitly: open_db would otherwise start its own
            # write transaction, which hangs while this thread holds one.
            return self._env.open_db(name, txn=txn.raw)

        return self.write(open_db)

    @contextmanager
    def _gate_only(self) -> Iterator[None]:
        self._gate.enter_shared()
        try:
            if not self._references:  # closed while this thread waited at the gate (see ``_begin``)
                raise StoreClosed("the store is closed")
            yield
        finally:
            self._gate.leave_shared()

    def _refuse_if_forked(self) -> None:
        if _this_process.pid != self._pid:
            raise StoreUsedAfterFork(
                "this store was opened before fork(); open a new SessionStore in the child process"
            )

    def _refuse_if_readonly(self) -> None:
        if self.readonly:
            raise StoreReadOnly(f"the store at {self.path} is open read-only")

    def read(self) -> AbstractContextManager[LmdbTransaction]:
        """A read transaction: a consistent snapshot. Keep it short: it pins old pages."""
        return _Transaction(self)

    def write(self, body: Callable[[WriteTransaction], T], before_commit: BeforeCommit | None = None) -> T:
        """Run ``body`` in one write transaction and commit; grow the map and retry if full.

        ``body`` may run more than once, so it must do nothing but work in the transaction.
        Bodies that arrive while another commit is in flight are committed together (see ``GroupQueue``),
        those of one ``before_commit`` only: it runs after the group's bodies, before the commit
        (``protocol.BeforeCommit``).
        """
        self._refuse_if_forked()  # before the write lock, which a thread of the parent may have held at the fork
        self._refuse_if_readonly()
        member = Member(body, before_commit, self._gate.held_here())
        if self._writing_thread == threading.get_ident():  # LMDB would refuse a second write transaction
            raise StoreBusy.write_in_progress(self.path)
        if self._write_lock.held_here():
            # Vacuum reopening the databases: this thread has the store to itself, and another thread
            # waiting to lead a group would wait for it.
            self._commit_group([member])
            return member.outcome()  # type: ignore[return-value]
        if self._group.join(member, self._write_lock):
            try:
                if not member.done:  # a leader may have committed it while this thread was taking the lock
                    self._lead(member)
            finally:
                self._write_lock.release()
                self._group.wake_next()
        return member.outcome()  # type: ignore[return-value]

    def _lead(self, own: Member) -> None:
        """Commit every queued body (``own`` among them) in one transaction; wake each follower."""
        group: list[Member] = []  # taken from the queue once the write transaction has begun
        try:
            self._commit_group(group, own.before_commit)
        except BaseException:
            # Nothing of the group committed: the followers queue again for the next leader, and this
            # thread raises what went wrong (a body's own failure is its outcome, never the group's).
            if not group:  # it failed before taking the queue: take it now, to queue the others again
                group += self._group.take(own.before_commit)
            self._group.requeue([member for member in group if member is not own])
            raise
        finally:
            for member in group:
                if member.wake is not None:
                    member.wake.set()
        self._listeners.notify()

    def _commit_group(self, group: list[Member], kind: BeforeCommit | None = None) -> None:
        """One write transaction for every queued body of ``kind``, each in its own nested transaction, one flush.

        The queue is taken once the transaction has begun, so bodies that arrive while it waits for
        another process's commit join the group.
        """
        released = False
        while True:
            try:
                with self._transaction(write=True) as txn:
                    if not group:
                        group += self._group.take(kind)
                    outcomes = self._run_bodies(txn, group)
                    if group[0].before_commit is not None:
                        outcomes, commit = group[0].before_commit(outcomes)
                        if not commit:
                            raise _Discarded(outcomes)
                break
            except _Discarded as discarded:
                outcomes = discarded.outcomes
                break
            except MapFull:
                # The growth waits for every transaction to end: a member whose thread holds one open waits for
                # this commit meanwhile, so neither would go on.
                for member in group:
                    if member.holds_open:
                        member.refuse(StoreGrowthBlocked.holding(self.path))
                group[:] = [member for member in group if not member.done]
                if not group:
                    return
                try:
                    released = self._make_room(released)
                except StoreFull:
                    if len(group) == 1:
                        raise
                    # At the size cap: each body alone, so that those that fit still commit.
                    for member in group:
                        try:
                            self._commit_group([member])
                        except StoreFull as full:
                            member.settle(False, full)
                    return
            except Exception as exc:
                if len(group) != 1:
                    raise
                outcomes = [(False, exc)]  # a body alone: its failure aborted the transaction, and is its own
                break
        for member, outcome in zip(group, outcomes):
            member.settle(*outcome)

    def _run_bodies(self, txn: LmdbTransaction, group: list[Member]) -> list[tuple[bool, object]]:
        if len(group) == 1:  # alone, it needs no nested transaction: its failure aborts the transaction
            return [(True, group[0].body(txn))]
        return [self._nested(txn, member.body) for member in group]

    def _nested(self, txn: LmdbTransaction, body: Callable[[WriteTransaction], object]) -> tuple[bool, object]:
        """Run ``body`` in a transaction nested in ``txn``: kept if it returns, rolled back alone if it raises.

        Returns (True, its result) or (False, the exception for its caller). A full map, and anything
        that is not an ``Exception`` (an interrupt), abort the whole group.
        """
        child = self._env.begin(write=True, parent=txn.raw)
        try:
            value = body(LmdbTransaction(child))
        except lmdb.Error as exc:  # from iterating a scan: the adapter's methods raise the store's errors
            child.abort()
            error = translated(exc, self.path)
            if isinstance(error, MapFull):
                raise error from None
            return False, error
        except MapFull:
            child.abort()
            raise
        except Exception as exc:
            child.abort()
            return False, exc
        except BaseException:
            child.abort()
            raise
        child.commit()
        return True, value

    def _make_room(self, released: bool) -> bool:
        """Room for a write the map could not hold: the map grown, or, at the size cap, once (``released``
        tells whether it was done), the pages the latest commit freed made reusable; returns ``released``.

        Raises:
            StoreFull: at the size cap, with those pages released already (or no room even for that).
        """
        try:
            self._grow()
        except StoreFull:
            if released or not self._release_freed_pages():
                raise
            return True
        return released

    def _release_freed_pages(self) -> bool:
        """Commit a write that leaves every database as it was; ``False`` when even that does not fit.

        LMDB reuses the pages a commit freed only once a later commit exists (until then a reader may still
        stand on the one before it): at the size cap, the room a write after a redaction needs."""
        try:
            with self._transaction(write=True) as txn:
                _leave_as_it_was(txn)
        except MapFull:
            return False
        return True

    def release_freed_pages(self) -> None:
        """See ``protocol.Storage.release_freed_pages``: as ``_release_freed_pages``, through the writers' queue."""
        if not self.readonly:
            with suppress(StoreFull):  # at the size cap: the rewrite makes room as it would have
                self.write(_leave_as_it_was)

    def make_room(self, size: int) -> None:
        """Grow the map ahead of a write of about ``size`` bytes of keys and values, as a full map grows (doubled,
        up to the size cap), until the pages past the last one in use can hold it with room to spare; at the cap,
        as far as it goes (the write then makes room as it would have).

        A write that fills the map fails and runs again whole once the map has grown: a large batch's write (a
        catch-up of the search index) would be built and run twice."""
        self._refuse_if_forked()
        if self.readonly or self._writing_thread == threading.get_ident() or self._gate.held_here():
            return  # no write, or its own under way, or a transaction of this thread would stop the growth
        if self._has_room(size):
            return
        # Grown under the writers' lock, as a write grows a full map: a resize waits for every transaction to end,
        # and every transaction begun meanwhile waits for it, so one behind another thread's open write would hold
        # them all up until that write commits.
        try:
            with self._write_lock:
                while not self._has_room(size):
                    self._grow()
        except StoreFull:
            pass  # at the size cap: the write makes room as it would have
        finally:
            self._group.wake_next()  # a command that queued while this thread held the lock leads next

    def _has_room(self, size: int) -> bool:
        """Whether the pages past the last one in use can hold a write of ``size`` bytes with room to spare."""
        with self._gate_only():
            info, page = self._env.info(), self._env.stat()["psize"]
        return bool(info["map_size"] - (info["last_pgno"] + 1) * page >= _ROOM_FACTOR * size)

    def _grow(self) -> None:
        self._clear_stale_readers()  # pages pinned by dead readers may be all the room needed
        with self._growing():
            try:
                self._env.set_mapsize(self._doubled_map(self._env.info()["map_size"]))
            except lmdb.Error as exc:
                raise translated(exc, self.path) from None

    @contextmanager
    def _growing(self) -> Iterator[None]:
        """The gate alone, to resize the map: the writes of threads that hold a transaction open are refused
        meanwhile (``GroupQueue.refusing_held``), the writer that leads waiting for the resize to begin its own.

        Raises:
            StoreGrowthBlocked: this thread holds a transaction open.
        """
        with self._group.refusing_held(functools.partial(StoreGrowthBlocked.holding, self.path)), \
                self._gate.exclusive(self.path):
            yield

    def _doubled_map(self, current: int) -> int:
        """The map size after ``current``: twice it, up to the size cap.

        Raises:
            StoreFull: ``current`` is the size cap already.
        """
        if self.max_size is not None and current >= self.max_size:
            raise StoreFull(f"the store reached its size cap of {self.max_size} bytes")
        return min(current * 2, self.max_size) if self.max_size else current * 2

    def _transaction(self, *, write: bool) -> _Transaction:
        return _Transaction(self, write)

    def _begin(self, write: bool) -> lmdb.Transaction[bytes]:
        """A new py-lmdb transaction, the gate entered for it.

        Raises:
            StoreClosed: the store is closed, or was while this thread waited at the gate.
        """
        try:
            while True:
                self._gate.enter_shared()
                try:
                    if not self._references:
                        # Closed while this thread waited at the gate (a writer that leads a group waits there for
                        # a close): the environment is closed.
                        raise StoreClosed("the store is closed")
                    return self._env.begin(write=write)
                except lmdb.MapResizedError:
                    self._gate.leave_shared()
                    if not write and self._gate.held_here():  # a write's own message says what it left undone
                        raise StoreGrowthBlocked.reading(self.path) from None
                    self._adopt_grown_map()
                except lmdb.ReadersFullError:
                    self._gate.leave_shared()
                    if not self._env.reader_check():
                        raise EventStoreError(
                            f"the store at {self.path} has {self._env.max_readers()} readers at once, its limit"
                        ) from None
                except BaseException:
                    self._gate.leave_shared()
                    raise
        except lmdb.Error as exc:
            raise translated(exc, self.path) from None

    def _adopt_grown_map(self) -> None:
        """Take the map size another process grew the map to, before trying again what that growth stopped."""
        with self._growing():
            try:
                self._env.set_mapsize(0)
            except lmdb.Error as exc:
                raise translated(exc, self.path) from None

    def _end(self, txn: lmdb.Transaction[bytes], *, commit: bool) -> None:
        if _this_process.pid != self._pid:
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

    def last_commit(self) -> int:
        """The id of the latest commit that a new read transaction sees, by any process (microseconds).

        Not ``env.info()``'s: LMDB shows a commit's meta page there before it has flushed it and let
        readers see the commit, so a reader woken by it could read the state before the commit.
        """
        with self._transaction(write=False) as txn:
            return txn.snapshot_id()

    def watch_commits(self, listener: Callable[[], None]) -> Callable[[], None]:
        """Call ``listener`` after every commit of this process; returns the function that stops it."""
        return self._listeners.add(listener)

    def file_size(self) -> int:
        """Size of the data file on disk, in bytes."""
        return os.path.getsize(self.path / "data.mdb")


# Every environment this process has opened and not freed, for ``_after_fork_in_child``.
_OPENED: weakref.WeakSet[Environment] = weakref.WeakSet()
os.register_at_fork(after_in_child=_after_fork_in_child)
