"""The file names of an export: ZeroClaw's own where they are safe, hashed where not (``plan_file_names``)."""

from __future__ import annotations

import hashlib
import os
import unicodedata
from collections import Counter
from collections.abc import Sequence

from ._rust_alphanumeric import is_alphanumeric

__all__ = ["MAX_NAME_BYTES", "sanitize_key", "caseless", "plan_file_names"]


def sanitize_key(key: str) -> str:
    """The file name stem ZeroClaw uses for ``key``: every character other than a Unicode letter or
    digit (as Rust's ``char::is_alphanumeric`` has them: ``_rust_alphanumeric``), ``_`` or ``-`` becomes ``_``."""
    return "".join(c if c in "_-" or is_alphanumeric(c) else "_" for c in key)


#: The longest file name an export writes, in bytes (most file systems' limit); a longer ZeroClaw name is hashed.
MAX_NAME_BYTES = 255
#: How much of the sanitized key a hashed name keeps in front, in bytes, so that it stays readable.
_HASHED_PREFIX_BYTES = 100


def caseless(name: str) -> str:
    """The form under which two names are the same file on a case-insensitive or normalizing file system."""
    return unicodedata.normalize("NFKC", unicodedata.normalize("NFKC", name).casefold())


def _encodable(name: str) -> bool:
    try:
        return len(os.fsencode(name)) <= MAX_NAME_BYTES
    except UnicodeError:
        return False


def _hashed_name(key: str) -> str:
    """``<start of the sanitized key>.<128 bits of the key's SHA-256>.jsonl``: never too long, never equal to
    another key's name, never equal to a ZeroClaw name (which has no ``.`` before ``.jsonl``)."""
    digest = hashlib.sha256(key.encode()).hexdigest()[:32]
    prefix = sanitize_key(key).encode()[:_HASHED_PREFIX_BYTES].decode("utf-8", "ignore")
    return f"{prefix}.{digest}.jsonl" if _encodable(prefix) else f"{digest}.jsonl"


def plan_file_names(keys: Sequence[str]) -> dict[str, str]:
    """The file name of each key's export, all decided before any is written.

    A key keeps ZeroClaw's name (``<sanitized key>.jsonl``) when it fits in
    ``MAX_NAME_BYTES``, the file system can encode it, and no other key of the
    export has the same name up to case and Unicode normalization; otherwise it
    gets a hashed name (``_hashed_name``). The real key is in the file's first
    line and in the manifest whenever the name does not say it.
    """
    plain = {key: f"{sanitize_key(key)}.jsonl" for key in keys}
    uses = Counter(caseless(name) for name in plain.values())
    return {key: name if _encodable(name) and uses[caseless(name)] == 1 else _hashed_name(key)
            for key, name in plain.items()}
