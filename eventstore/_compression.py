"""Compression of stored bytes with a store's own dictionary (zstd): what the log and the message chunks use.

A message or an event payload is a few hundred bytes: compressed alone it
barely shrinks, because a compressor learns a text's words from the text
itself. A dictionary trained on the store's own payloads gives it those words
in advance (about half the bytes of an event payload, 40% of a message chunk,
on the scale benchmark's corpus). Each store trains one dictionary, once, from
its first few thousand events (``TRAINING_EVENTS``), and keeps it forever: every
frame written with it needs it to be read. Frames are zstd's without the magic
number and the dictionary id (eight bytes a frame: the store has one dictionary,
and the record or chunk says that it is compressed); they keep their content
size and a checksum (four bytes), so damage is caught on every read.

Pure: bytes in, bytes out; where the dictionary is stored is the log's business.
"""

from __future__ import annotations

import os
import threading
from collections.abc import Sequence

import zstandard

from ._errors import StoreCorrupted

__all__ = ["Dictionary", "TRAINING_EVENTS", "TRAINING_SAMPLE_BYTES", "train"]

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
# Every zstd frame begins with it; stored frames leave it out.
_MAGIC = b"\x28\xb5\x2f\xfd"
# Smallest id zstd leaves to users (lower ones are reserved).
_FIRST_FREE_ID = 32768


class Dictionary:
    """A store's compression dictionary, with the (de)compressors made from it, which are reused: they are
    expensive to make (a fresh decompressor costs twice a chunk's decompression) and cheap to use.

    Neither may be used by two threads at once: the compressor serves the writer (one thread at a time),
    and each reading thread gets a decompressor of its own.
    """

    __slots__ = ("data", "_dictionary", "_compressor", "_local")

    def __init__(self, data: bytes) -> None:
        """Raises: StoreCorrupted: ``data`` is not a zstd dictionary."""
        self.data = data
        try:
            self._dictionary = zstandard.ZstdCompressionDict(data, dict_type=zstandard.DICT_TYPE_FULLDICT)
            # Prepared once: given explicit compression parameters instead of a level, the compressor would
            # load the dictionary again for every frame (twice the time of a payload's compression).
            self._dictionary.precompute_compress(level=_LEVEL)
            self._compressor = zstandard.ZstdCompressor(level=_LEVEL, dict_data=self._dictionary, write_dict_id=False,
                                                        write_checksum=True, write_content_size=True)
            self._local = threading.local()
            self.expand(self.compress(b"check"), "a check")
        except zstandard.ZstdError as exc:
            raise StoreCorrupted(f"the store's compression dictionary is damaged ({exc})") from None

    def _decompressor(self) -> zstandard.ZstdDecompressor:
        decompressor: zstandard.ZstdDecompressor | None = getattr(self._local, "decompressor", None)
        if decompressor is None:
            decompressor = self._local.decompressor = zstandard.ZstdDecompressor(dict_data=self._dictionary)
        return decompressor

    def compress(self, data: bytes) -> bytes:
        return self._compressor.compress(data)[len(_MAGIC):]

    def expand(self, frame: bytes, what: str) -> bytes:
        """The bytes ``frame`` holds.

        Raises:
            StoreCorrupted: ``frame`` is damaged (or was made with another dictionary), naming ``what`` it is.
        """
        try:
            return self._decompressor().decompress(_MAGIC + frame)
        except MemoryError:  # a damaged header can claim any content size: decompress allocates that much first
            raise StoreCorrupted(f"{what} does not decompress (it claims an impossible size)") from None
        except zstandard.ZstdError as exc:
            raise StoreCorrupted(f"{what} does not decompress ({exc})") from None


def train(samples: Sequence[bytes]) -> bytes | None:
    """A dictionary trained on ``samples``, or ``None`` when they are too few or too alike to train one."""
    dictionary_id = _FIRST_FREE_ID + int.from_bytes(os.urandom(4)) % ((1 << 31) - _FIRST_FREE_ID)
    try:
        # Fixed k and d (segment and d-mer sizes) rather than zstd's search over them: a few times faster,
        # and on chat text as good within a percent.
        trained = zstandard.train_dictionary(DICTIONARY_BYTES, list(samples), k=1024, d=8, threads=1,
                                             dict_id=dictionary_id, level=_LEVEL)
    except zstandard.ZstdError:
        return None
    return trained.as_bytes()
