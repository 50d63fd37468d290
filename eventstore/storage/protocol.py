"""The storage seam: ordered key-value transactions over named key spaces.

The log, the snapshots, the bookkeeping and every read model store their data
through these protocols only, so a storage engine is one module that
implements them (``lmdb``: the embedded default; ``memory``: the reference
semantics, and fast unit tests). The conformance tests in
``tests/storage_conformance.py`` pin the semantics every implementation keeps.

The contract, for every implementation:

* A key space holds byte keys in byte order, each with one byte value. A key
  has 1 to ``MAX_KEY_SIZE`` bytes; storing another size raises ``ValueError``
  (a caller's bug, never a user's: the log hashes long session keys).
* A read transaction sees one committed state (a snapshot) from start to end,
  however many commits happen meanwhile.
* A write transaction sees its own writes; ``Storage.write`` commits it whole or
  not at all, and may run its body again (after growing the store, say), so a
  body must only work in the transaction.
* Only one write transaction runs at a time per store; readers never wait for it. Bodies given to
  ``write`` by several threads at once may be committed together (group commit: one transaction and one
  flush), each in its own nested transaction, so a body that raises is rolled back alone and only its
  caller sees the error; the others commit, in the order they arrived.
* Every read that a command needs can be batched (``get_many``): a networked
  engine pays a round trip per call, not per key.
"""

from __future__ import annotations

import enum
from collections.abc import Callable, Iterable, Iterator, Mapping
from contextlib import AbstractContextManager
from pathlib import Path
from typing import Any, Protocol, TypeVar

import attrs

__all__ = ["MAX_KEY_SIZE", "BeforeCommit", "Durability", "GroupCommitting", "Outcome", "ReadTransaction", "Space",
           "SpaceRewrite", "SpaceUsage", "Storage", "StorageUsage", "VacuumRewrite", "WriteTransaction"]

T = TypeVar("T")

#: The longest key every engine stores (LMDB's limit at its default page size).
MAX_KEY_SIZE = 511


class Durability(str, enum.Enum):  # noqa: UP042 - a StrEnum would change str() of this public value
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


@attrs.frozen
class SpaceUsage:
    """Where one key space's bytes go: its entries, their key and value bytes, and the pages holding them
    (an engine without pages counts none)."""

    name: str
    entries: int
    key_bytes: int
    value_bytes: int
    branch_pages: int = 0
    leaf_pages: int = 0
    overflow_pages: int = 0

    @property
    def pages(self) -> int:
        return self.branch_pages + self.leaf_pages + self.overflow_pages


@attrs.frozen
class StorageUsage:
    """Where a store's bytes go: per key space, and the pages of the file that no space holds.

    Attributes:
        page_size: bytes a page (0 for an engine without pages).
        file_pages: pages the file has allocated so far (its used part).
        free_pages: pages of the file on the engine's free list (freed by earlier commits, reused by later ones;
            the free list's own pages among them).
        spaces: every key space, by name.
    """

    page_size: int
    file_pages: int
    free_pages: int
    spaces: tuple[SpaceUsage, ...]


class Space(Protocol):
    """A named key space: an LMDB named database, a table elsewhere. Obtained from ``Storage.space``."""

    @property
    def name(self) -> str:
        """The space's name, as given to ``Storage.space``."""

    @property
    def handle(self) -> Any:
        """What the engine finds the space by (an LMDB database handle, say); only the engine uses it."""


class ReadTransaction(Protocol):
    """Reads from one consistent snapshot of the store."""

    def get(self, space: Space, key: bytes) -> bytes | None:
        """The value stored at ``key``, or ``None``."""

    def get_many(self, space: Space, keys: Iterable[bytes]) -> dict[bytes, bytes]:
        """The values of those ``keys`` that are present (absent keys are left out)."""

    def get_each(self, space: Space, keys: Iterable[bytes]) -> list[bytes | None]:
        """The value at each of ``keys``, in their order, ``None`` where absent: one call, as ``get_many``, for a
        caller that pairs values with keys by place (no mapping to build)."""

    def scan(self, space: Space, start: bytes | None = None, *, reverse: bool = False
             ) -> Iterator[tuple[bytes, bytes]]:
        """(key, value) pairs in key order.

        Forward: every key ``>= start`` (all keys if ``start`` is ``None``), ascending.
        Reverse: every key ``< start`` (all keys if ``start`` is ``None``), descending;
        so the first pair of ``scan(space, k, reverse=True)`` is the floor strictly below ``k``.
        The iterator is valid only while the transaction is open.
        """

    def scan_keys(self, space: Space, start: bytes | None = None, *, reverse: bool = False) -> Iterator[bytes]:
        """The keys ``scan`` would yield, without copying the values."""

    def scan_values(self, space: Space, start: bytes | None = None, *, reverse: bool = False) -> Iterator[bytes]:
        """The values ``scan`` would yield, without building a pair per key (listings read thousands)."""

    def before(self, space: Space, key: bytes) -> tuple[bytes, bytes] | None:
        """The pair with the greatest key strictly below ``key``, or ``None`` (a floor lookup)."""

    def last(self, space: Space) -> tuple[bytes, bytes] | None:
        """The pair with the greatest key, or ``None`` for an empty space."""

    def count(self, space: Space) -> int:
        """How many keys the space holds."""

    def snapshot_id(self) -> int:
        """Names the committed state this transaction reads: two transactions of one open store with the
        same id see the same contents (caches key on it). Ids may start over when the store is reopened."""


class WriteTransaction(ReadTransaction, Protocol):
    """A read transaction that also writes; committed by ``Storage.write``."""

    def put(self, space: Space, key: bytes, value: bytes) -> None:
        """Store ``value`` at ``key``, replacing any value there."""

    def insert(self, space: Space, key: bytes, value: bytes) -> bool:
        """Store ``value`` at ``key`` unless the key is present; whether it was stored."""

    def append(self, space: Space, key: bytes, value: bytes) -> bool:
        """Store ``value`` at ``key`` if ``key`` sorts after every key of the space (cheap on B-trees);
        ``False``, and nothing written, otherwise."""

    def append_many(self, space: Space, items: Iterable[tuple[bytes, bytes]]) -> None:
        """``append`` each pair in turn; the keys must ascend, after every key of the space.

        Raises:
            ValueError: a key does not sort after the previous one (or the space's last key); then
                nothing of the batch is written, and the transaction may go on.
        """

    def delete(self, space: Space, key: bytes) -> bool:
        """Remove ``key``; whether it was present."""

    def delete_range(self, space: Space, start: bytes, stop: bytes) -> int:
        """Remove every key with ``start <= key < stop``; how many were removed."""

    def clear(self, space: Space) -> None:
        """Remove every key of the space."""


#: New contents of one key space on the way through ``vacuum``: given its (key, value) pairs in key order, the
#: pairs to store instead, in key order.
SpaceRewrite = Callable[[Iterator[tuple[bytes, bytes]]], Iterator[tuple[bytes, bytes]]]
#: What ``vacuum`` changes as it copies (``Storage.vacuum``): given a read transaction of the state it copies, the
#: ``SpaceRewrite`` of each key space to change, by name; the spaces it does not name are copied as they are.
VacuumRewrite = Callable[[ReadTransaction], Mapping[str, SpaceRewrite]]


class Storage(Protocol):
    """One open store: its key spaces and its transactions.

    ``StoreClosed``, ``StoreReadOnly``, ``StoreFull``, ``StoreCorrupted`` and
    ``StoreUsedAfterFork`` are the only errors a transaction raises of its own
    (besides ``ValueError`` for a caller's bug, and the generic ``EventStoreError``
    for an engine failure with no better name); no engine's exception crosses this
    protocol. Once released (by its last user), a store's ``read``, ``write`` and
    ``space`` raise ``StoreClosed``; on a ``readonly`` store, ``write`` and
    ``vacuum`` raise ``StoreReadOnly``.
    """

    path: Path
    readonly: bool
    durability: Durability

    def space(self, name: str) -> Space:
        """The key space ``name``, created if missing (a read-only store raises ``IncompatibleStore`` then).

        Call once per name when the store opens; handles stay valid until ``vacuum``.
        """

    def read(self) -> AbstractContextManager[ReadTransaction]:
        """A read transaction. Keep it short: it may pin old pages."""

    def write(self, body: Callable[[WriteTransaction], T]) -> T:
        """Run ``body`` in one write transaction and commit; ``body`` may run more than once."""

    def make_room(self, size: int) -> None:
        """Make room ahead of a write that stores about ``size`` bytes of keys and values, so that it need not fail
        for want of room and run again (an engine that grows as it writes does nothing); a write that does not fit
        at the size cap still raises ``StoreFull`` when it runs."""

    def release_freed_pages(self) -> None:
        """Commit a write that changes nothing, ahead of a large rewrite, so that the rewrite reuses the pages the
        write before it freed rather than growing the file (LMDB reuses a commit's freed pages only once a later
        commit exists); an engine that reuses them at once does nothing. At the size cap it does nothing either
        (the rewrite makes room as it would have)."""

    def last_commit(self) -> int:
        """A number that changes with every commit to the store, by any process, once a new read
        transaction sees that commit; cheap, so a reader waiting for commits can check it often."""

    def watch_commits(self, listener: Callable[[], None]) -> Callable[[], None]:
        """Call ``listener`` after every commit this process makes (in the committing thread: it must be
        quick and must not raise); returns the function that stops the calls."""

    def file_size(self) -> int:
        """Bytes the store occupies on disk (0 for one that has no file)."""

    def usage(self) -> StorageUsage:
        """Where the bytes go, per key space, read in one read transaction (every key and value is visited)."""

    def page_problems(self) -> list[str]:
        """Damage found by reading the store's files without trusting them (before any read that damage could
        crash); empty when there is none, or nothing the engine can check."""

    def vacuum(self, reopen: Callable[[], None], rewrite: VacuumRewrite | None = None) -> None:
        """Rewrite the store compactly, leaving freed bytes behind; every ``Space`` handle is invalid
        afterwards, and ``reopen`` obtains them again before any other thread starts a transaction.

        ``rewrite``, given a read transaction of the state being copied (no write comes between), names the key
        spaces whose contents change on the way (``VacuumRewrite``): the new contents replace the old ones in the
        same step, so a failure or a crash leaves the old contents whole, never some of each."""

    def release(self) -> None:
        """Drop this user's hold on the store; the last one closes it."""

    def release_waits_for_this_thread(self) -> bool:
        """Whether a release that closes the store (one under way, or the next, by its last user) would wait for a
        transaction the calling thread holds open (a read it iterates, or the call whose ``progress`` callback it is
        in): such a thread must not wait for that release. ``False`` while another user holds the store (a release
        then closes nothing), and for an engine whose release waits for no transaction."""


#: What a body of a write came to: ``(True, what it returned)`` or ``(False, the exception for its caller)``.
Outcome = tuple[bool, Any]
#: A step between the bodies of a group commit and the commit (``GroupCommitting.write``): given the outcomes of the
#: bodies that named it, in their order, it returns the outcomes to give their callers and whether the transaction
#: commits (if not, nothing of the group is written).
BeforeCommit = Callable[[list[Outcome]], tuple[list[Outcome], bool]]


class GroupCommitting(Storage, Protocol):
    """An engine whose writes may name a step to run before their group's commit (the LMDB engine).

    A group commits the bodies of one ``before_commit`` only (``None`` is one kind too), so the step sees every
    body of its group, and one call of it serves them all: a replica ships a group's commands to the shared log
    in one round trip (``services.replica``).
    """

    def write(self, body: Callable[[WriteTransaction], T], before_commit: BeforeCommit | None = None) -> T:
        """``Storage.write``, with ``before_commit`` run on the group's outcomes before the commit."""
