"""Decoded message lists kept between calls, by session key, with the session version they are valid for."""

from __future__ import annotations

import threading
from collections import OrderedDict
from collections.abc import Sequence

from projections.session import Change, Entry, apply_edit, message_edit

__all__ = ["DecodedSessions"]


class DecodedSessions:
    """The ``capacity`` most recently used sessions' decoded lists (shared by threads)."""

    def __init__(self, capacity: int) -> None:
        self.capacity = capacity
        self._lists: OrderedDict[str, tuple[int, tuple[Entry, ...]]] = OrderedDict()
        self._lock = threading.Lock()

    def get(self, key: str, version: int) -> tuple[Entry, ...] | None:
        """The session's list if the cache holds it at ``version``."""
        cached = self._lists.get(key)
        return cached[1] if cached is not None and cached[0] == version else None

    def remember(self, key: str, version: int, entries: tuple[Entry, ...]) -> None:
        with self._lock:  # threads share the store: keep the LRU bookkeeping whole
            self._lists[key] = (version, entries)
            self._lists.move_to_end(key)
            while len(self._lists) > self.capacity:
                self._lists.popitem(last=False)

    def advance(self, committed: Sequence[Change]) -> None:
        """Bring a session's cached list up to date with events this process just committed (one session's).

        An assistant appends and reloads every turn; folding the new events into the
        cached list spares that reload its decode.
        """
        if not committed:
            return
        key = committed[0].session_key
        cached = self._lists.get(key)
        if cached is None or cached[0] != committed[0].version - 1:
            return
        entries = list(cached[1])
        for event in committed:
            apply_edit(entries, message_edit(event))
        self.remember(key, committed[-1].version, tuple(entries))

    def clear(self) -> None:
        self._lists.clear()
