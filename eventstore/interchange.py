"""The ``events`` interchange format: a store's event log as JSON Lines, and reading it back.

What lives here and why: ``eventstore export --format events`` and ``eventstore
import events`` need one documented, stable text form of recorded events that
keeps everything replication needs (position, version, time, id, payload
digest, hash, redaction flag). The event payload is the codec's own JSON
(``eventstore._codec``), so the format follows the event schemas and their
upcasters. No click here: the command line is a thin shell over these functions.

The file (UTF-8, one JSON object a line, ``\\n`` line ends):

* line 1, the header: ``{"format": "eventstore.events", "version": 1,
  "whole_log": true, "keys": null}``. ``whole_log`` says the file holds every
  event of its store from position 1 (an exact replica can be built from it);
  otherwise ``keys`` lists the sessions whose histories it holds.
* every further line, one recorded event: ``{"position", "session_key",
  "version", "recorded_at" (ISO 8601, UTC, microseconds), "event_id" (UUID),
  "type", "schema_version", "payload" (the codec's JSON), "payload_digest",
  "hash", "redacted"}``. U+2028 and U+2029 are written as ``\\u2028`` and
  ``\\u2029`` escapes, so even a reader that splits lines on them works.
"""

from __future__ import annotations

import hashlib
import uuid
from datetime import datetime, timezone
from pathlib import Path
from typing import IO, Any, Callable, Iterable, Iterator, Sequence

import attrs
import orjson

from ._codec import EncodedEvent, decode_event, encode_event
from ._errors import EventStoreError, InvalidArgument, ReplicationMismatch
from ._store import SessionStore
from ._values import ImportOutcome, utc
from .events import RecordedEvent, SessionEvent

__all__ = [
    "EVENTS_FORMAT",
    "EVENTS_FORMAT_VERSION",
    "BadExportFile",
    "ExportHeader",
    "EventsImport",
    "event_to_dict",
    "event_from_dict",
    "write_events",
    "read_events",
    "export_events",
    "import_events",
]

#: The ``format`` field of an events file's header.
EVENTS_FORMAT = "eventstore.events"
#: The version of the events file layout this code writes and reads.
EVENTS_FORMAT_VERSION = 1

Progress = Callable[[int, int], None]


class BadExportFile(InvalidArgument):
    """An events file does not parse: names the line and what is wrong with it."""


@attrs.frozen
class ExportHeader:
    """The first line of an events file.

    Attributes:
        whole_log: the file holds every event of its store, from position 1.
        keys: the sessions whose whole histories the file holds, when it is not the whole log.
    """

    whole_log: bool
    keys: tuple[str, ...] | None = None


@attrs.frozen
class EventsImport:
    """What ``import_events`` did.

    Attributes:
        mode: ``"replicate"`` (a whole log, replicated exactly) or ``"sessions"``
            (session histories, imported with their times as new events).
        events: events written to the store.
        already_present: events of the file the store already held (a repeated import).
        outcome: for ``"sessions"``, the import outcome (receipt and skipped keys).
    """

    mode: str
    events: int
    already_present: int
    outcome: ImportOutcome | None = None


def _utc_text(moment: datetime) -> str:
    return moment.astimezone(timezone.utc).isoformat(timespec="microseconds")


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
    """Write the header and then every event to the binary stream ``out``; return how many events."""
    out.write(orjson.dumps({"format": EVENTS_FORMAT, "version": EVENTS_FORMAT_VERSION,
                            "whole_log": header.whole_log,
                            "keys": None if header.keys is None else list(header.keys)}) + b"\n")
    count = 0
    for recorded in events:
        out.write(_line(event_to_dict(recorded)))
        count += 1
        if progress is not None and count % 500 == 0:
            progress(count, total)
    if progress is not None:
        progress(count, total)
    return count


def export_events(store: SessionStore, out: IO[bytes], keys: Sequence[str] | None = None,
                  progress: Progress | None = None, total: int = 0) -> int:
    """Export the whole log (``keys=None``) or the whole histories of ``keys`` to ``out``.

    Returns how many events were written. Only a whole-log export can be
    replicated exactly; a per-session export imports as new events keeping
    their times.
    """
    if keys is None:
        return write_events(store.events(), out, ExportHeader(True), progress, total)

    def histories() -> Iterator[RecordedEvent]:
        for key in keys:
            yield from store.history(key)

    return write_events(histories(), out, ExportHeader(False, tuple(keys)), progress, total)


def _split_lines(stream: IO[bytes]) -> Iterator[tuple[int, bytes]]:
    number = 0
    for raw in stream:
        number += 1
        yield number, raw


def read_header(line: bytes) -> ExportHeader:
    """Parse an events file's first line."""
    try:
        data = orjson.loads(line)
    except orjson.JSONDecodeError:
        data = None
    if not isinstance(data, dict) or data.get("format") != EVENTS_FORMAT:
        raise BadExportFile("line 1: not an eventstore events file (made by `eventstore export --format events`)")
    version = data.get("version")
    if not isinstance(version, int) or version > EVENTS_FORMAT_VERSION:
        raise BadExportFile(f"line 1: events file version {version!r} is newer than this code reads "
                            f"({EVENTS_FORMAT_VERSION}); upgrade the eventstore package")
    keys = data.get("keys")
    if keys is not None and (not isinstance(keys, list) or not all(isinstance(k, str) for k in keys)):
        raise BadExportFile("line 1: 'keys' must be a list of session keys")
    return ExportHeader(bool(data.get("whole_log")), None if keys is None else tuple(keys))


def read_events(stream: IO[bytes]) -> tuple[ExportHeader, Iterator[RecordedEvent]]:
    """The header of an events file and an iterator over its events.

    Raises (while iterating):
        BadExportFile: a line that does not parse, naming its number.
    """
    lines = _split_lines(stream)
    first = next(lines, None)
    if first is None:
        raise BadExportFile("the file is empty; expected an eventstore events file")
    header = read_header(first[1])

    def events() -> Iterator[RecordedEvent]:
        for number, raw in lines:
            if not raw.strip():
                continue
            try:
                yield event_from_dict(orjson.loads(raw))
            except (orjson.JSONDecodeError, ValueError, EventStoreError) as exc:
                raise BadExportFile(f"line {number}: {exc}") from None

    return header, events()


def _count_lines(path: Path) -> int:
    count = 0
    with open(path, "rb") as stream:
        while chunk := stream.read(1 << 20):
            count += chunk.count(b"\n")
    return count


def _digest(path: Path) -> tuple[int, str]:
    sha = hashlib.sha256()
    size = 0
    with open(path, "rb") as stream:
        while chunk := stream.read(1 << 20):
            sha.update(chunk)
            size += len(chunk)
    return size, sha.hexdigest()


def import_events(store: SessionStore, path: str | Path, progress: Progress | None = None) -> EventsImport:
    """Read an events file into ``store``.

    A whole-log file is replicated exactly (positions, versions, times, ids,
    hashes): into an empty store, or into a store that holds a prefix of the
    same log (the events it already has are checked, hash by hash, and
    skipped, so importing a file twice adds nothing). A file of session
    histories is imported with ``import_sessions``: each key's events with
    their original times, a receipt for the file, keys already in the store
    skipped and listed.

    Raises:
        BadExportFile: the file does not parse.
        ReplicationMismatch: the store holds other events than the file at the same positions.
        SourceChanged: a histories file changed since it was imported.
    """
    path = Path(path)
    total = max(_count_lines(path) - 1, 0)
    with open(path, "rb") as stream:
        header, events = read_events(stream)
        if not header.whole_log:
            sessions: dict[str, list[tuple[datetime, SessionEvent]]] = {}
            count = 0
            for recorded in events:
                sessions.setdefault(recorded.session_key, []).append((recorded.recorded_at, recorded.event))
                count += 1
                if progress is not None and count % 500 == 0:
                    progress(count, total)
            size, sha256 = _digest(path)
            outcome = store.import_sessions(sessions, source=f"events:{path.resolve()}", size=size, sha256=sha256)
            if progress is not None:
                progress(total, total)
            return EventsImport("sessions", 0 if outcome.already_imported else outcome.receipt.events,
                                count if outcome.already_imported else 0, outcome)
        present = _skip_present(store, events)
        done = [present[0]]

        def report(count: int, _total: int) -> None:
            if progress is not None:
                progress(done[0] + count, total)

        written = store.replicate(present[1], progress=report, total=total)
        return EventsImport("replicate", written, present[0])


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
