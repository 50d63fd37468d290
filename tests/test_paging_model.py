"""Pages of sessions, through ``list_sessions_page`` and ``eventstore sessions``, against a plain model of the
activity order: every page is exactly the model's next ``limit`` sessions below the walk's position, whatever changed
between pages (appends, renames, clears, deletions, restores, new sessions, equal times, a clock set back); a cursor
of another store is a position there too; a text that is no cursor is refused, on the command line in one line."""

from __future__ import annotations

import json
import shutil
import tempfile
from datetime import UTC, datetime, timedelta
from pathlib import Path

import attrs
from click.testing import CliRunner, Result
from hypothesis import strategies as st
from hypothesis.stateful import invariant, precondition, rule

from eventstore import ChatMessage, InvalidArgument, SessionStore
from eventstore.cli import cli

from _session_lives import DeletionsAndRestores
from conftest import FakeClock

_SCRATCH = "/dev/shm" if Path("/dev/shm").is_dir() else None
KEYS = ("u1:a", "u1:b", "u1:c", "u2:a", "u2:b", "u3", "x")
PREFIXES = ("", "u1:", "u2", "nobody")
START = datetime(2026, 1, 1, tzinfo=UTC)
#: Times of the other store's sessions: half a second off this store's whole seconds, so that no tie needs the two
#: stores' stream ids to agree.
FOREIGN_TIMES = tuple(START + timedelta(seconds=seconds) for seconds in (-2.5, 2.5, 7.5))


@attrs.define
class Live:
    """A live session as the model knows it; ``stream`` is its stream's rank in creation order."""

    stream: int
    created_at: datetime
    last_activity: datetime
    name: str | None = None
    count: int = 0

    def position(self) -> tuple[datetime, int]:
        return self.last_activity, self.stream


class PagingModelMachine(DeletionsAndRestores[Live]):
    """One walk at a time, by the library or by the command (each page a command given with the printed cursor)."""

    KEYS = KEYS

    def __init__(self) -> None:
        super().__init__()
        self.clock = FakeClock(START)
        # In memory where it can: the command opens the store with its default durability, which this one must
        # share, and a durable commit on a disk waits for a flush.
        self.directory = Path(tempfile.mkdtemp(prefix="eventstore-page-model-", dir=_SCRATCH))
        self.store = SessionStore(self.directory / "store", clock=self.clock)
        self.streams: dict[str, int] = {}  # a key's stream, created by its first event, kept across deletion
        self.latest: dict[str, datetime] = {}
        self.live: dict[str, Live] = {}
        self.buried = {}
        self.versions = dict.fromkeys(KEYS, 0)
        self.names = 0
        # The walk under way (None: none): its prefix, its cursor, the position that cursor names, and whether the
        # command line walks it.
        self.walk: tuple[str, str, tuple[datetime, int], bool] | None = None
        self.foreign = self._foreign_cursors()

    def _foreign_cursors(self) -> list[tuple[str, tuple[datetime, int]]]:
        """Cursors of another store's pages, with the positions they name (their ranks: that store's stream ids)."""
        clock = FakeClock()
        with SessionStore(self.directory / "other", clock=clock, durable=False) as other:
            for number, moment in enumerate(FOREIGN_TIMES):
                clock.now = moment
                other.append(f"other{number}", ChatMessage.user("elsewhere"))
            return [(str(other.list_sessions_page(limit=limit).next_cursor), (FOREIGN_TIMES[-limit], 4 - limit))
                    for limit in (1, 2)]

    def teardown(self) -> None:
        self.store.close()
        shutil.rmtree(self.directory, ignore_errors=True)

    # -- changes ---------------------------------------------------------------------------------------------

    def _event(self, key: str) -> datetime:
        """Count an event of ``key``; its time (the clock, never before the key's latest event)."""
        self.streams.setdefault(key, len(self.streams) + 1)
        at = max(self.clock.now, self.latest.get(key, self.clock.now))
        self.latest[key] = at
        self.versions[key] += 1
        return at

    def _touched(self, key: str) -> Live:
        at = self._event(key)
        life = self.live.setdefault(key, Live(self.streams[key], at, at))
        life.last_activity = at
        return life

    @rule(seconds=st.sampled_from((0, 0, 1, 5, -1, -10)))
    def move_clock(self, seconds: int) -> None:
        self.clock.advance(seconds=seconds)

    @rule(key=st.sampled_from(KEYS))
    def append(self, key: str) -> None:
        self.store.append(key, ChatMessage.user("hi"))
        self._touched(key).count += 1

    @rule(key=st.sampled_from(KEYS))
    def rename(self, key: str) -> None:
        self.names += 1
        self.store.set_session_name(key, f"name {self.names}")
        self._touched(key).name = f"name {self.names}"

    @precondition(lambda self: bool(self.live))
    @rule(data=st.data())
    def clear(self, data: st.DataObject) -> None:
        key = data.draw(st.sampled_from(sorted(self.live)))
        cleared = self.store.clear_messages(key)
        assert cleared == self.live[key].count
        if cleared:
            self._touched(key).count = 0

    # -- pages -----------------------------------------------------------------------------------------------

    def _expected(self, prefix: str, below: tuple[datetime, int] | None, limit: int | None) -> list[Live]:
        """The model's page: the live sessions under ``prefix`` below the position, most recent first."""
        matching = [life for key, life in self.live.items() if key.startswith(prefix)]
        ordered = sorted((life for life in matching if below is None or life.position() < below),
                         key=Live.position, reverse=True)
        return ordered if limit is None else ordered[:limit]

    def _key_of(self, life: Live) -> str:
        return next(key for key, stream in self.streams.items() if stream == life.stream)

    def _walk_on(self, prefix: str, below: tuple[datetime, int] | None, limit: int, sessions: list[str],
                 next_cursor: str | None, total: int, by_command: bool) -> None:
        """Check a page against the model, then keep the walk's cursor (or end the walk)."""
        expected = self._expected(prefix, below, limit)
        assert [self._key_of(life) for life in expected] == sessions
        assert total == len(self._expected(prefix, None, None))
        more = len(self._expected(prefix, below, None)) > limit
        assert (next_cursor is not None) == more
        self.walk = None if next_cursor is None else (prefix, next_cursor, expected[-1].position(), by_command)

    @precondition(lambda self: self.walk is None or not self.walk[3])
    @rule(prefix=st.sampled_from(PREFIXES), limit=st.integers(1, 4))
    def page(self, prefix: str, limit: int) -> None:
        """The next page of the library's walk, or the first of a new one."""
        prefix, cursor, below = (prefix, None, None) if self.walk is None else self.walk[:3]
        page = self.store.list_sessions_page(limit=limit, cursor=cursor, prefix=prefix)
        for metadata in page.sessions:
            life = self.live[metadata.key]
            assert (metadata.name, metadata.created_at, metadata.last_activity, metadata.message_count) == (
                life.name, life.created_at, life.last_activity, life.count)
        self._walk_on(prefix, below, limit, [metadata.key for metadata in page.sessions],
                      page.next_cursor, page.total, False)

    @precondition(lambda self: self.walk is None or self.walk[3])
    @rule(prefix=st.sampled_from(PREFIXES), limit=st.integers(1, 4))
    def command_page(self, prefix: str, limit: int) -> None:
        """The next page of the command's walk (``--json --limit N``, with the cursor its last page printed)."""
        prefix, cursor, below = (prefix, None, None) if self.walk is None else self.walk[:3]
        arguments = ["--json", "--limit", str(limit)] + (["--prefix", prefix] if prefix else [])
        result = self._command(*arguments, *(["--after", cursor] if cursor else []))
        assert result.exit_code == 0, result.output
        rows = [json.loads(line) for line in result.stdout.splitlines()]
        for row in rows:
            life = self.live[row["key"]]
            assert (row["name"], row["messages"]) == (life.name, life.count)
        summary = result.stderr.splitlines()
        next_cursor = None
        if summary:
            assert summary[-1].startswith("Next: ") and f" --limit {limit} " in summary[-1]
            next_cursor = summary[-1].rsplit(" --after ", 1)[1]
            total = int(summary[0].split(" of ")[1].split()[0].replace(",", ""))
        else:
            total = len(self._expected(prefix, None, None))  # the last page prints no count with --json
        self._walk_on(prefix, below, limit, [row["key"] for row in rows], next_cursor, total, True)

    @precondition(lambda self: self.walk is not None)
    @rule()
    def rest_by_command(self) -> None:
        """``--json`` (or ``--all``) with the walk's cursor: every session left, below it, in one command."""
        assert self.walk is not None
        prefix, cursor, below, _ = self.walk
        for arguments in (["--json"], ["--all"]):
            result = self._command(*arguments, *(["--prefix", prefix] if prefix else []), "--after", cursor)
            assert result.exit_code == 0, result.output
            expected = [self._key_of(life) for life in self._expected(prefix, below, None)]
            if arguments == ["--json"]:
                assert [json.loads(line)["key"] for line in result.stdout.splitlines()] == expected
                assert result.stderr == ""
            else:
                matching = len(self._expected(prefix, None, None))
                last = result.stdout.splitlines()[-1]
                assert last.startswith(f"{len(expected)} of {matching} sessions" if matching else "No sessions."), \
                    result.stdout
                lines = result.stdout.splitlines()[:-1]
                listed = [line.split()[0] for line in lines[1:]] if expected else lines  # under the header
                assert listed == (expected or ["No sessions after that cursor."] if matching else []), result.stdout
        self.walk = None

    @rule(which=st.sampled_from((0, 1)), prefix=st.sampled_from(PREFIXES), limit=st.integers(1, 4))
    def foreign_cursor(self, which: int, prefix: str, limit: int) -> None:
        """Another store's cursor names a position in the activity order: the page is this store's below it."""
        cursor, below = self.foreign[which]
        page = self.store.list_sessions_page(limit=limit, cursor=cursor, prefix=prefix)
        expected = self._expected(prefix, below, limit)
        assert [metadata.key for metadata in page.sessions] == [self._key_of(life) for life in expected]
        assert (page.next_cursor is not None) == (len(self._expected(prefix, below, None)) > limit)

    @rule(text=st.one_of(st.text(max_size=30), st.sampled_from(("", " ", "=", "AQ==", "-_", "\t", "AQAGYcCcZ7sU"))),
          mangle=st.sampled_from(("as is", "cut", "padded", "spaced", "lower")))
    def no_cursor(self, text: str, mangle: str) -> None:
        """A text no page printed (made up, or a real cursor spoilt) is refused: by the library with
        ``InvalidArgument``, by the command in one line naming --after, with nothing listed."""
        real = self.foreign[0][0]
        spoilt = {"as is": text, "cut": real[:-1], "padded": real + "=", "spaced": f" {real}",
                  "lower": real.lower() if real.lower() != real else real + "a"}[mangle]
        try:
            self.store.list_sessions_page(cursor=spoilt)
        except InvalidArgument as refused:
            assert "cursor" in str(refused)
        else:
            raise AssertionError(f"{spoilt!r} was taken for a cursor")
        result = self._command("--limit", "2", "--after", spoilt)
        assert result.exit_code == 1 and result.stdout == "", result.output
        assert result.stderr.startswith("Error: --after: ") and len(result.stderr.strip().splitlines()) == 1

    def _command(self, *arguments: str) -> Result:
        return CliRunner().invoke(cli, ["--store", str(self.directory / "store"), "sessions", *arguments],
                                  catch_exceptions=False)

    @invariant()
    def the_first_page_is_the_model(self) -> None:
        page = self.store.list_sessions_page(limit=len(KEYS))
        assert [metadata.key for metadata in page.sessions] == [
            self._key_of(life) for life in self._expected("", None, None)]
        assert page.next_cursor is None and page.total == len(self.live)


PagingModelMachine.TestCase.__doc__ = "Every page is the model's, by the library and the command line."
TestPagingModel = PagingModelMachine.TestCase
