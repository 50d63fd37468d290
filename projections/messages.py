"""The message-list read model: each live session's current messages, in chunks.

Database ``messages.chunks``: stream id + index of the chunk's first message →
the chunk's messages in the layout of ``projections.chunk``, made for fast
loads. Appending edits the last chunk's columns without decoding a content,
and a batch of appends (``append_many``) reads and writes the last chunk once.
A removal or streaming update rewrites only the last chunk.

Once the store has its compression dictionary (``eventstore._compression``), a
chunk of more than ``COMPRESS_ABOVE`` bytes is stored compressed: ``0x01`` and a
zstd frame of the chunk (a plain chunk begins with ``0x00``, its count's high
byte). LMDB puts a value of more than about half a page on pages of its own, so
a plain 20-message chunk of 3 KB takes 4 KB; compressed to about 40%, it shares a
leaf page. Smaller chunks stay plain: they share leaf pages already. Both forms
are read, so chunks written before the dictionary need no rewrite, and
everything above this class (snapshots, search) sees plain chunks.
"""

from __future__ import annotations

import struct
from collections.abc import Callable, Iterator, Mapping, Sequence
from datetime import datetime
from itertools import groupby
from typing import TypeVar, assert_never

from eventstore._codec import bulk_decoding
from eventstore._errors import StoreCorrupted, unpack_stored
from eventstore._stored_dictionary import DictionaryReplacement, StoredDictionary
from eventstore._time import to_micros
from eventstore._values import ChatMessage, stored_payload_of, trusted_message
from eventstore.events import MessageAppended
from eventstore.storage import ReadTransaction, SpaceRewrite, WriteTransaction

from .chunk import (
    Chunk,
    DamagedChunk,
    decode_contents,
    decode_entries,
    decode_messages,
    layout,
    message_count,
    payload_bytes,
)
from .readmodel import OpenSpace
from .session import (
    AppendMessage,
    Change,
    ClearMessages,
    Entry,
    RedactMessages,
    RemoveLastMessage,
    ReplaceLastMessage,
    ReplaceMessages,
    SessionSnapshot,
    message_edit,
    redacted,
)

__all__ = ["MessageLists", "COMPRESS_ABOVE"]

_ID = struct.Struct(">Q")
_CHUNK_KEY = struct.Struct(">QI")
#: Chunks of more bytes than this are stored compressed (with 4 KiB pages, LMDB keeps a value over about
#: 2,030 bytes on pages of its own).
COMPRESS_ABOVE = 2000
_COMPRESSED = b"\x01"
#: What a chunk decodes to: messages, or messages with their times.
Decoded = TypeVar("Decoded", ChatMessage, Entry)


class MessageLists:
    """Current messages of every live session."""

    name = "messages"
    code_version = 3

    def __init__(self, open_space: OpenSpace, dictionary: StoredDictionary | None = None) -> None:
        """``dictionary``: the store's compression dictionary; without one, chunks are stored plain."""
        self._chunks = open_space("messages.chunks")
        self._dictionary = dictionary
        #: The compressed chunk last written and its plain form: the next command on that session (an agent's turn
        #: appends several times, a LangGraph thread puts checkpoint after checkpoint) reads it without decompressing.
        self._written: tuple[bytes, bytes] = (b"", b"")
        #: The last chunk an append wrote, in plain layout, and the ``Chunk`` it was encoded from: the next append
        #: to that session edits this one rather than parsing and checking the stored bytes again. Taken (set to
        #: ``None``) by the append that uses it, and only when the stored chunk is those very bytes, so a write that
        #: rolled back, another store object's or another session's leaves it unused.
        self._appended: tuple[bytes, Chunk] | None = None

    def apply(self, txn: WriteTransaction, stream_id: int, events: Sequence[Change]) -> None:
        # The commonest edit, appends, taken a run at a time as ``message_edit`` reads them, without building their
        # ``AppendMessage``s: the run's columns go to the last chunk together.
        appended = [event.message for recorded in events if isinstance(event := recorded.event, MessageAppended)]
        if appended and len(appended) == len(events):  # appends alone, a command's commonest: one run, nothing to group
            self._append_run(txn, stream_id, appended, [r.recorded_at for r in events], fresh=events[0].version == 1)
            return
        appends = [isinstance(recorded.event, MessageAppended) for recorded in events]
        at = taken = 0  # the events and the appended messages gone through
        for appending, group in groupby(appends):
            length = len(list(group))
            run = events[at:at + length]
            if appending:
                # From a stream's first event on, until a chunk is written, there is none to read.
                self._append_run(txn, stream_id, appended[taken:taken + length], [r.recorded_at for r in run],
                                 fresh=not at and events[0].version == 1)
                taken += length
            else:
                for recorded in run:
                    self._edit(txn, stream_id, recorded)
            at += length

    def _append_run(self, txn: WriteTransaction, stream_id: int, messages: list[ChatMessage],
                    times: list[datetime], fresh: bool) -> None:
        """Append a run of messages to the session's last chunk and the chunks after it (``fresh``: the stream
        has none yet)."""
        # A command's events share one time, which is converted once.
        micros = [to_micros(times[0])] * len(times) if times.count(times[0]) == len(times) else \
            list(map(to_micros, times))
        roles = [message.role for message in messages]
        contents = [message.content.encode() for message in messages]
        stored_payloads = list(map(stored_payload_of, messages))
        with_payloads = None if stored_payloads.count(None) == len(messages) else \
            [b"" if payload is None else bytes(payload) for payload in stored_payloads]
        last = None if fresh else self._last_chunk(txn, stream_id, reuse=True)
        (first, tail), stored = last or (0, Chunk()), last is not None
        done = 0
        while True:
            added = tail.extend(roles[done:], contents[done:], micros[done:],
                                with_payloads and with_payloads[done:])
            done += added
            if done == len(messages):
                break
            if added:  # full: written, unless it is the stored chunk as it was (full already)
                self._put(txn, stream_id, first, tail.encode(), stored)
            first, tail, stored = first + tail.count, Chunk(), False
        value = tail.encode()
        self._put(txn, stream_id, first, value, stored)
        self._appended = (value, tail)

    def _edit(self, txn: WriteTransaction, stream_id: int, recorded: Change) -> None:
        """Apply an event other than an append."""
        edit = message_edit(recorded)
        match edit:
            case ClearMessages():
                self._delete_all(txn, stream_id)
            case ReplaceMessages():
                self._rewrite(txn, stream_id, edit.messages)
            case RedactMessages():
                self._rewrite(txn, stream_id, [redacted(entry) for entry in self.entries(txn, stream_id)])
            case RemoveLastMessage() | ReplaceLastMessage():
                self._edit_last(txn, stream_id, edit)
            case AppendMessage():  # an event that appends, other than MessageAppended: it must be taken above
                raise AssertionError(f"{type(recorded.event).__name__} appends a message that the append path missed")
            case None:
                pass
            case _:
                assert_never(edit)

    def _put(self, txn: WriteTransaction, stream_id: int, first: int, value: bytes, stored: bool = False) -> None:
        """Store a chunk: ``stored`` says that its key holds the chunk's earlier form."""
        if len(value) > COMPRESS_ABOVE and self._dictionary is not None:
            dictionary = self._dictionary.get(txn)
            if dictionary is not None:
                plain, value = value, _COMPRESSED + dictionary.compress(value)
                self._written = (value, plain)
        key = _CHUNK_KEY.pack(stream_id, first)
        # A new chunk of the newest session sorts last: appended, chunks fill pages (a put splits a full page in
        # half). A stored key cannot be appended.
        if stored or not txn.append(self._chunks, key, value):
            txn.put(self._chunks, key, value)

    def vacuum_rewrite(self, replacement: DictionaryReplacement) -> tuple[str, SpaceRewrite]:
        """The chunks' space, and how ``vacuum`` rewrites it for ``replacement``: each compressed chunk
        compressed with the new dictionary (or plain, without one).

        The rewrite raises ``StoreCorrupted`` at a compressed chunk that does not decompress.
        """

        def chunks(pairs: Iterator[tuple[bytes, bytes]]) -> Iterator[tuple[bytes, bytes]]:
            for key, value in pairs:
                if value[:1] == _COMPRESSED:
                    stream_id = unpack_stored(_CHUNK_KEY, key, "a message chunk key")[0]
                    plain = replacement.old.expand(value[1:], f"a compressed message chunk of stream {stream_id}")
                    value = plain if replacement.new is None else _COMPRESSED + replacement.new.compress(plain)
                yield key, value

        return self._chunks.name, chunks

    def _plain(self, txn: ReadTransaction, value: bytes) -> bytes:
        """A stored chunk as its plain layout.

        Raises:
            DamagedChunk: a compressed chunk does not decompress, or the store has no dictionary.
        """
        if value[:1] != _COMPRESSED:
            return value
        written, plain = self._written
        if value == written:  # the same stored bytes expand to the same chunk, whichever transaction wrote them
            return plain
        try:
            if self._dictionary is None:
                raise StoreCorrupted("compressed, but the store has no compression dictionary")
            return self._dictionary.require(txn).expand(value[1:], "a compressed chunk")
        except StoreCorrupted as exc:
            raise DamagedChunk(str(exc)) from None

    def _rewrite(self, txn: WriteTransaction, stream_id: int, entries: Sequence[Entry]) -> None:
        """Replace the whole list, laying the chunks out as appending the messages one by one would."""
        self._delete_all(txn, stream_id)
        for first, value in layout(entries):
            self._put(txn, stream_id, first, value)

    def _edit_last(self, txn: WriteTransaction, stream_id: int, edit: RemoveLastMessage | ReplaceLastMessage) -> None:
        found = self._last_chunk(txn, stream_id)
        if found is None:
            raise StoreCorrupted(f"stream {stream_id}: an event edits the last message, but there is none")
        first, last = found
        micros = last.last_micros
        last.pop()
        if isinstance(edit, ReplaceLastMessage):
            last.append(edit.message.role, edit.message.content.encode(), micros, payload_bytes(edit.message))
        if last.count:
            self._put(txn, stream_id, first, last.encode(), stored=True)
        else:
            txn.delete(self._chunks, _CHUNK_KEY.pack(stream_id, first))

    def _last_chunk(self, txn: ReadTransaction, stream_id: int, reuse: bool = False) -> tuple[int, Chunk] | None:
        """The session's last chunk (its first index, and the chunk to edit); ``reuse``: an append's, which may take
        the chunk the last append wrote (``_appended``) when it is the one stored."""
        found = txn.before(self._chunks, _ID.pack(stream_id + 1))
        if found is None:
            return None
        found_stream, first = unpack_stored(_CHUNK_KEY, found[0], "a message chunk key")
        if found_stream != stream_id:
            return None
        try:
            plain = self._plain(txn, found[1])
            if reuse:
                appended, self._appended = self._appended, None
                if appended is not None and appended[0] == plain:
                    return first, appended[1]
            return first, Chunk.parse(plain)
        except DamagedChunk as exc:
            raise StoreCorrupted(f"the messages of stream {stream_id} are damaged: {exc}") from None

    def last(self, txn: ReadTransaction, stream_id: int) -> ChatMessage | None:
        """The session's last message (``None`` when it has none), decoding no other."""
        found = self._last_chunk(txn, stream_id)
        if found is None:
            return None
        role, content, payload = found[1].last()
        try:
            return trusted_message(role, content.decode(), payload or None)
        except UnicodeDecodeError:
            raise StoreCorrupted(f"the last message of stream {stream_id} is not UTF-8") from None

    def _items(self, txn: ReadTransaction, stream_id: int, start: int = 0) -> list[tuple[int, bytes]]:
        """The stream's chunks, as (first index, plain value), from the one holding message ``start`` on.

        Raises:
            DamagedChunk: a compressed chunk does not decompress.
        """
        prefix = _ID.pack(stream_id)
        if start == 0:  # from the stream's first chunk, wherever it begins (verify must see a stray one)
            return self._walk(txn, txn.scan(self._chunks, prefix), prefix)
        # The chunk holding ``start``: the stream's last one that begins at or before it.
        holding = txn.before(self._chunks, _CHUNK_KEY.pack(stream_id, start + 1))
        return [] if holding is None else self._walk(txn, txn.scan(self._chunks, holding[0]), prefix)

    def _walk(self, txn: ReadTransaction, pairs: Iterator[tuple[bytes, bytes]], prefix: bytes
              ) -> list[tuple[int, bytes]]:
        items: list[tuple[int, bytes]] = []
        for key, value in pairs:
            if key[:8] != prefix:
                break
            items.append((unpack_stored(_CHUNK_KEY, key, "a message chunk key")[1], self._plain(txn, value)))
        return items

    def chunks_from(self, txn: ReadTransaction, stream_id: int, start: int) -> list[bytes] | None:
        """The chunks (plain) of a session from message ``start`` on, if a chunk begins there (else ``None``)."""
        key = _CHUNK_KEY.pack(stream_id, start)
        if txn.get(self._chunks, key) is None:
            return None if start else []
        try:
            return [value for _, value in self._walk(txn, txn.scan(self._chunks, key), key[:8])]
        except DamagedChunk as exc:
            raise StoreCorrupted(f"the messages of stream {stream_id} are damaged: {exc}") from None

    def _delete_all(self, txn: WriteTransaction, stream_id: int) -> None:
        txn.delete_range(self._chunks, _ID.pack(stream_id), _ID.pack(stream_id + 1))

    def entries(self, txn: ReadTransaction, stream_id: int, count: int | None = None) -> list[Entry]:
        """The session's current messages with the µs they were appended, oldest first.

        ``count``: how many the catalog says the session holds. A short session's one chunk is then read by
        a single lookup, and no read goes past its last chunk.
        """
        return self._decode(txn, stream_id, count, decode_entries)

    def messages(self, txn: ReadTransaction, stream_id: int, count: int) -> list[ChatMessage]:
        """The session's current messages without their times, oldest first (``count`` as for ``entries``)."""
        return self._decode(txn, stream_id, count, decode_messages)

    def last_messages(self, txn: ReadTransaction, stream_id: int, count: int, wanted: int) -> list[ChatMessage]:
        """The session's last ``wanted`` messages (all if it holds fewer), oldest first, decoding only the chunks
        that hold them: one lookup finds the chunk holding the first of them, and the walk goes on from there.

        ``count``: how many the catalog says the session holds.

        Raises:
            StoreCorrupted: the chunks do not hold ``count`` messages, or one is damaged.
        """
        start = max(0, count - wanted)
        if start == count:
            return []
        decoded: list[ChatMessage] = []
        try:
            items = self._items(txn, stream_id, start)
            with bulk_decoding():
                for _, value in items:
                    decoded += decode_messages(value)
        except DamagedChunk as exc:
            raise StoreCorrupted(f"the messages of stream {stream_id} are damaged: {exc}") from None
        first = items[0][0] if items else count
        if first > start or first + len(decoded) != count:
            raise StoreCorrupted(f"the messages of stream {stream_id} are damaged: chunks from message {first} "
                                 f"hold {len(decoded)}, {count} counted")
        return decoded[start - first:]

    def _decode(self, txn: ReadTransaction, stream_id: int, count: int | None,
                decode: Callable[[bytes], list[Decoded]]) -> list[Decoded]:
        """The session's chunks decoded by ``decode``, chunk by chunk (a long session's decoded columns never sit
        in memory all at once). With ``count``, the first chunk comes by one lookup, and when it holds them all (a
        short session) nothing more is set up: no walk, and no collector pause for so few objects; the others come
        by a walk that stops at the count.

        Raises:
            StoreCorrupted: a chunk is damaged.
        """
        decoded: list[Decoded] = []
        try:
            if count is not None:
                first = self._first_chunk(txn, stream_id) if count else None
                if first is None:
                    return decoded
                decoded = decode(first)
                if len(decoded) >= count:
                    return decoded
            with bulk_decoding():
                for value in self._values(txn, stream_id, after_first=count is not None):
                    decoded += decode(value)
                    if count is not None and len(decoded) >= count:
                        break
        except DamagedChunk as exc:
            raise StoreCorrupted(f"the messages of stream {stream_id} are damaged: {exc}") from None
        return decoded

    def _first_chunk(self, txn: ReadTransaction, stream_id: int) -> bytes | None:
        """The stream's first chunk (plain), by one lookup; ``None`` when it has none.

        Raises:
            DamagedChunk: a compressed chunk does not decompress.
        """
        value = txn.get(self._chunks, _CHUNK_KEY.pack(stream_id, 0))
        return None if value is None else self._plain(txn, value)

    def _values(self, txn: ReadTransaction, stream_id: int, after_first: bool) -> Iterator[bytes]:
        """The stream's chunks (plain), oldest first, or those after its first (``after_first``), by a walk that
        its caller stops.

        Raises:
            DamagedChunk: a compressed chunk does not decompress.
        """
        if not after_first:
            yield from (value for _, value in self._items(txn, stream_id))
            return
        prefix = _ID.pack(stream_id)
        for key, value in txn.scan(self._chunks, _CHUNK_KEY.pack(stream_id, 1)):
            if key[:8] != prefix:
                return
            yield self._plain(txn, value)

    def contents(self, txn: ReadTransaction, stream_id: int) -> list[str]:
        """Only the contents of the session's current messages, oldest first."""
        contents: list[str] = []
        try:
            for _, value in self._items(txn, stream_id):
                contents += decode_contents(value)
        except DamagedChunk as exc:
            raise StoreCorrupted(f"the messages of stream {stream_id} are damaged: {exc}") from None
        return contents

    def check(self, txn: ReadTransaction, sessions: Mapping[int, SessionSnapshot]) -> list[str]:
        """Problems where the stored lists differ from ``sessions`` freshly folded from the log."""
        problems = []
        try:
            stored_streams = {unpack_stored(_CHUNK_KEY, key, "a message chunk key")[0]
                              for key in txn.scan_keys(self._chunks)}
        except StoreCorrupted as exc:
            return [f"messages: {exc}"]
        for stream_id in sorted(stored_streams - sessions.keys()):
            problems.append(f"messages: stream {stream_id} has messages but no events")
        for stream_id, session in sessions.items():
            try:
                items = self._items(txn, stream_id)
                starts = [0]  # where each chunk must begin: after the ones before it
                for _, value in items:
                    starts.append(starts[-1] + message_count(value))
                differs = self.entries(txn, stream_id) != list(session.messages) or \
                    [first for first, _ in items] != starts[:-1]
            except StoreCorrupted as exc:
                problems.append(f"messages: {exc}")
                continue
            except DamagedChunk as exc:
                problems.append(f"messages: the messages of stream {stream_id} are damaged: {exc}")
                continue
            if differs:
                problems.append(f"messages: the list of session {session.head.key!r} differs from the log")
        return problems

    def clear(self, txn: WriteTransaction) -> None:
        txn.clear(self._chunks)

    def dump(self, txn: ReadTransaction) -> list[tuple[bytes, bytes]]:
        """Every stored entry, for comparing a rebuilt model with an incremental one."""
        return [(bytes(k), bytes(v)) for k, v in txn.scan(self._chunks)]
