"""ZeroClaw's JSONL session files, both ways: one read into a batch (``read_jsonl``), messages as one
(``jsonl_bytes``).

``<key>.jsonl`` holds one ``{"role", "content"}`` object a line, no times. The
file name is the key with every character other than a Unicode letter, digit,
``_`` or ``-`` replaced by ``_`` (``sanitize_key``; so the original key may be lost; the file
name is the key we import, unless the first line is a ``{"session_key": KEY}``
record, which our export writes and ZeroClaw skips). ZeroClaw splits lines on
``\\n`` only and skips blank, corrupt and non-UTF-8 lines; so do we (Python's
``splitlines`` would also break on U+2028 inside JSON strings). Imported
messages get the file's modification time. An empty or blank file is a
session with no messages (ZeroClaw lists it; clearing a session empties it).
"""

from __future__ import annotations

import hashlib
import os
from collections.abc import Sequence
from pathlib import Path

import orjson

from .._errors import EventStoreError, shown
from .._time import Clock, system_clock
from .._values import ChatMessage, validate_key
from ..events import MessageAppended, SessionRenamed
from ._source import (
    BAD_KEY,
    BLANK,
    EPOCH,
    INVALID_UTF8,
    MAX_LINE_BYTES,
    NOT_A_MESSAGE,
    NOT_JSON,
    TOO_LONG,
    SkippedLine,
    SourceBatch,
    TimedEvents,
    chunks,
    latest_time,
    modification_time,
    open_source,
)

__all__ = ["KEY_FIELD", "parse_message", "read_jsonl", "jsonl_bytes"]

#: The field of the record that names a JSONL file's session when the file name is not the key.
KEY_FIELD = "session_key"


def parse_message(raw: bytes) -> ChatMessage | str:
    """A JSONL line as a message, or the reason it is not one."""
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError:
        return INVALID_UTF8
    if not text.strip():
        return BLANK
    try:
        data = orjson.loads(text)
    except orjson.JSONDecodeError:
        return NOT_JSON
    if not isinstance(data, dict):
        return NOT_A_MESSAGE
    role, content = data.get("role"), data.get("content")
    if not isinstance(role, str) or not isinstance(content, str):
        return NOT_A_MESSAGE
    try:
        return ChatMessage(role, content)
    except EventStoreError:
        return NOT_A_MESSAGE


def _key_record(raw: bytes) -> str | None:
    """The key a ``{"session_key": KEY}`` line names (the first line our export writes when needed), if it is one."""
    try:
        data = orjson.loads(raw)
    except orjson.JSONDecodeError:
        return None
    if not isinstance(data, dict) or list(data) != [KEY_FIELD] or not isinstance(data[KEY_FIELD], str):
        return None
    try:
        return validate_key(data[KEY_FIELD])
    except EventStoreError:
        return None


def read_jsonl(path: str | os.PathLike[str], *, roots: Sequence[Path] | None = None,
               clock: Clock = system_clock) -> SourceBatch:
    """Read one ZeroClaw JSONL session file; the file name without ``.jsonl`` is the key, unless the
    first line is a ``{"session_key": KEY}`` record.

    Lines are split on ``\\n`` only; blank lines, lines that are not JSON or not a
    message, invalid UTF-8 and lines over ``MAX_LINE_BYTES`` are skipped and
    listed. Every message gets the file's modification time (a bad time if it is past ``clock``, the importing
    store's, plus ``CLOCK_SKEW``: see ``latest_time``). A file with no
    line but blank ones is a session with no messages (recorded as a session
    without a name, as ``set_session_name(key, "")`` would create it).

    Raises:
        RefusedSource: not a regular file, over ``MAX_FILE_BYTES``, or (with ``roots``) a link leaving them.
        OSError: it cannot be read.
    """
    path = Path(path)
    with open_source(path, roots) as (fd, info):
        data = b"".join(chunks(fd))
    size, sha256 = len(data), hashlib.sha256(data).hexdigest()
    lines = data.split(b"\n")
    if lines and lines[-1] == b"":
        lines.pop()  # the newline ending the last line starts no line
    recorded_key = _key_record(lines[0]) if lines else None
    key = recorded_key or path.name[: -len(".jsonl")]
    moment = modification_time(info, latest_time(clock))
    bad_times = int(moment is None)
    moment = moment or EPOCH
    events: TimedEvents = []
    skipped = []
    for number, raw in enumerate(lines, 1):
        if number == 1 and recorded_key is not None:
            continue
        found = TOO_LONG if len(raw) > MAX_LINE_BYTES else parse_message(raw)
        if isinstance(found, str):
            skipped.append(SkippedLine(number, found))
        else:
            events.append((moment, MessageAppended(found)))
    try:
        validate_key(key)
    except EventStoreError as exc:
        bad_key = SkippedLine(0, BAD_KEY, f"{shown(key, 80)}: {exc}")
        return SourceBatch(path, "jsonl", size, sha256, {}, (*skipped, bad_key), (), bad_times)
    if not events and all(s.reason == BLANK for s in skipped):
        events.append((moment, SessionRenamed(None)))
    sessions = {key: events} if events else {}
    return SourceBatch(path, "jsonl", size, sha256, sessions, tuple(skipped), () if events else (key,), bad_times)


def jsonl_bytes(messages: Sequence[ChatMessage], key: str | None = None) -> bytes:
    """Messages as a ZeroClaw JSONL session file (one compact ``{"role","content"}`` object a line), after a
    ``{"session_key": key}`` line if ``key`` is given (ZeroClaw skips it; ``read_jsonl`` takes the key from it)."""
    lines = [orjson.dumps({KEY_FIELD: key})] if key is not None else []
    lines += [orjson.dumps({"role": m.role, "content": m.content}) for m in messages]
    return b"".join(line + b"\n" for line in lines)
