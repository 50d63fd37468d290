"""What every command shares: where the store is, opening it safely, reading times, and turning errors into one line.

What lives here and why: the command line is a thin shell over
``SessionStore``; the few decisions it makes on its own (the default store
location, refusing to create a store on a read, how a typed time is read, how
a library error reads) are made here, once.
"""

from __future__ import annotations

import hashlib
import itertools
import os
import re
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime, timedelta, timezone
from pathlib import Path

import attrs
import click

from .. import (
    EventStoreError,
    IncompatibleStore,
    InvalidVersion,
    SessionStore,
    SourceChanged,
    StoreBusy,
    StoreCorrupted,
    StoreReadOnly,
)
from .._audit import Progress
from .._shared import SHARED_LOG_SCHEMES
from .._time import Clock
from ..events import RecordedEvent, SessionDeleted, SessionRestored
from ..storage.lmdb_files import MARKER
from ._output import progress_bar, terminal_safe

__all__ = ["CACHE_ENV", "Env", "pass_env", "default_store_path", "parse_time", "versions_of", "user_error",
           "session_history"]

#: The environment variable naming the store (``--store`` wins over it).
STORE_ENV = "EVENTSTORE_PATH"
#: The environment variable naming a shared store's replica directory (``--cache`` wins over it).
CACHE_ENV = "EVENTSTORE_CACHE"


#: A search of a store whose search index is further behind the log than this many events catches it up first,
#: writable and with a bar, so that the work is done once: a read-only search folds what the index lacks in
#: memory, at every search.
INDEX_CATCH_UP_FROM = 10_000


def index_for_search(store: SessionStore) -> None:
    """Bring the search index up to the log (after an import, say), with a bar on a terminal: the searches that
    follow find it current instead of folding the new events themselves."""
    if store.search_index_lag():
        with progress_bar("Indexing for search") as progress:
            store.catch_up(progress)


def default_store_path() -> Path:
    """The per-user default store: ``$XDG_DATA_HOME/eventstore`` (``~/.local/share/eventstore``),
    or ``~/Library/Application Support/eventstore`` on macOS."""
    if sys.platform == "darwin":
        return Path.home() / "Library" / "Application Support" / "eventstore"
    base = os.environ.get("XDG_DATA_HOME") or str(Path.home() / ".local" / "share")
    return Path(base) / "eventstore"


@attrs.frozen
class Env:
    """The command line's context: the store path, and whether the user chose it."""

    store_path: Path
    chosen: bool
    #: A ``postgresql://`` store's URL, and its replica directory.
    url: str | None = None
    cache: Path | None = None

    @classmethod
    def chosen_by(cls, store: str | None, cache: Path | None) -> Env:
        """The context of ``--store`` (a path or a URL, or the default) and ``--cache``."""
        if store is not None and store.startswith(SHARED_LOG_SCHEMES):
            digest = hashlib.sha256(store.encode()).hexdigest()[:16]
            replica = cache or default_store_path().parent / f"eventstore-replica-{digest}"
            return cls(replica, True, store, replica)
        return cls(Path(store) if store else default_store_path(), store is not None)

    def open(self, *, write: bool = False, create: bool = False, clock: Clock | None = None,
             rebuild_progress: Progress | None = None) -> SessionStore:
        """Open the store: read-only unless ``write``; refuse a path that holds no store unless ``create``.

        A read, or a write that needs existing sessions, never creates a store. A ``postgresql://`` store
        opens writable (its replica is a cache the store writes as it reads). ``rebuild_progress`` reports
        the rebuild of read models a writable open makes when a store of an earlier version needs it.
        """
        if self.url is not None:
            return SessionStore(self.url, cache=self.cache, clock=clock)
        path = self.store_path
        if path.exists() and not path.is_dir():
            raise click.ClickException(f"{path} is a file, not a store directory")
        # A directory with the store's marker held a store: the open below says what happened to its data file.
        if not create and not self.holds_store():
            hint = "" if self.chosen else f" (the default store; choose another with --store or {STORE_ENV})"
            raise click.ClickException(
                f"no store at {path}{hint}; create one with `{self.command('demo')}` or "
                f"`{self.command('import')}`")
        if write or create:
            return SessionStore(path, clock=clock, rebuild_progress=rebuild_progress)
        try:
            return SessionStore(path, readonly=True, clock=clock)
        except (StoreReadOnly, IncompatibleStore):
            # Opening read-only fails when the read models are out of date or a key space is missing (a store
            # of an earlier version): a writable open rebuilds or adds them from the log. Derived data only; no
            # store is created. A store of a newer version is refused by the writable open too.
            if not os.access(path, os.W_OK):
                raise
            return SessionStore(path, clock=clock, rebuild_progress=rebuild_progress)

    def holds_store(self) -> bool:
        """Whether the store exists (a ``postgresql://`` store's log is on its server: always), so that an open
        with ``create`` would not make one."""
        path = self.store_path
        return self.url is not None or (path / "data.mdb").is_file() or (path / MARKER).exists()

    def writable(self) -> bool:
        """Whether the store may be opened writable (to rebuild what a read-only open cannot)."""
        return os.access(self.store_path, os.W_OK)

    def store_option(self) -> str:
        """The ``--store`` option to repeat in a suggested command, if the user chose a store."""
        if self.url is not None:
            return f" --store {_quote(self.url)} --cache {_quote(str(self.store_path))}"
        return f" --store {_quote(str(self.store_path))}" if self.chosen else ""

    def command(self, *words: str) -> str:
        """``eventstore WORDS...`` for a shell, run against this store: every command the command line suggests
        is built here, so that it names the store the user chose (``--store``, quoted), wherever it is pasted."""
        return " ".join(("eventstore" + self.store_option(), *words))

    def key_command(self, command: str, key: str, *options: str) -> str:
        """``eventstore COMMAND KEY OPTIONS...`` (``command``): the key quoted, after ``--`` when it looks like an
        option."""
        if key.startswith("-"):
            return self.command(command, *options, "--", _quote(key))
        return self.command(command, _quote(key), *options)

    def restore_command(self, key: str, version: int) -> str:
        """The command that restores ``key`` to ``version``, for a shell."""
        return self.key_command("restore", key, "--version", str(version))


@contextmanager
def versions_of(env: Env, key: str) -> Iterator[None]:
    """Tell a version or time that names no state of ``key`` with the command that lists its versions."""
    try:
        yield
    except InvalidVersion as exc:
        raise click.ClickException(f"{exc}; see `{env.key_command('history', key)}` for its versions") from None


def _quote(text: str) -> str:
    if terminal_safe(text) != text:
        # The terminal would show escapes in place of some characters (letters among them: U+3164 is a blank):
        # bash's $'...', whose escapes give them back.
        return "$'" + "".join(_escaped_for_shell(char) for char in text) + "'"
    if re.fullmatch(r"[\w@%+=:,./-]+", text) and not text.startswith("="):  # zsh expands =word to a command's path
        return text
    return "'" + text.replace("'", "'\\''") + "'"


def _escaped_for_shell(char: str) -> str:
    if char in "\\'":
        return "\\" + char
    if terminal_safe(char) == char:
        return char
    code = ord(char)  # \xHH is a byte there: a character from U+0080 on is \u or \U
    return f"\\x{code:02x}" if code < 0x80 else f"\\u{code:04x}" if code < 0x10000 else f"\\U{code:08x}"


pass_env = click.make_pass_decorator(Env)

#: What a typed time may be: a year, a month, a day, then an hour, a minute, a second and a fraction of it, each
#: optional from the right (ISO 8601's extended form), with a zone only after a time of day.
_TYPED_TIME = re.compile(
    r"(?P<year>\d{4})(?:-(?P<month>\d{2})(?:-(?P<day>\d{2})"
    r"(?:[T ](?P<hour>\d{2})(?::(?P<minute>\d{2})(?::(?P<second>\d{2})(?:[.,](?P<fraction>\d{1,6}))?)?)?"
    r"(?P<zone>Z|[+-]\d{2}(?::?\d{2})?)?)?)?)?")


#: The earliest and latest times a typed time is read as: a time zone's offset (under a day) and the end of a day
#: away from the ends of datetime's range, which no conversion then crosses.
_EARLIEST = datetime.min + timedelta(days=3)
_LATEST = datetime.max - timedelta(days=3)


def parse_time(text: str, option: str = "--as-of") -> datetime:
    """Read a time typed by the user: ``now``, or ISO 8601 from a year down to a fraction of a second, naive
    meaning local time.

    Accepted: ``2026``, ``2026-03``, ``2026-03-01``, then ``T`` (or a space) and ``14``, ``14:05``,
    ``14:05:09`` or ``14:05:09.5`` (up to six digits), then optionally a zone: ``Z``, ``+01:00`` or ``+0100``.
    A time names the end of its last given unit: ``2026`` is the end of that year, ``2026-03`` of that month,
    ``2026-03-01`` of that day (in local time, however many hours the day has), ``2026-03-01T14:05`` of that
    minute and ``2026-03-01T14:05:09`` of that second, so that a time copied from ``history`` (shown to the
    second) includes its event; a fraction is exact. A local time the clocks show twice (the hour they go back)
    means its later showing, so that it includes both: ``history`` prints the UTC offset of a time in that
    hour, which picks one. A local time of day the clocks skipped (the hour they go forward) is refused.
    A time less than three days from the start of year 1 or the end of year 9999 is moved to three days from it
    (still before every event, or after all of them), so that it converts to any time zone.
    """
    stripped = text.strip()
    if stripped.lower() == "now":
        return datetime.now().astimezone()
    found = _TYPED_TIME.fullmatch(stripped)
    try:
        if found is None:
            raise ValueError(text)
        start = datetime(int(found["year"]), int(found["month"] or 1), int(found["day"] or 1),
                         int(found["hour"] or 0), int(found["minute"] or 0), int(found["second"] or 0),
                         int((found["fraction"] or "").ljust(6, "0")))
        zone = _typed_zone(found["zone"])
    except ValueError:
        raise click.ClickException(
            f"{option}: {text!r} is not a time; use ISO 8601, e.g. 2026-03-01T14:05:09 (local time), "
            "2026-03-01T13:05:09Z, 2026-03-01 or 2026-03") from None
    if zone is None and found["hour"] is not None and _skipped(_in_range(start)):
        raise click.ClickException(f"{option}: {text!r} is a local time the clocks skipped when they went "
                                   "forward; give one before or after the change")
    following = _next_unit(start, found)
    wall = _in_range(start if following is None else following)
    if zone is not None:
        moment = wall.replace(tzinfo=zone)
    else:
        # The two readings of a local time differ only near a change of the clocks: in the hour they go back,
        # the later is its second showing; in the hour they skip, the later is past the gap (the moment the
        # clocks jumped, for the start of a day or an hour). Wall-clock arithmetic above, then the zone: a day
        # is 23 or 25 hours long on those dates.
        moment = max(wall.replace(fold=0).astimezone(), wall.replace(fold=1).astimezone())
    return moment if following is None else moment - timedelta(microseconds=1)


def _in_range(wall: datetime) -> datetime:
    """``wall`` moved to no nearer than three days to the ends of datetime's range.

    Every event lies between 1970 and now, so a time within days of year 1 or 9999 means the same as that end of
    time; moved there, it converts to any time zone (and to UTC) without overflow.
    """
    return min(max(wall, _EARLIEST), _LATEST)


def _skipped(wall: datetime) -> bool:
    """Whether the clocks never showed ``wall`` (naive, local): read either way, it comes back another time."""
    return all(wall.replace(fold=fold).astimezone().replace(tzinfo=None) != wall for fold in (0, 1))


def _typed_zone(text: str | None) -> timezone | None:
    """The zone of a typed time (``Z``, ``+01:00``, ``-0530``, ``+01``), ``None`` without one: local time."""
    if text is None:
        return None
    if text == "Z":
        return UTC
    digits = text[1:].replace(":", "")
    offset = timedelta(hours=int(digits[:2]), minutes=int(digits[2:] or 0))
    return timezone(-offset if text[0] == "-" else offset)  # ValueError past a day


def _next_unit(start: datetime, found: re.Match[str]) -> datetime | None:
    """The start of the unit after the last one a typed time gives (naive, wall-clock), ``None`` when it gives a
    fraction of a second (exact); ``datetime.max`` past the end of year 9999."""
    if found["fraction"] is not None:
        return None
    try:
        if found["month"] is None:
            return start.replace(year=start.year + 1)
        if found["day"] is None:
            return start.replace(year=start.year + start.month // 12, month=start.month % 12 + 1)
        return start + (timedelta(days=1) if found["hour"] is None else timedelta(hours=1) if found["minute"] is None
                        else timedelta(minutes=1) if found["second"] is None else timedelta(seconds=1))
    except (ValueError, OverflowError):
        return datetime.max


def user_error(exc: BaseException, env: Env | None = None) -> click.ClickException:
    """The one-line error a library failure shows the user (``env``: the store it was given, if known)."""
    store_path = None if env is None else env.store_path
    where = f" at {store_path}" if store_path is not None else ""
    if isinstance(exc, StoreBusy):
        return click.ClickException(f"{exc}. Close the other programs using the store{where} and try again")
    if isinstance(exc, StoreCorrupted):
        verify = "eventstore verify" if env is None else env.command("verify")
        return click.ClickException(f"the store{where} is damaged: {exc}. Run `{verify}`: it lists the "
                                    "damage and names the command that repairs it (rebuild or salvage)")
    if isinstance(exc, IncompatibleStore):
        return click.ClickException(f"the store{where} does not fit this version of eventstore: {exc}")
    if isinstance(exc, StoreReadOnly):
        if "out of date" in str(exc):
            return click.ClickException(f"{exc} (its directory is not writable, so they cannot be rebuilt here)")
        if store_path is not None and not os.access(store_path, os.W_OK):
            # The user asked for no read-only open: the store was opened so because its directory is not writable.
            return click.ClickException(f"the store{where} cannot be changed: its directory is not writable, so the "
                                        "store could only be read")
        return click.ClickException(str(exc))
    if isinstance(exc, SourceChanged):
        return click.ClickException(str(exc))
    if isinstance(exc, EventStoreError):
        return click.ClickException(str(exc))
    if isinstance(exc, OSError):
        if exc.strerror and exc.filename:
            return click.ClickException(f"{exc.strerror}: {exc.filename}")
        return click.ClickException(exc.strerror or str(exc))
    return click.ClickException(str(exc))


def session_history(env: Env, store: SessionStore, key: str) -> Iterator[RecordedEvent]:
    """The key's history, streamed (its first page read here); a one-line error if the key never had an event."""
    history = store.iter_history(key)
    first = next(history, None)
    if first is None:
        raise _no_session(env, store, key)
    return itertools.chain([first], history)


def _no_session(env: Env, store: SessionStore, key: str) -> click.ClickException:
    return click.ClickException(f"no session {key!r} in the store at {store.path}; "
                                f"see `{env.command('sessions')}` for the keys")


def require_live(env: Env, store: SessionStore, key: str) -> None:
    """A one-line error unless ``key`` is a live session (naming a deletion, if that is why)."""
    if not store.session_exists(key):
        raise not_live(env, store, key)


#: How many of a deleted key's last events hold the one that deleted it (or restored it to before it began): it is
#: the last, or a redaction follows it (one: a redaction again finds nothing to record).
_ENDING_WINDOW = 2


def not_live(env: Env, store: SessionStore, key: str) -> click.ClickException:
    """The one-line error for a ``key`` that is not a live session: none, or the version its deletion ended it at,
    read among its last events rather than through its whole history."""
    last = store.session_version(key)
    if not last:
        return _no_session(env, store, key)
    ended = max((recorded.version for recorded in store.iter_history(key, max(1, last - _ENDING_WINDOW + 1))
                 if _ends_the_session(recorded)), default=last)
    return click.ClickException(f"session {key!r} was deleted at version {ended}; "
                                f"`{env.restore_command(key, ended - 1)}` brings it back")


def _ends_the_session(recorded: RecordedEvent) -> bool:
    event = recorded.event
    return isinstance(event, SessionDeleted) or (isinstance(event, SessionRestored) and not event.exists)
