"""Decoded message lists kept between calls, by session key, with the session version they are valid for."""

from __future__ import annotations

import threading
from collections import OrderedDict
from collections.abc import Sequence

from projections.session import AppendMessage, Change, Entry, apply_edit, message_edit

__all__ = ["DecodedSessions"]

#: How many commits of one session may wait for an earlier one's ``advance`` (threads that commit in one group
#: report their changes in any order); a session with more waiting has missed one, and leaves the cache.
WAITING_LIMIT = 64


class DecodedSessions:
    """The ``capacity`` most recently used sessions' decoded lists (shared by threads)."""

    def __init__(self, capacity: int) -> None:
        self.capacity = capacity
        self._lists: OrderedDict[str, tuple[int, tuple[Entry, ...]]] = OrderedDict()
        # Committed changes of a cached session that came before the changes they follow, by first version.
        self._waiting: dict[str, dict[int, Sequence[Change]]] = {}
        self._lock = threading.Lock()

    def get(self, key: str, version: int) -> tuple[Entry, ...] | None:
        """The session's list if the cache holds it at ``version``."""
        cached = self._lists.get(key)
        return cached[1] if cached is not None and cached[0] == version else None

    def remember(self, key: str, version: int, entries: tuple[Entry, ...]) -> None:
        """Keep the session's list at ``version``, unless the cache already holds a later one."""
        with self._lock:  # threads share the store: keep the LRU bookkeeping whole
            cached = self._lists.get(key)
            if cached is not None and cached[0] > version:
                self._lists.move_to_end(key)  # a reader that raced a commit: the later list stays
                return
            self._keep(key, version, entries)

    def advance(self, committed: Sequence[Change]) -> None:
        """Bring a session's cached list up to date with events this process just committed (one session's).

        An assistant appends and reloads every turn; folding the new events into the
        cached list spares that reload its decode. Changes that arrive before those they follow wait for them.
        """
        if not committed:
            return
        key = committed[0].session_key
        with self._lock:
            cached = self._lists.get(key)
            if cached is None or committed[-1].version <= cached[0]:
                return
            if committed[0].version != cached[0] + 1:
                waiting = self._waiting.setdefault(key, {})
                waiting[committed[0].version] = committed
                if len(waiting) > WAITING_LIMIT:
                    self._forget(key)
                return
            self._keep(key, cached[0], cached[1], committed)

    def clear(self) -> None:
        with self._lock:
            self._lists.clear()
            self._waiting.clear()

    def _keep(self, key: str, version: int, entries: tuple[Entry, ...], committed: Sequence[Change] = ()) -> None:
        """Store ``entries`` (at ``version``) with ``committed`` and then any changes waiting for them applied."""
        waiting = self._waiting.get(key, {})
        batch = committed or waiting.pop(version + 1, ())
        if batch:
            # Appends (and events that change no message) add to the list's end: one copy of it, by a tuple's
            # concatenation; any other edit works on a list made of it.
            edited: list[Entry] | None = None
            appended: list[Entry] = []
            while batch:
                for event in batch:
                    edit = message_edit(event)
                    if edited is None and (edit is None or type(edit) is AppendMessage):
                        if edit is not None:
                            appended.append(edit.message)
                        continue
                    if edited is None:
                        edited = [*entries, *appended]
                    apply_edit(edited, edit)
                version = batch[-1].version
                batch = waiting.pop(version + 1, ())
            entries = entries + tuple(appended) if edited is None else tuple(edited)
        for first in [first for first in waiting if first <= version]:
            del waiting[first]
        if not waiting:
            self._waiting.pop(key, None)
        self._lists[key] = (version, entries)
        self._lists.move_to_end(key)
        while len(self._lists) > self.capacity:
            self._forget(next(iter(self._lists)))

    def _forget(self, key: str) -> None:
        self._lists.pop(key, None)
        self._waiting.pop(key, None)
