"""Current-state reads: each runs in one read transaction and reads a read model, never the log.

Loads answer from the decoded lists of ``services.cache`` while the session's
version holds; listings from the last listing while the store's committed state
holds. Searches go through the deferred search index, caught up first.

A page's cursor is the catalog's activity position of the page's last session,
opaque to callers: a format byte and that position, in URL-safe base64.
"""

from __future__ import annotations

import base64
import binascii
from collections.abc import Iterable
from typing import Any

from projections.catalog import Catalog, Position
from projections.messages import MessageLists
from projections.search.index import SearchIndex
from projections.search.reader import IndexReader
from projections.search.snippets import snippet
from projections.search.tokenizer import parse_query
from projections.session import Entry, SessionHead

from .._deferred import Deferred, Read, SessionTexts
from .._errors import InvalidArgument, StoreCorrupted
from .._folding import view_of
from .._log import EventLog
from .._time import Clock
from .._values import ChatMessage, SearchHit, SessionMetadata, SessionPage, SessionView, validate_key
from ..storage import ReadTransaction
from .arguments import now_micros
from .cache import DecodedSessions

__all__ = ["Queries"]

_CURSOR_FORMAT = b"\x01"
_CURSOR_SIZE = len(_CURSOR_FORMAT) + 16


def _cursor(position: Position) -> str:
    return base64.urlsafe_b64encode(_CURSOR_FORMAT + position).decode().rstrip("=")


def _position(cursor: str) -> Position:
    """The position a cursor of ``_cursor`` names.

    Raises:
        InvalidArgument: the text is no such cursor.
    """
    try:
        raw = base64.b64decode(cursor + "=" * (-len(cursor) % 4), altchars=b"-_", validate=True)
    except (binascii.Error, ValueError):
        raw = b""
    position = raw[len(_CURSOR_FORMAT):]
    # Only the exact text a page returned: another spelling of the same bytes is a caller's mistake too.
    if len(raw) != _CURSOR_SIZE or not raw.startswith(_CURSOR_FORMAT) or _cursor(position) != cursor:
        raise InvalidArgument(f"cursor {cursor!r:.60} is not one that list_sessions_page returned")
    return position


class Queries:
    """Reads of the sessions as they are now."""

    def __init__(self, log: EventLog, catalog: Catalog, messages: MessageLists, search: Deferred[Any, IndexReader],
                 search_index: SearchIndex, read: Read, clock: Clock, decoded: DecodedSessions) -> None:
        self._log, self._catalog, self._messages, self._search = log, catalog, messages, search
        self._search_index = search_index
        self._read, self._clock, self._decoded = read, clock, decoded
        # The latest listing, with the committed state it was read from. (A store reopened by
        # ``vacuum`` gets new ``Queries``: the states' ids start over then.)
        self._listing: tuple[int, tuple[SessionMetadata, ...]] | None = None

    def live(self, txn: ReadTransaction, key: str) -> tuple[int, SessionHead] | None:
        """The stream id and head of a live session."""
        stream_id = self._log.stream_id(txn, key)
        if stream_id is None:
            return None
        head = self._catalog.head(txn, stream_id)
        return None if head is None else (stream_id, head)

    def head(self, key: str) -> SessionHead | None:
        validate_key(key)
        with self._read() as txn:
            return self._catalog.head_of_key(txn, key)

    def metadata_of(self, key: str) -> SessionMetadata | None:
        validate_key(key)
        with self._read() as txn:
            return self._catalog.metadata_of_key(txn, key)

    def exists(self, key: str) -> bool:
        validate_key(key)
        with self._read() as txn:
            return self._catalog.has_key(txn, key)

    def entries(self, key: str) -> tuple[Entry, ...]:
        """The current entries of a session, from the cache when it holds the session's version."""
        validate_key(key)
        with self._read() as txn:
            # The key index's entry names the stream and holds the version and count: no log read, no head.
            found = self._catalog.stream_of_key(txn, key)
            return () if found is None else self._entries_in(txn, key, *found)

    def messages(self, key: str) -> list[ChatMessage]:
        """The current messages of a session; decoded without their times when the cache is off (then there is
        nothing to remember them for)."""
        validate_key(key)
        with self._read() as txn:
            found = self._catalog.stream_of_key(txn, key)
            if found is None:
                return []
            if self._decoded.capacity:
                return [message for message, _ in self._entries_in(txn, key, *found)]
            stream_id, _, count = found
            messages = self._messages.messages(txn, stream_id, count)
        _check_count(key, len(messages), count)
        return messages

    def last_messages(self, key: str, wanted: int) -> list[ChatMessage]:
        """The last ``wanted`` current messages of a session, from the cache when it holds the session's version,
        else from the chunks that hold them only (not remembered: they are not the whole list)."""
        validate_key(key)
        with self._read() as txn:
            found = self._catalog.stream_of_key(txn, key)
            if found is None or not wanted:
                return []
            stream_id, version, count = found
            cached = self._decoded.get(key, version)
            if cached is not None:
                return [message for message, _ in cached[max(0, len(cached) - wanted):]]
            return self._messages.last_messages(txn, stream_id, count, wanted)

    def view(self, key: str) -> SessionView | None:
        """A live session as it is now (``None`` for another): its head and messages, read together."""
        validate_key(key)
        with self._read() as txn:
            found = self.live(txn, key)
            if found is None:
                return None
            stream_id, head = found
            entries = self._entries_in(txn, key, stream_id, head.version, head.message_count)
            return view_of(head, entries)

    def _entries_in(self, txn: ReadTransaction, key: str, stream_id: int, version: int, count: int
                    ) -> tuple[Entry, ...]:
        cached = self._decoded.get(key, version)
        if cached is not None:
            return cached
        entries = tuple(self._messages.entries(txn, stream_id, count))
        _check_count(key, len(entries), count)
        self._decoded.remember(key, version, entries)
        return entries

    def keys(self, prefix: str) -> list[str]:
        """Keys of the live sessions starting with ``prefix``, most recent activity first."""
        with self._read() as txn:
            return self._catalog.keys_by_activity(txn, prefix)

    def metadata(self, limit: int | None = None) -> list[SessionMetadata]:
        """Metadata of the live sessions, most recent activity first (the first ``limit``)."""
        with self._read() as txn:
            return self._catalog.metadata_by_activity(txn, limit)

    def listing(self, prefix: str) -> list[SessionMetadata]:
        """Metadata of the sessions whose key starts with ``prefix``, most recent activity first; every
        session's answered from the latest such listing while nothing was committed since."""
        if prefix:
            with self._read() as txn:
                return self._catalog.metadata_with_prefix(txn, prefix)
        with self._read() as txn:
            snapshot_id = txn.snapshot_id()
            cached = self._listing
            if cached is not None and cached[0] == snapshot_id:
                return list(cached[1])
            listing = self._catalog.metadata_by_activity(txn)
        self._listing = (snapshot_id, tuple(listing))
        return listing

    def page(self, limit: int, cursor: str | None, prefix: str) -> SessionPage:
        """The page of at most ``limit`` sessions after ``cursor`` (from the most recent without one)."""
        before = None if cursor is None else _position(cursor)
        with self._read() as txn:
            sessions, last, total = self._catalog.page(txn, limit, before, prefix)
        return SessionPage(tuple(sessions), None if last is None else _cursor(last), total)

    def running(self) -> list[SessionMetadata]:
        """Sessions in the ``"running"`` state, latest turn first."""
        with self._read() as txn:
            return _live_metadata(self._catalog.running(txn))

    def stuck(self, threshold_secs: float) -> list[SessionMetadata]:
        """Running sessions whose turn started more than ``threshold_secs`` ago, oldest first."""
        # A float, so that huge or infinite spans stay exact enough.
        cutoff = now_micros(self._clock) - threshold_secs * 1_000_000
        with self._read() as txn:
            return _live_metadata(self._catalog.running_since_before(txn, cutoff))

    def search(self, keyword: str, limit: int) -> list[SessionMetadata]:
        """Sessions whose current messages best match the words of ``keyword``, best first."""
        words = parse_query(keyword)
        if not words or not limit:
            return []

        def run(view: IndexReader, txn: ReadTransaction) -> list[SessionMetadata]:
            # The ties' activities from the catalog rows the results' metadata are built from: one read a session.
            rows = self._catalog.rows(txn)
            hits = self._search_index.search_sessions(view, words, limit, SessionTexts(self._messages, txn),
                                                      rows.activities)
            return rows.metadata([stream_id for stream_id, _ in hits])

        return self._search.query(run)

    def search_messages(self, keyword: str, limit: int) -> list[SearchHit]:
        """The current messages that best match the words of ``keyword``, best first."""
        words = parse_query(keyword)
        if not words or not limit:
            return []

        def run(view: IndexReader, txn: ReadTransaction) -> list[SearchHit]:
            texts = SessionTexts(self._messages, txn)
            hits, counted = self._search_index.search_messages(view, words, limit, texts)
            found = []
            for stream_id, index, score in hits:
                head = self._catalog.head(txn, stream_id)
                entries = texts.entries(stream_id)
                if head is None or index >= len(entries):
                    raise StoreCorrupted(f"the search index names message {index} of stream {stream_id}, "
                                         "which does not exist")
                message = entries[index][0]
                found.append(SearchHit(head.key, index, message, score, snippet(message.content, counted)))
            return found

        return self._search.query(run)


def _check_count(key: str, stored: int, count: int) -> None:
    """Raises: StoreCorrupted: the session's message list does not hold as many messages as its head counts."""
    if stored != count:
        raise StoreCorrupted(f"session {key!r}: {stored} messages stored, {count} counted")


def _live_metadata(heads: Iterable[SessionHead]) -> list[SessionMetadata]:
    """The metadata of heads from the catalog, which holds live sessions only: each has metadata."""
    return [metadata for head in heads if (metadata := head.metadata()) is not None]
