"""Checks of an LMDB data file made by reading its bytes, before LMDB maps them.

LMDB trusts its file: a page past the end of a truncated file is a SIGBUS when
touched, and a page that is not what its parent says (zeroed, say) trips an
assertion that aborts the process. Neither can be caught, so what must not
crash is checked here first, with plain reads of the file:

* ``check_file`` (every open, a few pages): both meta pages (magic, version,
  page size), the size of the file against the last page the newest meta
  names, and the root page of every database;
* ``page_problems`` (``verify``): a walk of every page reachable from the
  newest meta, each page checked against what its parent says it is, before
  LMDB reads any of them.

The layout is LMDB's (``mdb.c``, format version 1) on a 64-bit machine, in the machine's byte order.
"""

from __future__ import annotations

import os
import struct
from collections.abc import Iterator
from pathlib import Path
from typing import BinaryIO

import attrs

from .._errors import StoreCorrupted

__all__ = ["Database", "Meta", "check_file", "leaf_nodes", "page_problems", "read_metas"]

_MAGIC = 0xBEEFC0DE
_DATA_VERSION = 1
_INVALID_PAGE = 2**64 - 1
_SMALLEST_PAGE = 512
_ATTEMPTS = 5
_PROBLEMS_SHOWN = 3
_LARGEST_PAGE = 1 << 16
# Page header: page number, padding, flags, then lower/upper free-space bounds (or an overflow run's length).
_HEADER = struct.Struct("=QHHHH")
_OVERFLOW_PAGES = struct.Struct("=I")
_HEADER_SIZE = _HEADER.size
# A database record (MDB_db): pad (the page size, in the free DB's), flags, depth, branch, leaf and
# overflow page counts, entries, root page.
_DATABASE = struct.Struct("=IHHQQQQQ")
# The meta page body after the header: magic, version, map address, map size; two database records
# (free pages, main), last page number, transaction id.
_META = struct.Struct("=IIQQ" + _DATABASE.format[1:] * 2 + "QQ")
_NODE = struct.Struct("=HHHH")  # low and high halves of a size or page number, flags, key size
_PAGE_NUMBER = struct.Struct("=Q")

_BRANCH, _LEAF, _OVERFLOW, _META_PAGE, _LEAF2 = 0x01, 0x02, 0x04, 0x08, 0x20
_BIG_DATA, _SUB_DATABASE, _DUPLICATES = 0x01, 0x02, 0x04


@attrs.frozen
class Database:
    """What a meta page or the main database says of one B-tree."""

    name: str
    depth: int
    root: int
    flags: int


@attrs.frozen
class Meta:
    """One meta page of the data file."""

    page_size: int
    last_page: int
    transaction: int
    free: Database
    main: Database


def read_metas(data_file: Path, head: bytes) -> tuple[Meta, Meta]:
    """Both meta pages from the file's first bytes (two pages' worth, or what the file has).

    Raises:
        StoreCorrupted: a meta page is missing or is not an LMDB meta page this code can read.
    """
    try:
        first = _parse_meta(head, 0)
        return first, _parse_meta(head[first.page_size:], 1)
    except ValueError as exc:
        raise StoreCorrupted(f"{data_file}: {exc}") from None


def _parse_meta(page: bytes, number: int) -> Meta:
    what = f"meta page {number}"
    if len(page) < _HEADER_SIZE + _META.size:
        raise ValueError(f"{what} is cut off (the file ends before it)")
    flags = _HEADER.unpack_from(page)[2]
    fields = _META.unpack_from(page, _HEADER_SIZE)
    magic, version = fields[0], fields[1]
    if not flags & _META_PAGE or magic != _MAGIC:
        raise ValueError(f"{what} is not an LMDB meta page (flags {flags:#x}, magic {magic:#x}): "
                         "the file is damaged or is not a store")
    if version != _DATA_VERSION:
        raise ValueError(f"{what} has LMDB format version {version}, not {_DATA_VERSION}")
    page_size = fields[4]  # the free database's pad
    if not _SMALLEST_PAGE <= page_size <= _LARGEST_PAGE or page_size & (page_size - 1):
        raise ValueError(f"{what} names an impossible page size {page_size}")
    free, main = fields[4:12], fields[12:20]
    return Meta(page_size, fields[20], fields[21], _database("free pages", free), _database("main", main))


def _database(name: str, fields: tuple[int, ...]) -> Database:
    return Database(name, depth=fields[2], root=fields[7], flags=fields[1])


def _newest(metas: tuple[Meta, Meta]) -> Meta:
    return max(metas, key=lambda meta: meta.transaction)


def _metas(data_file: Path, file: BinaryIO) -> tuple[Meta, Meta]:
    return read_metas(data_file, os.pread(file.fileno(), 2 * _LARGEST_PAGE, 0))


def check_file(data_file: Path, *, walk_pages_up_to: int = 0) -> None:
    """Refuse a data file that LMDB would crash on at open or on its first reads.

    Checks the meta pages, the file's size, all of the main database and the root page of
    every other; with ``walk_pages_up_to``, every page of a file with at most that many pages.

    No transaction protects the pages read here, so a damaged look counts only if no
    commit happened meanwhile (a writer may have reused pages the newest meta no longer needs).

    Raises:
        StoreCorrupted: naming the file and what is wrong with it.
    """
    with open(data_file, "rb") as file:
        for _ in range(_ATTEMPTS):
            meta = _newest(_metas(data_file, file))
            walker = _Walker(file, meta)
            problems = walker.roots()
            # LMDB may leave the last pages unwritten (freed in the commit that took them):
            # only a page that a tree still reaches proves the file was cut.
            if not problems and (walker.short_by_meta() or walker.pages <= walk_pages_up_to):
                problems = walker.walk()
            if not problems or _newest(_metas(data_file, file)).transaction == meta.transaction:
                break
        else:
            return  # a writer is busy committing: the file works
    if problems:
        shown = "; ".join(problems[:_PROBLEMS_SHOWN])
        more = f"; and {len(problems) - _PROBLEMS_SHOWN} more" if len(problems) > _PROBLEMS_SHOWN else ""
        raise StoreCorrupted(f"{data_file} is damaged: {shown}{more}")


def page_problems(data_file: Path, transaction: int) -> list[str] | None:
    """Every page reachable from the meta of ``transaction``, checked: what is wrong, if anything.

    The caller holds a read transaction of that id, which keeps its pages from being
    reused meanwhile; ``None`` if the file's meta pages have moved on past it (try again).
    """
    try:
        with open(data_file, "rb") as file:
            found = [meta for meta in _metas(data_file, file) if meta.transaction == transaction]
            if not found:
                return None
            walker = _Walker(file, found[0])
            return walker.roots() or walker.walk()
    except StoreCorrupted as exc:
        return [str(exc)]
    except OSError as exc:
        return [f"{data_file} cannot be read: {exc}"]


class _Walker:
    """Reads pages of one data file and checks them against what points at them."""

    def __init__(self, file: BinaryIO, meta: Meta) -> None:
        self._file = file
        self.size = os.fstat(file.fileno()).st_size
        self.meta = meta
        self.pages = self.size // self.meta.page_size
        self._visited: set[int] = set()

    def short_by_meta(self) -> bool:
        return self.pages <= self.meta.last_page

    def _page(self, number: int) -> bytes:
        size = self.meta.page_size
        return os.pread(self._file.fileno(), size, number * size)

    def _where(self, number: int, database: Database) -> str:
        return f"page {number} (of the {database.name!r} database)"

    def _check_page(self, number: int, database: Database, kinds: int) -> tuple[bytes | None, str | None]:
        """The page, or what is wrong with it: past the end, or not the kind of page its parent says."""
        where = self._where(number, database)
        if number > self.meta.last_page:
            return None, f"{where} is past the last page the meta page names ({self.meta.last_page})"
        if number >= self.pages:
            return None, (f"{where} is past the end of the file ({self.size} bytes, {self.pages} pages): "
                          "the file was cut short")
        page = self._page(number)
        stored_number, _, flags, lower, upper = _HEADER.unpack_from(page)
        if stored_number != number:
            return None, f"{where} holds page number {stored_number} (overwritten or zeroed)"
        if not flags & kinds:
            return None, f"{where} has flags {flags:#x}, not a {_kind_names(kinds)} page"
        if not flags & _OVERFLOW and not _HEADER_SIZE <= lower <= upper <= len(page):
            return None, f"{where} has impossible bounds ({lower}, {upper})"
        return page, None

    def roots(self) -> list[str]:
        """The root pages of the free-page and every named database, and all of the main database
        (it is small: the names and records of the named databases)."""
        problems, named = self._walk_tree(self.meta.main)
        for database in (self.meta.free, *named):
            if database.root != _INVALID_PAGE:
                _, problem = self._check_page(database.root, database, _kind_at(database, 0))
                problems.extend([] if problem is None else [problem])
        self._visited.clear()
        return problems

    def walk(self) -> list[str]:
        """Every page reachable from the meta, checked; the problems found (the first hundred or so)."""
        problems, named = self._walk_tree(self.meta.main)
        for database in (self.meta.free, *named):
            if len(problems) > 100:
                break
            problems.extend(self._walk_tree(database)[0])
        self._visited.clear()
        return problems

    def named_databases(self) -> tuple[list[str], dict[str, Database]]:
        """The problems in the main database, and the named databases it holds, by name."""
        problems, named = self._walk_tree(self.meta.main)
        self._visited.clear()
        return problems, {database.name: database for database in named}

    def leaf_pages(self, database: Database) -> Iterator[tuple[bytes, str | None]]:
        """The leaf pages of one B-tree (``_tree``), from a fresh start."""
        self._visited.clear()
        yield from self._tree(database)

    def overflow_value(self, first: int, size: int, database: Database) -> tuple[bytes | None, str | None]:
        """A large value of ``size`` bytes stored in the overflow run from page ``first``, or what is wrong."""
        run, problem = self._check_page(first, database, _OVERFLOW)
        if run is None:
            return None, f"a large value's {problem}"
        count = _OVERFLOW_PAGES.unpack_from(run, 12)[0]
        if count < 1 or first + count > min(self.pages, self.meta.last_page + 1) \
                or _HEADER_SIZE + size > count * self.meta.page_size:
            return None, f"the large value at {self._where(first, database)} does not fit its run of {count} pages"
        start = first * self.meta.page_size + _HEADER_SIZE
        return os.pread(self._file.fileno(), size, start), None

    def _walk_tree(self, database: Database) -> tuple[list[str], list[Database]]:
        """What is wrong in one B-tree, and the named databases its leaves hold (the main database's)."""
        problems: list[str] = []
        named: list[Database] = []
        if database.root == _INVALID_PAGE:
            return [], []
        for page, problem in self._tree(database):
            if problem is not None:
                problems.append(problem)
            elif database is self.meta.main:
                named.extend(_sub_databases(page))
        return problems, named

    def _tree(self, database: Database) -> Iterator[tuple[bytes, str | None]]:
        """The leaf pages of one B-tree, depth first, as (page, None); each damaged page as (b"", what is wrong)."""
        stack = [(database.root, 0)]
        while stack:
            number, level = stack.pop()
            if number in self._visited:
                yield b"", f"{self._where(number, database)} is reached twice (the tree is damaged)"
                continue
            page, problem = self._check_page(number, database, _kind_at(database, level))
            if page is None:
                yield b"", problem
                continue
            self._visited.add(number)
            nodes = _node_offsets(page)
            if nodes is None:
                yield b"", f"{self._where(number, database)} has a node outside the page"
            elif level + 1 < database.depth:
                stack.extend((_child(page, offset), level + 1) for offset in reversed(nodes))
            else:
                yield page, self._overflow_problem(page, nodes, database)

    def _overflow_problem(self, page: bytes, nodes: list[int], database: Database) -> str | None:
        """Whether the overflow runs (large values) of a leaf page are where the leaf says and within the file."""
        for offset in nodes:
            if not page[offset + 4] & _BIG_DATA:
                continue
            data = offset + _NODE.size + _NODE.unpack_from(page, offset)[3]
            if data + _PAGE_NUMBER.size > len(page):
                return f"a node of {database.name!r} names its large value outside its page"
            first = _PAGE_NUMBER.unpack_from(page, data)[0]
            run, problem = self._check_page(first, database, _OVERFLOW)
            if run is None:
                return f"a large value's {problem}"
            count = _OVERFLOW_PAGES.unpack_from(run, 12)[0]
            if count < 1 or first + count > min(self.pages, self.meta.last_page + 1):
                return (f"the large value at {self._where(first, database)} runs {count} pages, "
                        f"past the end of the file ({self.pages} pages)")
        return None


def _kind_at(database: Database, level: int) -> int:
    return _BRANCH if level + 1 < database.depth else _LEAF | _LEAF2


def _kind_names(kinds: int) -> str:
    names = {_BRANCH: "branch", _LEAF: "leaf", _OVERFLOW: "overflow", _LEAF2: "fixed-size leaf"}
    return " or ".join(name for flag, name in names.items() if kinds & flag)


def _node_offsets(page: bytes) -> list[int] | None:
    """The offsets of a branch or leaf page's nodes, or None if one lies outside the page."""
    lower, upper = _HEADER.unpack_from(page)[3:5]
    count = (lower - _HEADER_SIZE) // 2
    offsets = list(struct.unpack_from(f"={count}H", page, _HEADER_SIZE))
    limit = len(page)
    for offset in offsets:
        if offset < upper or offset + _NODE.size > limit:
            return None
        if offset + _NODE.size + _NODE.unpack_from(page, offset)[3] > limit:  # the key
            return None
    return offsets


def _child(page: bytes, offset: int) -> int:
    low, high, flags, _ = _NODE.unpack_from(page, offset)
    return int(low | high << 16 | flags << 32)


def _sub_databases(page: bytes) -> Iterator[Database]:
    """The named databases whose records a leaf page of the main database holds."""
    for offset in _node_offsets(page) or []:
        low, high, flags, key_size = _NODE.unpack_from(page, offset)
        if not flags & _SUB_DATABASE or flags & _DUPLICATES:
            continue
        start = offset + _NODE.size
        data = start + key_size
        if low | high << 16 != _DATABASE.size or data + _DATABASE.size > len(page):
            continue
        name = page[start:data].decode("utf-8", "replace")
        yield _database(name, _DATABASE.unpack_from(page, data))


def leaf_nodes(page: bytes) -> Iterator[tuple[bytes, bytes | int, int]]:
    """The nodes of a leaf page that parse: (key, value or the first page of a large value's run, value size).

    A node that runs outside its page is left out; a fixed-size leaf page (no values) has none.
    """
    if not _HEADER.unpack_from(page)[2] & _LEAF:
        return
    for offset in _node_offsets(page) or []:
        low, high, flags, key_size = _NODE.unpack_from(page, offset)
        size = low | high << 16
        start = offset + _NODE.size
        data = start + key_size
        if flags & (_SUB_DATABASE | _DUPLICATES):
            continue
        if flags & _BIG_DATA:
            if data + _PAGE_NUMBER.size <= len(page):
                yield page[start:data], _PAGE_NUMBER.unpack_from(page, data)[0], size
        elif data + size <= len(page):
            yield page[start:data], page[data:data + size], size
