"""Which pages a commit writes, by named database: the file before and after, page by page.

LMDB copies every page a write transaction changes to a fresh page (copy-on-write), so the pages whose bytes differ
after a commit are the pages it wrote and flushed. Each is named by the B-tree that holds it afterwards, found by
walking every tree from the newest meta page: a named database, the main database (the names' records), the free
list, or the meta page itself. Run: python -m benchmarks.commit_pages [--quick] [--dir DIR]
"""

from __future__ import annotations

import argparse
import base64
import random
import statistics
import struct
import tempfile
from collections import Counter
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

from eventstore import ChatMessage, SessionStore

_HEADER = struct.Struct("<QHHHH")  # mp_pgno, mp_pad, mp_flags, mp_lower, mp_upper
_NODE = struct.Struct("<HHHH")  # mn_lo, mn_hi, mn_flags, mn_ksize
_DB = struct.Struct("<IHHQQQQQ")  # md_pad, md_flags, md_depth, branch, leaf, overflow pages, entries, md_root
_BRANCH, _LEAF, _OVERFLOW = 0x01, 0x02, 0x04
_BIGDATA, _SUBDATA = 0x01, 0x02
_NO_PAGE = (1 << 64) - 1


def _meta_roots(data: bytes, page_size: int) -> tuple[int, int]:
    """The roots of the free list and of the main database in the newest of the two meta pages."""
    best: tuple[int, int, int] = (-1, _NO_PAGE, _NO_PAGE)
    for page in (0, 1):
        base = page * page_size + _HEADER.size
        free_db = _DB.unpack_from(data, base + 24)
        main_db = _DB.unpack_from(data, base + 24 + _DB.size)
        (txnid,) = struct.unpack_from("<Q", data, base + 24 + 2 * _DB.size + 8)
        if txnid > best[0]:
            best = (txnid, free_db[-1], main_db[-1])
    return best[1], best[2]


def _walk(data: bytes, page_size: int, root: int, owner: str, owners: dict[int, str],
          subdatabases: list[tuple[str, int]] | None = None) -> None:
    """Name every page of the tree at ``root`` after ``owner``; collect the named databases it records."""
    stack = [] if root == _NO_PAGE else [root]
    while stack:
        page = stack.pop()
        base = page * page_size
        _, _, flags, lower, _ = _HEADER.unpack_from(data, base)
        owners[page] = owner
        for index in range((lower - _HEADER.size) // 2):
            (offset,) = struct.unpack_from("<H", data, base + _HEADER.size + 2 * index)
            low, high, node_flags, key_size = _NODE.unpack_from(data, base + offset)
            if flags & _BRANCH:
                stack.append(low | high << 16 | node_flags << 32)
                continue
            value_at = base + offset + _NODE.size + key_size
            if node_flags & _BIGDATA:
                (first,) = struct.unpack_from("<Q", data, value_at)
                (pages,) = struct.unpack_from("<I", data, first * page_size + 12)
                owners.update(dict.fromkeys(range(first, first + pages), owner))
            elif node_flags & _SUBDATA and subdatabases is not None:
                name = data[base + offset + _NODE.size:value_at].decode()
                subdatabases.append((name, _DB.unpack_from(data, value_at)[-1]))


def page_size_of(data: bytes) -> int:
    """The file's page size: LMDB keeps it in the free list's record of the first meta page (``md_pad``)."""
    return int(_DB.unpack_from(data, _HEADER.size + 24)[0])


def page_owners(data: bytes) -> dict[int, str]:
    """Every page in use, named by its database: ``meta``, ``free list``, ``main`` or a named database."""
    page_size = page_size_of(data)
    owners = {0: "meta", 1: "meta"}
    free_root, main_root = _meta_roots(data, page_size)
    _walk(data, page_size, free_root, "free list", owners)
    named: list[tuple[str, int]] = []
    _walk(data, page_size, main_root, "main", owners, named)
    for name, root in named:
        _walk(data, page_size, root, name, owners)
    return owners


def written_pages(before: bytes, after: bytes) -> Counter[str]:
    """The pages a commit wrote (their bytes changed, or the file grew), by the database that holds each now."""
    page_size = page_size_of(after)
    owners = page_owners(after)
    written: Counter[str] = Counter()
    for page in range(len(after) // page_size):
        start = page * page_size
        if before[start:start + page_size] != after[start:start + page_size]:
            written[owners.get(page, "unreachable")] += 1
    return written


def _medians(counts: list[Counter[str]]) -> dict[str, float]:
    names = sorted({name for count in counts for name in count})
    medians = {name: statistics.median(count[name] for count in counts) for name in names}
    return {**medians, "total": statistics.median(sum(count.values()) for count in counts)}


async def pages_of(data_file: Path, write: Callable[[int], Awaitable[object]], samples: int) -> dict[str, float]:
    """Median pages by database (and ``total``) that each of ``samples`` calls of ``write(n)``, a durable commit
    of the store whose file is ``data_file``, writes."""
    counts = []
    for sample in range(samples):
        before = data_file.read_bytes()
        await write(sample)
        counts.append(written_pages(before, data_file.read_bytes()))
    return _medians(counts)


def describe(pages: dict[str, float]) -> str:
    """``pages_of``'s result in one line, most pages first."""
    named = sorted(((count, name) for name, count in pages.items() if name != "total"), reverse=True)
    return f"{pages['total']:g} pages: " + ", ".join(f"{name} {count:g}" for count, name in named if count)


def _turn(number: int) -> list[ChatMessage]:
    """An OpenAI Agents SDK turn: four items, each with its payload (as ``EventStoreSession`` stores them)."""
    call = f"call_{number}"
    items: list[dict[str, Any]] = [
        {"role": "user", "content": f"Question {number}: the weather in city {number}?"},
        {"type": "function_call", "call_id": call, "name": "get_weather", "arguments": '{"city": "x"}'},
        {"type": "function_call_output", "call_id": call, "output": '{"forecast": "sunny"}'},
        {"type": "message", "role": "assistant", "content": [{"type": "output_text", "text": "Sunny. " * 30}]},
    ]
    return [ChatMessage("assistant", "", payload=item) for item in items]


_WORDS = [f"w{index}" for index in range(2_000)]


def _checkpoint(number: int) -> ChatMessage:
    """A message like the LangGraph saver's checkpoint of a 200-message thread: its serialized channel values as
    base64 text (about 24 KB of payload, which compresses as such blobs do: poorly)."""
    rng = random.Random(number)
    values = " ".join(rng.choice(_WORDS) for _ in range(3_000)).encode()
    blob = base64.b64encode(values).decode()
    return ChatMessage("checkpoint", "", payload={"id": number, "blobs": {"messages": blob}})


COMMANDS: dict[str, Callable[[SessionStore, str, int], object]] = {
    "append of 1 message": lambda store, key, n: store.append(key, ChatMessage.user(f"hello {n} " * 20)),
    "append of a 4-item turn with payloads": lambda store, key, n: store.append_many(key, _turn(n)),
    "pop_last": lambda store, key, _n: store.pop_last(key),
    # A LangGraph thread is one session that each put appends a checkpoint to.
    "append of a LangGraph checkpoint-sized payload": lambda store, _key, n: store.append("thread", _checkpoint(n)),
}


def measure(directory: Path, sessions: int, samples: int) -> dict[str, dict[str, float]]:
    """Median pages written per commit, by database, for each command kind, on a store of ``sessions`` sessions
    of 20 messages."""
    path = directory / "store"
    rng = random.Random(7)
    with SessionStore(path, durable=False) as store:
        for index in range(sessions):
            store.append_many(f"session-{index:06d}", [ChatMessage.user(f"message {n} " * 12) for n in range(20)])
    results: dict[str, dict[str, float]] = {}
    with SessionStore(path) as store:
        store.append("thread", _checkpoint(-1))
        data_file = path / "data.mdb"
        for kind, command in COMMANDS.items():
            counts: list[Counter[str]] = []
            for sample in range(samples):
                key = f"session-{rng.randrange(sessions):06d}"
                before = data_file.read_bytes()
                command(store, key, sample)
                counts.append(written_pages(before, data_file.read_bytes()))
            results[kind] = _medians(counts)
    return results


def render(results: dict[str, dict[str, float]]) -> str:
    names = sorted({name for counts in results.values() for name in counts if name != "total"})
    lines = ["| database | " + " | ".join(results) + " |", "|---|" + "---|" * len(results)]
    for name in [*names, "total"]:
        cells = [f"{counts.get(name, 0):g}" for counts in results.values()]
        lines.append(f"| {name} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--quick", action="store_true", help="a small store and few samples")
    parser.add_argument("--dir", type=Path, default=None, help="where the temporary store goes")
    args = parser.parse_args(argv)
    sessions, samples = (200, 5) if args.quick else (5_000, 31)
    with tempfile.TemporaryDirectory(dir=args.dir) as directory:
        results = measure(Path(directory), sessions, samples)
    print(f"Pages a durable commit writes, by database (median of {samples} commits, {sessions:,} sessions of 20):")
    print(render(results))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
