"""Compression of stored bytes with a store's own dictionary (zstd): what the log and the message chunks use.

A message or an event payload is a few hundred bytes: compressed alone it
barely shrinks, because a compressor learns a text's words from the text
itself. A dictionary trained on the store's own payloads gives it those words
in advance (about half the bytes of an event payload, 40% of a message chunk,
on the scale benchmark's corpus). Each store trains a dictionary from its first
few thousand events (``TRAINING_EVENTS``) and keeps it: every frame written with
it needs it to be read (a ``vacuum`` after a redaction of a payload it learnt
replaces it, and every frame with it: ``EventLog.dictionary_replacement``).
When those events were too alike for it to help (``Dictionary.retrain_due``),
the store trains another from its latest events later, and new frames use that
one. Frames are zstd's without the magic
number (the record or chunk says that it is compressed); the first dictionary's
frames carry no dictionary id, a later one's carry its id (one byte), so each
frame names the dictionary that reads it. They keep their content size and a
checksum (four bytes), so damage is caught on every read.

Every compressed record needs the dictionary, so it is stored twice, each form
checkable on its own (``copy_of``, ``choose``): a damaged one is named, and the
other is read instead.

Pure: bytes in, bytes out; where the dictionary is stored is the log's business.
"""

from __future__ import annotations

import hashlib
import os
import struct
import threading
from collections.abc import Callable, Iterable, Sequence
from operator import itemgetter

import attrs
import zstandard

from ._errors import DictionaryDamaged, StoreCorrupted

__all__ = ["FRAME_MAGIC", "Chosen", "Dictionary", "MAX_DICTIONARIES", "TRAINING_EVENTS", "TRAINING_SAMPLE_BYTES",
           "choose", "copy_of", "digest_of", "from_copy", "train"]

#: A store trains its dictionary when its log reaches this many events, from their payloads.
TRAINING_EVENTS = 4096
#: Bytes of each event payload that training reads: a dictionary serves small frames, and whole payloads of
#: long sessions (a ``MessagesReplaced`` or ``SessionForked`` carries every message) would make the commit that
#: trains hold and train on gigabytes (4,096 payloads of 50 KB: 3 s and 400 MB; at most 16 MiB this way).
TRAINING_SAMPLE_BYTES = 4096
#: Bytes of a trained dictionary (zstd's default size).
DICTIONARY_BYTES = 32 << 10
#: Level 1: on chat text with a dictionary, within 4% of level 3's bytes, and faster to write (a single append
#: to a long session compresses its last chunk, up to 16 KiB, again).
_LEVEL = 1
#: Every zstd frame begins with it; stored frames leave it out.
FRAME_MAGIC = b"\x28\xb5\x2f\xfd"
_AFTER_MAGIC = itemgetter(slice(len(FRAME_MAGIC), None))
# Smallest id zstd leaves to users (lower ones are reserved). A store's first dictionary gets a random one that its
# frames leave out; the dictionaries trained after it get 1, 2, ...: one byte in each frame, private to the store.
_FIRST_FREE_ID = 32768
#: Dictionaries a store keeps at most (each poor one is small).
MAX_DICTIONARIES = 16
# The stored form of several dictionaries begins with this (a zstd dictionary begins with its own magic number).
_BUNDLE = b"eventstore dictionaries\x00"
_LENGTH = struct.Struct("<I")
#: The second stored copy of a store's dictionaries begins with this, then their SHA-256 and length (u32), then
#: their stored form: it checks and delimits itself, so salvage can recognise it in a file's pages when nothing
#: that points at it can be read.
COPY_MAGIC = b"eventstore dictionary copy\x00"
_DIGEST_BYTES = 32


class _Trained:
    """One trained dictionary with the (de)compressors made from it, which are reused: they are expensive to make
    (a fresh decompressor costs twice a chunk's decompression) and cheap to use.

    Neither may be used by two threads at once: the compressor serves the writer (one thread at a time),
    and each reading thread gets a decompressor of its own.
    """

    __slots__ = ("data", "_dictionary", "_compressor", "_local")

    def __init__(self, data: bytes, named: bool) -> None:
        """``named``: frames carry the dictionary's id (every dictionary but a store's first)."""
        self.data = data
        self._dictionary = zstandard.ZstdCompressionDict(data, dict_type=zstandard.DICT_TYPE_FULLDICT)
        # Prepared once: given explicit compression parameters instead of a level, the compressor would
        # load the dictionary again for every frame (twice the time of a payload's compression).
        self._dictionary.precompute_compress(level=_LEVEL)
        self._compressor = zstandard.ZstdCompressor(level=_LEVEL, dict_data=self._dictionary, write_dict_id=named,
                                                    write_checksum=True, write_content_size=True)
        self._local = threading.local()

    @property
    def identity(self) -> int:
        return int(self._dictionary.dict_id())

    def compress(self, data: bytes) -> bytes:
        return self._compressor.compress(data)

    def compressor(self) -> Callable[[bytes], bytes]:
        """``compress`` itself, zstd's: a caller compressing many payloads calls it without this method's call."""
        return self._compressor.compress

    def decompress(self, frame: bytes) -> bytes:
        return self.decompressor()(frame)

    def decompressor(self) -> Callable[[bytes], bytes]:
        """The calling thread's ``decompress``, zstd's: a caller decompressing many frames calls it without this
        class's calls."""
        decompressor: zstandard.ZstdDecompressor | None = getattr(self._local, "decompressor", None)
        if decompressor is None:
            decompressor = self._local.decompressor = zstandard.ZstdDecompressor(dict_data=self._dictionary)
        return decompressor.decompress


class Dictionary:
    """A store's compression dictionaries: the first, and those trained again because the sample of the one
    before was poor (``retrain_due``). New frames use the newest; every frame stays readable, as each names
    its dictionary: the first's frames carry no dictionary id, later ones' carry theirs (ids 1, 2, ...).

    Stored (``data``) as the first dictionary's bytes alone until a second is trained, then as ``_BUNDLE`` and,
    for each dictionary, its length (u32) and bytes.
    """

    __slots__ = ("data", "_trained", "_by_id")

    def __init__(self, data: bytes) -> None:
        """Raises: StoreCorrupted: ``data`` is not a zstd dictionary or a bundle of them."""
        self.data = data
        try:
            self._trained = [_Trained(part, named=index > 0) for index, part in enumerate(_parts(data))]
            self._by_id = {0: self._trained[0], **{trained.identity: trained for trained in self._trained[1:]}}
            if sorted(self._by_id) != list(range(len(self._trained))):
                raise StoreCorrupted("its dictionaries have the wrong ids")
            for trained in self._trained:
                self.expand(trained.compress(b"check")[len(FRAME_MAGIC):], "a check")
        except (zstandard.ZstdError, StoreCorrupted) as exc:
            raise DictionaryDamaged(f"the store's compression dictionary is damaged ({exc})") from None

    @property
    def log_format(self) -> int:
        """The log format a store with these dictionaries has: 3 once frames may name a dictionary."""
        return 2 if len(self._trained) == 1 else 3

    def retrain_due(self, before: int, after: int, every: int = TRAINING_EVENTS) -> bool:
        """Whether the append that takes the log from ``before`` to ``after`` events trains another dictionary.

        It does when the newest was trained on too alike a sample to help: it has fewer bytes than the ``every``
        payloads it was trained on (on chat text zstd fills its 32 KiB; on 4,096 copies of one payload it makes
        176 bytes, on 4,096 payloads of 8 kinds 493). Then it trains at a multiple of ``every`` once the log has
        reached ``every`` times two to the number of dictionaries: each one doubles the wait, and a store whose
        payloads stay alike trains ``MAX_DICTIONARIES`` at most."""
        count = len(self._trained)
        return len(self._trained[-1].data) < every and count < MAX_DICTIONARIES and after >= every << count \
            and after // every > before // every

    def with_another(self, data: bytes) -> bytes:
        """What to store for these dictionaries and ``data``, a dictionary ``train`` made with ``next_id``."""
        parts = [trained.data for trained in self._trained] + [data]
        return _BUNDLE + b"".join(_LENGTH.pack(len(part)) + part for part in parts)

    @property
    def next_id(self) -> int:
        """The id of the next dictionary trained (what its frames carry)."""
        return len(self._trained)

    def compress(self, data: bytes) -> bytes:
        return self._trained[-1].compress(data)[len(FRAME_MAGIC):]

    def frames(self, payloads: Iterable[bytes]) -> list[bytes]:
        """``compress`` of each payload (an append's, in one pass)."""
        return list(map(_AFTER_MAGIC, map(self._trained[-1].compressor(), payloads)))

    def expander(self) -> Callable[[bytes], bytes]:
        """What expands a frame with ``FRAME_MAGIC`` joined back in the calling thread: with one dictionary zstd's
        call itself (a caller expanding many frames calls it without ``expand``'s two calls), which raises
        ``ZstdError`` or ``MemoryError`` where ``expand`` names the damage; with several, ``expand``."""
        if len(self._trained) == 1:
            return self._trained[0].decompressor()
        return lambda whole: self.expand(whole[len(FRAME_MAGIC):], "the frame")

    def expand(self, frame: bytes, what: str) -> bytes:
        """The bytes ``frame`` holds.

        Raises:
            StoreCorrupted: ``frame`` is damaged (or was made with another dictionary), naming ``what`` it is.
        """
        try:
            whole = FRAME_MAGIC + frame
            # With one dictionary zstd itself refuses a frame that names another; reading the id costs a call.
            trained = self._trained[0] if len(self._trained) == 1 else \
                self._by_id.get(zstandard.get_frame_parameters(whole).dict_id)
            if trained is None:
                raise StoreCorrupted(f"{what} names a compression dictionary the store does not have")
            return trained.decompress(whole)
        except MemoryError:  # a damaged header can claim any content size: decompress allocates that much first
            raise StoreCorrupted(f"{what} does not decompress (it claims an impossible size)") from None
        except zstandard.ZstdError as exc:
            raise StoreCorrupted(f"{what} does not decompress ({exc})") from None


def digest_of(data: bytes) -> bytes:
    """The SHA-256 stored beside a dictionary's stored form (``Dictionary.data``)."""
    return hashlib.sha256(data).digest()


def copy_of(data: bytes) -> bytes:
    """The self-checking second copy of a dictionary's stored form."""
    return COPY_MAGIC + digest_of(data) + _LENGTH.pack(len(data)) + data


def from_copy(copy: bytes) -> bytes | None:
    """The stored form a second copy holds (bytes after its end are ignored), or ``None`` when it is damaged."""
    start = len(COPY_MAGIC) + _DIGEST_BYTES + _LENGTH.size
    if not copy.startswith(COPY_MAGIC) or len(copy) < start:
        return None
    (size,) = _LENGTH.unpack_from(copy, start - _LENGTH.size)
    data = copy[start:start + size]
    return data if len(data) == size and digest_of(data) == copy[len(COPY_MAGIC):start - _LENGTH.size] else None


@attrs.frozen
class Chosen:
    """Which stored form of the dictionaries to read, and what is wrong with the other.

    Attributes:
        data: the stored form to read (``None``: neither is intact, or there is none).
        problem: what is damaged, in a sentence (``None``: nothing found).
        secured: the primary, its digest and its copy are all there and agree (nothing to write).
    """

    data: bytes | None
    problem: str | None
    secured: bool


def choose(primary: bytes | None, digest: bytes | None, copy: bytes | None) -> Chosen:
    """The intact one of a dictionary's two stored forms: ``primary`` (checked against ``digest``) or ``copy``.

    A store written before the copy existed has neither digest nor copy: its primary is read unchecked.
    """
    copied = None if copy is None else from_copy(copy)
    if digest is None and copy is None:
        return Chosen(primary, None if primary is not None else "the compression dictionary is missing", False)
    if primary is not None and (digest_of(primary) == digest or primary == copied):
        if primary == copied and digest == digest_of(primary):
            return Chosen(primary, None, True)
        damaged = "digest" if primary == copied else "copy"
        return Chosen(primary, f"the compression dictionary's {damaged} is damaged (the dictionary itself is intact)",
                      False)
    if copied is not None:
        return Chosen(copied, "the compression dictionary is damaged or missing (it does not match its digest); its "
                              "copy is intact and is read instead", False)
    return Chosen(None, "the compression dictionary is damaged and so is its copy: no compressed record or message "
                        "chunk can be read", False)


def _parts(data: bytes) -> list[bytes]:
    """The dictionaries of a stored form (see ``Dictionary``), oldest first."""
    if not data.startswith(_BUNDLE):
        return [data]
    parts, at = [], len(_BUNDLE)
    while at < len(data):
        if at + _LENGTH.size > len(data):
            raise StoreCorrupted("a bundle of dictionaries is cut short")
        (size,) = _LENGTH.unpack_from(data, at)
        at += _LENGTH.size
        parts.append(data[at:at + size])
        at += size
    if at != len(data) or len(parts) < 2:
        raise StoreCorrupted("a bundle of dictionaries has the wrong size")
    return parts


def train(samples: Sequence[bytes], dictionary_id: int | None = None) -> bytes | None:
    """A dictionary trained on ``samples``, or ``None`` when they are too few or too alike to train one.

    ``dictionary_id``: the id frames will carry (``Dictionary.next_id``); a store's first dictionary gets a random
    one, which its frames leave out."""
    if dictionary_id is None:
        dictionary_id = _FIRST_FREE_ID + int.from_bytes(os.urandom(4)) % ((1 << 31) - _FIRST_FREE_ID)
    try:
        # Fixed k and d (segment and d-mer sizes) rather than zstd's search over them: a few times faster,
        # and on chat text as good within a percent.
        trained = zstandard.train_dictionary(DICTIONARY_BYTES, list(samples), k=1024, d=8, threads=1,
                                             dict_id=dictionary_id, level=_LEVEL)
    except zstandard.ZstdError:
        return None
    return trained.as_bytes()
