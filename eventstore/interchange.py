"""The ``events`` interchange format: a store's event log as JSON Lines, and reading it back.

What lives here and why: ``eventstore export --format events`` and ``eventstore
import events`` need one documented, stable text form of recorded events that
keeps everything replication needs (position, version, time, id, payload
digest, hash, redaction flag). The event payload is the codec's own JSON
(``eventstore._codec``), so the format follows the event schemas and their
upcasters. No click here: the command line is a thin shell over these functions.

The file (UTF-8, one JSON object a line, ``\\n`` line ends; ``docs/events-format.md``):

* line 1, the header: ``{"format": "eventstore.events", "version": 2,
  "whole_log": true, "keys": null}``. ``whole_log`` says the file holds every
  event of its store from position 1 (an exact replica can be built from it);
  otherwise ``keys`` lists the sessions whose histories it holds.
* every further line but the last, one recorded event: ``{"position", "session_key",
  "version", "recorded_at" (ISO 8601, UTC, microseconds), "event_id" (UUID),
  "type", "schema_version", "payload" (the codec's JSON), "payload_digest",
  "hash", "redacted"}``. U+2028 and U+2029 are written as ``\\u2028`` and
  ``\\u2029`` escapes, so even a reader that splits lines on them works.
* the last line, the trailer: ``{"end": true, "events": N, "last_hash": H}``, the
  number of event lines and the hash of the last (``null`` for none), so that a
  file cut short at a line boundary is refused. Version 1 files have no trailer;
  they are still read, with a warning.

Before an import writes anything, every line is checked (``check_events``): each
payload against its digest, each hash against the one before it when that event
is in the file, versions from 1 without a gap, redactions as ``verify`` checks
them, and each event against its session as no command would record it.
"""

from __future__ import annotations

import hashlib
import itertools
import os
import stat
import struct
import uuid
from collections.abc import Callable, Iterable, Iterator, Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import IO, Any

import attrs
import orjson

from ._codec import EncodedEvent, decode_event, encode_event
from ._errors import EventStoreError, InvalidArgument, ReplicationMismatch
from ._files import file_kind, path_text
from ._log import GENESIS_HASH, chain_hash
from ._store import SessionStore
from ._time import to_micros
from ._values import ImportOutcome, utc
from .events import RecordedEvent, SessionEvent
from .services.replication import SessionCheck

__all__ = [
    "EVENTS_FORMAT",
    "EVENTS_FORMAT_VERSION",
    "BadExportFile",
    "ExportHeader",
    "EventsCheck",
    "EventsImport",
    "event_to_dict",
    "event_from_dict",
    "write_events",
    "read_events",
    "check_events",
    "check_events_file",
    "export_events",
    "import_events",
]

#: The ``format`` field of an events file's header.
EVENTS_FORMAT = "eventstore.events"
#: The version of the events file layout this code writes: 2 ends the file with a trailer line.
EVENTS_FORMAT_VERSION = 2
#: The oldest layout this code reads (version 1: no trailer).
_OLDEST_VERSION = 1

Progress = Callable[[int, int], None]

#: What an import reports of a file without a trailer.
NO_TRAILER = ("the file has no trailer line (it was written by an older eventstore): a file cut short at a "
              "line boundary cannot be told from a whole one")


class BadExportFile(InvalidArgument):
    """An events file does not parse or does not check out: names the line and what is wrong with it."""


@attrs.frozen
class ExportHeader:
    """The first line of an events file.

    Attributes:
        whole_log: the file holds every event of its store, from position 1.
        keys: the sessions whose whole histories the file holds, when it is not the whole log.
        version: the layout of the file.
    """

    whole_log: bool
    keys: tuple[str, ...] | None = None
    version: int = EVENTS_FORMAT_VERSION


@attrs.frozen
class EventsCheck:
    """What ``check_events`` found in a file that checks out.

    Attributes:
        header: the file's header.
        events: its event lines.
        unlinked: events whose hash could not be checked, because the event before them is not in the
            file (in a file of some sessions, the events after another session's).
        warnings: what could not be checked, in sentences for the import's report.
    """

    header: ExportHeader
    events: int
    unlinked: int
    warnings: tuple[str, ...]


@attrs.frozen
class EventsImport:
    """What ``import_events`` did.

    Attributes:
        mode: ``"replicate"`` (a whole log, replicated exactly) or ``"sessions"``
            (session histories, imported with their times as new events).
        events: events written to the store.
        already_present: events of the file the store already held (a repeated import).
        outcome: for ``"sessions"``, the import outcome (receipt and skipped keys).
        warnings: what could not be checked (see ``EventsCheck``).
    """

    mode: str
    events: int
    already_present: int
    outcome: ImportOutcome | None = None
    warnings: tuple[str, ...] = ()


def _utc_text(moment: datetime) -> str:
    return moment.astimezone(UTC).isoformat(timespec="microseconds")


def event_to_dict(recorded: RecordedEvent) -> dict[str, Any]:
    """The JSON-ready form of a recorded event (one line of an events file)."""
    encoded = encode_event(recorded.event)
    return {
        "position": recorded.position,
        "session_key": recorded.session_key,
        "version": recorded.version,
        "recorded_at": _utc_text(recorded.recorded_at),
        "event_id": str(recorded.event_id),
        "type": encoded.type_name,
        "schema_version": encoded.schema_version,
        "payload": orjson.loads(encoded.payload),
        "payload_digest": recorded.payload_digest,
        "hash": recorded.hash,
        "redacted": recorded.redacted,
    }


def _field(data: dict[str, Any], name: str, kind: type | tuple[type, ...]) -> Any:
    value = data.get(name)
    if isinstance(value, bool) and kind is not bool:
        raise ValueError(f"{name!r} must be {getattr(kind, '__name__', kind)}, not a bool")
    if not isinstance(value, kind):
        raise ValueError(f"{name!r} is missing or has the wrong type")
    return value


def event_from_dict(data: object) -> RecordedEvent:
    """Rebuild a recorded event from ``event_to_dict``'s form.

    Raises:
        ValueError: a missing or mistyped field.
        EventStoreError: the payload does not decode (an unknown type, say).
    """
    if not isinstance(data, dict):
        raise ValueError("an event line must be a JSON object")
    recorded_at = datetime.fromisoformat(_field(data, "recorded_at", str))
    if recorded_at.tzinfo is None:
        raise ValueError("'recorded_at' has no time zone")
    encoded = EncodedEvent(_field(data, "type", str), _field(data, "schema_version", int),
                           orjson.dumps(data.get("payload")))
    event: SessionEvent = decode_event(encoded)
    return RecordedEvent(
        position=_field(data, "position", int),
        session_key=_field(data, "session_key", str),
        version=_field(data, "version", int),
        recorded_at=utc(recorded_at),
        event=event,
        event_id=uuid.UUID(_field(data, "event_id", str)),
        hash=_field(data, "hash", str),
        payload_digest=_field(data, "payload_digest", str),
        redacted=_field(data, "redacted", bool),
    )


def _line(data: dict[str, Any]) -> bytes:
    """One JSON line; U+2028 and U+2029 escaped so that no line-splitting reader breaks inside a string."""
    return orjson.dumps(data).replace(b"\xe2\x80\xa8", b"\\u2028").replace(b"\xe2\x80\xa9", b"\\u2029") + b"\n"


def write_events(events: Iterable[RecordedEvent], out: IO[bytes], header: ExportHeader,
                 progress: Progress | None = None, total: int = 0) -> int:
    """Write the header, every event and the trailer to the binary stream ``out``; return how many events."""
    out.write(orjson.dumps({"format": EVENTS_FORMAT, "version": EVENTS_FORMAT_VERSION,
                            "whole_log": header.whole_log,
                            "keys": None if header.keys is None else list(header.keys)}) + b"\n")
    count, last_hash = 0, None
    for recorded in events:
        out.write(_line(event_to_dict(recorded)))
        count, last_hash = count + 1, recorded.hash
        if progress is not None and count % 500 == 0:
            progress(count, total)
    out.write(orjson.dumps({"end": True, "events": count, "last_hash": last_hash}) + b"\n")
    if progress is not None:
        progress(count, total)
    return count


def export_events(store: SessionStore, out: IO[bytes], keys: Sequence[str] | None = None,
                  progress: Progress | None = None, total: int = 0) -> int:
    """Export the whole log (``keys=None``) or the whole histories of ``keys`` to ``out``.

    Returns how many events were written. Only a whole-log export can be
    replicated exactly; a per-session export imports as new events keeping
    their times.

    Raises:
        InvalidArgument: a key has no event in the store (nothing is written: the header would promise its
            history).
    """
    if keys is None:
        return write_events(store.events(), out, ExportHeader(True), progress, total)
    chosen = tuple(dict.fromkeys(keys))  # a key named twice is exported once
    for key in chosen:  # before the header is written; each history is read again below, one at a time
        if not store.history(key):
            raise InvalidArgument(f"no session {key!r} in the store: it has no event to export")

    def histories() -> Iterator[RecordedEvent]:
        for key in chosen:
            yield from store.history(key)

    return write_events(histories(), out, ExportHeader(False, chosen), progress, total)


def read_header(line: bytes) -> ExportHeader:
    """Parse an events file's first line."""
    try:
        data = orjson.loads(line)
    except orjson.JSONDecodeError:
        data = None
    if not isinstance(data, dict) or data.get("format") != EVENTS_FORMAT:
        raise BadExportFile("line 1: not an eventstore events file (made by `eventstore export --format events`)")
    version = data.get("version")
    if isinstance(version, bool) or not isinstance(version, int) or version < _OLDEST_VERSION:
        raise BadExportFile(f"line 1: {version!r} is not an events file version")
    if version > EVENTS_FORMAT_VERSION:
        raise BadExportFile(f"line 1: events file version {version!r} is newer than this code reads "
                            f"({EVENTS_FORMAT_VERSION}); upgrade the eventstore package")
    whole_log, keys = data.get("whole_log"), data.get("keys", ())
    if not isinstance(whole_log, bool):
        raise BadExportFile("line 1: the header's 'whole_log' must be true or false")
    if whole_log and keys is not None:
        raise BadExportFile("line 1: a whole-log header has 'keys': null")
    if not whole_log and (not isinstance(keys, list) or not all(isinstance(k, str) for k in keys)):
        raise BadExportFile("line 1: the header's 'keys' must list the file's session keys")
    if keys is not None and len(set(keys)) != len(keys):
        twice = next(key for index, key in enumerate(keys) if key in keys[:index])
        raise BadExportFile(f"line 1: the header names session {twice!r} twice")
    return ExportHeader(whole_log, None if keys is None else tuple(keys), version)


def read_events(stream: IO[bytes]) -> tuple[ExportHeader, Iterator[RecordedEvent]]:
    """The header of an events file and an iterator over its events.

    The iterator checks the trailer: a version 2 file must end with one, counting
    the events and naming the last hash, and nothing may follow it.

    Raises (while iterating):
        BadExportFile: a line that does not parse, naming its number; a missing or wrong trailer.
    """
    header, numbered = _read_numbered(stream)
    return header, (recorded for _, recorded in numbered)


def _read_numbered(stream: IO[bytes]) -> tuple[ExportHeader, Iterator[tuple[int, RecordedEvent]]]:
    """``read_events``, with each event's line number."""
    lines = enumerate(stream, start=1)
    first = next(lines, None)
    if first is None:
        raise BadExportFile("the file is empty; expected an eventstore events file")
    header = read_header(first[1])

    def events() -> Iterator[tuple[int, RecordedEvent]]:
        count, last_hash, ended = 0, None, 0
        for number, raw in lines:
            if not raw.strip():
                continue
            if ended:
                raise BadExportFile(f"line {number}: a line after the trailer (line {ended})")
            try:
                data = orjson.loads(raw)
            except orjson.JSONDecodeError:
                raise BadExportFile(f"line {number} is not JSON") from None
            if isinstance(data, dict) and "end" in data:
                end, events, ending = data.get("end"), data.get("events"), data.get("last_hash")
                if end is not True or type(events) is not int or not isinstance(ending, (str, type(None))):
                    # 1 == True and 2.0 == 2 in Python, yet no export writes such a trailer: a byte was changed
                    raise BadExportFile(f"line {number}: not a trailer line: it must be {{\"end\": true, "
                                        "\"events\": COUNT, \"last_hash\": HASH}")
                if (events, ending) != (count, last_hash):
                    raise BadExportFile(f"line {number}: the trailer counts {events!r} events ending with hash "
                                        f"{ending!r}; the file has {count} ending with {last_hash!r} (lines are "
                                        "missing or were added)")
                ended = number
                continue
            try:
                recorded = event_from_dict(data)
            except (ValueError, EventStoreError) as exc:
                raise BadExportFile(f"line {number}: {exc}") from None
            count, last_hash = count + 1, recorded.hash
            yield number, recorded
        if not ended and header.version >= 2:
            raise BadExportFile(f"the file ends without its trailer line after {count} events: it was cut short")

    return header, events()


def check_events(stream: IO[bytes]) -> EventsCheck:
    """Check every line of an events file, writing nothing; return what was found.

    In a whole-log file the hash chain runs unbroken from position 1; in a file of
    some sessions every event belongs to a key of the header, no position repeats
    and each hash is checked against the event before it when that event is in
    the file. In both, each session's events pass ``SessionCheck``: versions from
    1 without a gap, payloads that match their digests, redacted events named by
    a later redaction, and only events a command could have recorded.

    Raises:
        BadExportFile: the first line that does not check out, naming it.
    """
    return _check(stream)[0]


def _check(stream: IO[bytes]) -> tuple[EventsCheck, list[RecordedEvent]]:
    """``check_events``, and the events of a file of some sessions (which its check holds anyway)."""
    header, events = _read_numbered(stream)
    sessions: dict[str, SessionCheck] = {}
    lines: dict[int, tuple[int, RecordedEvent]] = {}  # by position (some sessions' files), with the line number
    previous, count = GENESIS_HASH, 0
    for number, recorded in events:
        count += 1
        where = f"line {number}: session {recorded.session_key!r}"
        if header.keys is not None and recorded.session_key not in header.keys:
            raise BadExportFile(f"{where} is not one of the header's keys")
        if header.whole_log:
            if recorded.position != count:
                raise BadExportFile(f"line {number}: position {recorded.position} where {count} was due")
            if _link(previous, recorded) != recorded.hash:
                raise BadExportFile(f"{where}: the hash does not follow from the event and the one before it")
            previous = bytes.fromhex(recorded.hash)
        elif recorded.position in lines:
            raise BadExportFile(f"line {number}: position {recorded.position} repeats line "
                                f"{lines[recorded.position][0]}")
        else:
            lines[recorded.position] = number, recorded
        check = sessions.setdefault(recorded.session_key, SessionCheck(recorded.session_key))
        problem = check.check(recorded)
        if problem is not None:
            raise BadExportFile(f"{where}: {problem}")
    for key, check in sessions.items():
        problem = check.finish()
        if problem is not None:
            raise BadExportFile(f"session {key!r}: {problem}")
    # The header promises each key's whole history: a key with none here was cut out (or never exported).
    missing = next((key for key in header.keys or () if key not in sessions), None)
    if missing is not None:
        raise BadExportFile(f"line 1: the header names session {missing!r}, but the file holds no event of it")
    unlinked = _check_links(lines)
    warnings = [NO_TRAILER] if header.version < 2 else []
    if unlinked:
        warnings.append(f"the hashes of {unlinked} of the {len(lines)} events could not be checked: the event "
                        "before each belongs to a session not in the file")
    return EventsCheck(header, count, unlinked, tuple(warnings)), [recorded for _, recorded in lines.values()]


def _link(previous: bytes, recorded: RecordedEvent) -> str:
    """The hash ``recorded`` has when it follows an event of hash ``previous`` ("" for none: a digest that is
    not hexadecimal, or a number the chain's fields cannot hold)."""
    try:
        return chain_hash(previous, recorded.position, recorded.session_key, recorded.version,
                          to_micros(recorded.recorded_at), recorded.event_id.bytes, encode_event(recorded.event),
                          bytes.fromhex(recorded.payload_digest)).hex()
    except (ValueError, struct.error):
        return ""


def _check_links(lines: dict[int, tuple[int, RecordedEvent]]) -> int:
    """Check the hash of every event whose predecessor is in the file; return how many could not be checked."""
    unlinked = 0
    for position, (number, recorded) in lines.items():
        before = lines.get(position - 1)
        if before is None and position != 1:
            unlinked += 1
        elif before is not None and not _is_hash(before[1].hash):
            raise BadExportFile(f"line {before[0]}: session {before[1].session_key!r}: the hash is not 64 "
                                "hexadecimal digits")
        elif _link(GENESIS_HASH if before is None else bytes.fromhex(before[1].hash), recorded) != recorded.hash:
            raise BadExportFile(f"line {number}: session {recorded.session_key!r}: the hash does not follow "
                                "from the event and the one before it")
    return unlinked


def _is_hash(text: str) -> bool:
    return len(text) == 64 and set(text) <= set("0123456789abcdef")


def _digest(path: Path) -> tuple[int, str]:
    sha = hashlib.sha256()
    size = 0
    with open(path, "rb") as stream:
        while chunk := stream.read(1 << 20):
            sha.update(chunk)
            size += len(chunk)
    return size, sha.hexdigest()


def check_events_file(path: str | Path) -> EventsCheck:
    """``check_events`` of the file at ``path``, writing nothing (what ``import_events`` checks first).

    Raises:
        BadExportFile: the file does not parse or check out, or is not a regular file (a pipe, a FIFO).
    """
    return _checked_file(Path(path))[0]


def _checked_file(path: Path) -> tuple[EventsCheck, list[RecordedEvent]]:
    mode = os.stat(path).st_mode
    if not stat.S_ISREG(mode):  # a pipe read twice is empty the second time; a FIFO with no writer waits for ever
        raise BadExportFile(f"{path} is {file_kind(mode)}, not a regular file: an import reads it twice (to check "
                            "it, then to import it), so save it to a file first")
    with open(path, "rb") as stream:
        return _check(stream)


def import_events(store: SessionStore, path: str | Path, progress: Progress | None = None) -> EventsImport:
    """Check an events file (``check_events``), then read it into ``store``.

    A whole-log file is replicated exactly (positions, versions, times, ids,
    hashes): into an empty store, or into a store that holds a prefix of the
    same log (the events it already has are checked, hash by hash, and
    skipped, so importing a file twice adds nothing). A file of session
    histories is imported with ``import_sessions``: each key's events with
    their original times, redacted events still redacted, a receipt for the
    file, keys already in the store skipped and listed. A file that does not
    check out writes nothing.

    Raises:
        BadExportFile: the file does not parse or check out, or is not a regular file (a pipe, a FIFO).
        ReplicationMismatch: the store holds other events than the file at the same positions.
        SourceChanged: a histories file changed since it was imported.
    """
    path = Path(path)
    checked, histories = _checked_file(path)
    total = checked.events
    if not checked.header.whole_log:
        sessions: dict[str, list[RecordedEvent]] = {}
        for recorded in histories:
            sessions.setdefault(recorded.session_key, []).append(recorded)
        size, sha256 = _digest(path)
        # import_sessions counts sessions; this reports events, as the whole-log path does.
        events_before = list(itertools.accumulate((len(h) for h in sessions.values()), initial=0))

        def report_sessions(done: int, _sessions: int) -> None:
            if progress is not None:
                progress(events_before[done], total)

        outcome = store.import_sessions(sessions, source=f"events:{path_text(path.resolve())}", size=size,
                                        sha256=sha256, progress=report_sessions)
        if progress is not None and outcome.already_imported:
            progress(total, total)
        return EventsImport("sessions", 0 if outcome.already_imported else outcome.receipt.events,
                            total if outcome.already_imported else 0, outcome, checked.warnings)
    with open(path, "rb") as stream:
        _, events = read_events(stream)
        present = _skip_present(store, events)
        done = [present[0]]

        def report(count: int, _total: int) -> None:
            if progress is not None:
                progress(done[0] + count, total)

        written = store.replicate(present[1], progress=report, total=total)
        return EventsImport("replicate", written, present[0], warnings=checked.warnings)


def _skip_present(store: SessionStore, events: Iterator[RecordedEvent]) -> tuple[int, Iterator[RecordedEvent]]:
    """Check the events the store already holds against the file's; return their count and the rest."""
    ours = store.events()
    skipped = 0
    for recorded in events:
        mine = next(ours, None)
        if mine is None:
            def rest(first: RecordedEvent = recorded) -> Iterator[RecordedEvent]:
                yield first
                yield from events
            return skipped, rest()
        if (mine.position, mine.hash) != (recorded.position, recorded.hash):
            raise ReplicationMismatch(
                f"the store already holds other events (position {mine.position} differs from the file's "
                f"{recorded.position}); import a whole-log file into an empty store")
        skipped += 1
    return skipped, iter(())
