"""The store's compression dictionary in ``log.meta``: its stored forms, what it learnt from, and its replacement.

Entries: ``dictionary.id`` (random, a new one for each dictionary stored), ``dictionary`` and ``dictionary.sha256``,
the self-checking ``dictionary.copy``, ``dictionary.learnt`` (the positions each dictionary was trained on) and
``dictionary.learnt_redacted`` (set once one of those payloads is redacted, so that ``vacuum`` replaces the
dictionaries). The log (``_log.EventLog``) trains dictionaries and compresses records with them; this module keeps
them, and the messages read model reads its chunks' dictionary through it too.
"""

from __future__ import annotations

import hashlib
import os
import struct
from collections.abc import Iterable, Iterator, Sequence

import attrs

from ._compression import Chosen, Dictionary, choose, copy_of, digest_of
from ._errors import DictionaryDamaged, StoreCorrupted
from .storage import ReadTransaction, Space, WriteTransaction

__all__ = ["StoredDictionary", "DictionaryReplacement"]

# The positions a dictionary was trained on: those after the first and up to the second.
_SPAN = struct.Struct(">QQ")
_LEARNT = b"dictionary.learnt"  # a ``_SPAN`` for each dictionary, oldest first, then ``_LEARNT_CHECK`` bytes
_LEARNT_CHECK = 8  # of the spans' SHA-256
_LEARNT_REDACTED = b"dictionary.learnt_redacted"  # present once a payload a dictionary learnt from is redacted
_DICTIONARY_KEYS = frozenset({b"dictionary", b"dictionary.sha256", b"dictionary.copy", b"dictionary.id", _LEARNT,
                              _LEARNT_REDACTED})


class StoredDictionary:
    """The store's compression dictionary in ``log.meta``: read through each transaction (another process may
    have trained it), decoded once per process.

    Stored twice (``dictionary`` with its SHA-256 ``dictionary.sha256``, and the self-checking
    ``dictionary.copy``), each large enough for pages of its own: a read uses whichever is intact
    (``_compression.choose``), and a writable open gives an older store both and rewrites a damaged one
    from the other (``secure``).

    A dictionary keeps pieces of the payloads it was trained on word for word, so the store also keeps which
    positions those were (``learnt``) and whether one of them was redacted since (``learnt_redacted``): then
    ``vacuum`` replaces the dictionaries (``EventLog.dictionary_replacement``).
    """

    def __init__(self, meta: Space) -> None:
        self._meta = meta
        self._known: dict[bytes, Dictionary] = {}  # by stored id

    def get(self, txn: ReadTransaction) -> Dictionary | None:
        """The store's dictionary as ``txn`` sees it, ``None`` before it is trained.

        Raises:
            DictionaryDamaged: neither stored form of the dictionary is intact.
        """
        identity = txn.get(self._meta, b"dictionary.id")
        if identity is None:
            return None
        found = self._known.get(identity)
        if found is None:
            chosen = self._chosen(txn)
            if chosen.data is None:
                raise DictionaryDamaged(str(chosen.problem))
            # Ids are random: one trained in a transaction that was rolled back is never asked for again.
            found = self._known[bytes(identity)] = Dictionary(chosen.data)
        return found

    def require(self, txn: ReadTransaction) -> Dictionary:
        """The store's dictionary, which a compressed record or chunk needs.

        Raises:
            DictionaryDamaged: there is none, or neither stored form is intact.
        """
        found = self.get(txn)
        if found is None:
            raise DictionaryDamaged("compressed data, but the store has no compression dictionary")
        return found

    def problem(self, txn: ReadTransaction) -> tuple[str, bool] | None:
        """What is wrong with the stored dictionary (for ``verify``), read afresh, and whether compressed data
        can still be read (one stored form is intact); ``None`` when nothing is wrong."""
        if txn.get(self._meta, b"dictionary.id") is None:
            return None
        chosen = self._chosen(txn)
        if chosen.data is None:
            return str(chosen.problem), False
        try:
            Dictionary(chosen.data)
        except StoreCorrupted as exc:
            return str(exc), False
        if chosen.problem is not None:
            return chosen.problem, True
        if self._learnt_damaged(txn):
            return ("the record of the positions the compression dictionary was trained on is damaged (until a "
                    "writable open drops it, a vacuum after a redaction counts every redacted record as learnt)",
                    True)
        return None

    def _chosen(self, txn: ReadTransaction) -> Chosen:
        def value(key: bytes) -> bytes | None:
            found = txn.get(self._meta, key)
            return None if found is None else bytes(found)

        return choose(value(b"dictionary"), value(b"dictionary.sha256"), value(b"dictionary.copy"))

    def secure(self, txn: WriteTransaction) -> None:
        """Give a dictionary stored without its digest and copy both, and rewrite a damaged form from the intact
        one (a writable open does this); a dictionary with neither form intact is left for ``verify`` to name."""
        if txn.get(self._meta, b"dictionary.id") is None:
            return
        if self._learnt_damaged(txn):
            # Unknown positions count every redacted record as learnt (``EventLog``): safe, and repaired.
            txn.delete(self._meta, _LEARNT)
        chosen = self._chosen(txn)
        if chosen.data is None or chosen.secured:
            return
        try:
            Dictionary(chosen.data)
        except StoreCorrupted:
            return  # an unchecked old form that does not even parse gets no digest
        self._store(txn, chosen.data)

    def put(self, txn: WriteTransaction, data: bytes, learnt: Sequence[tuple[int, int]] | None) -> Dictionary:
        """Store ``data``, whose dictionaries were trained on the positions ``learnt`` says (``None``: unknown); the
        caller marks the log with the format the dictionary needs (``Dictionary.log_format``)."""
        dictionary = Dictionary(data)
        if learnt is None:
            txn.delete(self._meta, _LEARNT)  # a damaged record, which would otherwise outlive the unknown
        for key, value in _entries(data, learnt).items():
            txn.put(self._meta, key, value)
        return dictionary

    def _store(self, txn: WriteTransaction, data: bytes) -> None:
        for key, value in _stored_forms(data).items():
            txn.put(self._meta, key, value)

    def learnt(self, txn: ReadTransaction) -> list[tuple[int, int]] | None:
        """The positions each dictionary was trained on, (after, up to) for each, oldest first; ``None`` when
        unknown: dictionaries that an older version trained, which kept no such record, or a damaged record
        (``verify`` names it; a writable open drops it)."""
        raw = txn.get(self._meta, _LEARNT)
        return None if raw is None else _spans(bytes(raw))

    def _learnt_damaged(self, txn: ReadTransaction) -> bool:
        raw = txn.get(self._meta, _LEARNT)
        return raw is not None and _spans(bytes(raw)) is None

    def learnt_redacted(self, txn: ReadTransaction) -> bool:
        """Whether a payload at a position in ``learnt`` was redacted after its dictionary was trained."""
        return txn.get(self._meta, _LEARNT_REDACTED) is not None

    def note_redaction(self, txn: WriteTransaction, position: int) -> None:
        """The payload at ``position`` was redacted: remember it if a dictionary learnt from it."""
        if txn.get(self._meta, b"dictionary.id") is None or self.learnt_redacted(txn):
            return
        learnt = self.learnt(txn)  # None: an older version's dictionary, which ``EventLog`` judges by the log
        if learnt is not None and any(after < position <= last for after, last in learnt):
            txn.put(self._meta, _LEARNT_REDACTED, b"1")


def _stored_forms(data: bytes) -> dict[bytes, bytes]:
    """The meta entries of a dictionary's stored form ``data``: itself, its digest and its copy."""
    return {b"dictionary": data, b"dictionary.sha256": digest_of(data), b"dictionary.copy": copy_of(data)}


def _spans(raw: bytes) -> list[tuple[int, int]] | None:
    """The spans a stored ``_LEARNT`` record holds; ``None`` when it is damaged (a damaged span could hide a
    redacted payload a dictionary learnt, so the record checks itself)."""
    packed, check = raw[:-_LEARNT_CHECK], raw[-_LEARNT_CHECK:]
    if not packed or len(packed) % _SPAN.size or hashlib.sha256(packed).digest()[:_LEARNT_CHECK] != check:
        return None
    return list(_SPAN.iter_unpack(packed))


def _entries(data: bytes, learnt: Sequence[tuple[int, int]] | None) -> dict[bytes, bytes]:
    """Every meta entry of newly trained dictionaries: their stored forms, a new id and what they learnt from."""
    entries = {**_stored_forms(data), b"dictionary.id": os.urandom(8)}
    if learnt is not None:
        packed = b"".join(_SPAN.pack(*span) for span in learnt)
        entries[_LEARNT] = packed + hashlib.sha256(packed).digest()[:_LEARNT_CHECK]
    return entries


@attrs.frozen
class DictionaryReplacement:
    """What ``vacuum`` puts in place of compression dictionaries that learnt from payloads redacted since
    (``EventLog.dictionary_replacement``): one dictionary trained on the current payloads.

    Attributes:
        old: the dictionaries every stored frame names.
        new: the replacement (``None``: the current payloads train none; frames are stored plain then).
        data: the replacement's stored form.
        learnt: the positions it was trained on (after, up to).
    """

    old: Dictionary
    new: Dictionary | None
    data: bytes | None
    learnt: tuple[int, int]

    def meta(self, pairs: Iterable[tuple[bytes, bytes]]) -> Iterator[tuple[bytes, bytes]]:
        """``log.meta``'s entries with the replacement's in place of the old dictionaries', in key order."""
        kept = {key: value for key, value in pairs if key not in _DICTIONARY_KEYS}
        if self.data is not None:
            kept.update(_entries(self.data, [self.learnt]))
        return iter(sorted(kept.items()))
