"""Arguments at their extremes, and a damaged or forbidden users.lock: each once raised something other than an
``EventStoreError`` (or gave a traceback on the command line). Huge-but-meaningful values have answers: a time
before every event is the empty session, a time after all of them the current one, a span longer than any is
longer than every session's age, and a position past the last one the log can hold has nothing after it.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from datetime import UTC, datetime, timedelta, timezone
from pathlib import Path

import attrs
import pytest
from click.testing import CliRunner

from eventstore import (
    ChatMessage,
    InvalidArgument,
    InvalidVersion,
    SessionStore,
    StoreCorrupted,
    StoreInaccessible,
    WrongExpectedVersion,
)
from eventstore.cli import cli
from eventstore.cli._context import parse_time
from eventstore.events import MessageAppended

from conftest import FakeClock

LATEST_EVER = datetime.max.replace(tzinfo=timezone(-timedelta(hours=14)))  # past year 9999 in UTC
EARLIEST_EVER = datetime.min.replace(tzinfo=timezone(timedelta(hours=14)))  # before year 1 in UTC
TOO_LONG_TO_PRINT = 10**5000  # Python refuses to turn an int of more than 4,300 digits into text


@pytest.fixture
def store_path(tmp_path: Path) -> Path:
    """A closed store with one running session "a" of two messages, an hour apart, in 2026."""
    clock = FakeClock()
    with SessionStore(tmp_path / "store", clock=clock) as store:
        store.append("a", ChatMessage.user("first"))
        clock.advance(hours=1)
        store.append("a", ChatMessage.user("second"))
        store.set_session_state("a", "running", "t1")
    return tmp_path / "store"


@pytest.fixture
def store(store_path: Path) -> Iterator[SessionStore]:
    with SessionStore(store_path) as opened:
        yield opened


# -- the library ------------------------------------------------------------------------------


def test_a_time_after_every_datetime_in_utc_is_the_current_session(store: SessionStore) -> None:
    current = store.session_at("a")
    assert store.session_at("a", as_of=LATEST_EVER) == current
    assert store.load("a", as_of=LATEST_EVER) == current.messages
    assert store.restore("a", as_of=LATEST_EVER) == current.version  # already as it was then: nothing written


def test_a_time_before_every_datetime_in_utc_is_the_empty_session(store: SessionStore) -> None:
    view = store.session_at("a", as_of=EARLIEST_EVER)
    assert (view.version, view.exists, view.messages) == (0, False, [])
    assert store.load("a", as_of=datetime.min.replace(tzinfo=UTC)) == []


def test_a_naive_as_of_is_still_refused(store: SessionStore) -> None:
    with pytest.raises(InvalidArgument, match="no time zone"):
        store.session_at("a", as_of=datetime.max)


@pytest.mark.parametrize("threshold", [2**1024, 10**400, float("inf"), 1e308])
def test_no_session_is_stuck_longer_than_any_span(store: SessionStore, threshold: float) -> None:
    assert [m.key for m in store.list_stuck_sessions(0)] == ["a"]
    assert store.list_stuck_sessions(threshold) == []


@pytest.mark.parametrize("ttl_hours", [10**400, 2**1024, float("inf")])
def test_no_session_is_idle_longer_than_any_span(store: SessionStore, ttl_hours: float) -> None:
    assert store.cleanup_stale(ttl_hours) == 0
    assert store.list_sessions() == ["a"]


@pytest.mark.parametrize("after", [2**64 - 1, 2**64, 2**1024])
def test_nothing_comes_after_the_last_position_the_log_can_hold(store: SessionStore, after: int) -> None:
    assert [e.position for e in store.events(after=2)] == [3]
    assert list(store.events(after=after)) == []


def test_an_int_too_long_to_print_gets_a_clear_answer(store: SessionStore) -> None:
    with pytest.raises(WrongExpectedVersion, match="int of 16610 bits"):
        store.append("a", ChatMessage.user("x"), expected_version=TOO_LONG_TO_PRINT)
    with pytest.raises(InvalidVersion):
        store.session_at("a", version=TOO_LONG_TO_PRINT)
    with pytest.raises(InvalidArgument, match="negative int of"):
        list(store.events(after=-TOO_LONG_TO_PRINT))
    assert len(list(store.events(limit=TOO_LONG_TO_PRINT))) == 3
    assert store.list_stuck_sessions(TOO_LONG_TO_PRINT) == []


@pytest.mark.parametrize("moment", [LATEST_EVER, EARLIEST_EVER], ids=["after-9999", "before-1"])
def test_a_time_no_utc_datetime_holds_cannot_be_recorded(store: SessionStore, moment: datetime) -> None:
    with pytest.raises(InvalidArgument, match="out of range"):
        store.import_sessions({"old": [(moment, MessageAppended(ChatMessage.user("x")))]})
    last = list(store.events())[-1]
    with pytest.raises(InvalidArgument, match="out of range"):
        store.replicate([attrs.evolve(last, position=last.position + 1, recorded_at=moment)])
    assert store.list_sessions() == ["a"] and store.verify().ok


def test_a_clock_past_year_9999_in_utc_is_refused(tmp_path: Path) -> None:
    with SessionStore(tmp_path / "store", clock=lambda: LATEST_EVER, durable=False) as store, \
            pytest.raises(InvalidArgument):
        store.append("a", ChatMessage.user("x"))


# -- users.lock -------------------------------------------------------------------------------


def _as_another_user(body: Callable[[], int]) -> int:
    """Run ``body`` in a forked child that runs as ``nobody`` if this process is root (whom no file mode stops)."""
    pid = os.fork()
    if pid == 0:
        code = 99
        try:
            if os.geteuid() == 0:
                os.setgid(65534)
                os.setuid(65534)
            code = body()
        finally:
            os._exit(code)
    return os.waitstatus_to_exitcode(os.waitpid(pid, 0)[1])


@pytest.fixture
def shared_store() -> Iterator[Path]:
    """A store that any user may open and write, outside pytest's private temporary directory."""
    base = Path(tempfile.mkdtemp(prefix="eventstore-extremes-"))
    path = base / "store"
    with SessionStore(path, durable=False) as store:
        store.append("a", ChatMessage.user("x"))
    for item in (base, path):
        item.chmod(0o777)
    for item in path.iterdir():
        item.chmod(0o666)
    yield path
    for item in path.iterdir():
        item.chmod(0o666)
    for item in path.iterdir():
        item.unlink()
    path.rmdir()
    base.rmdir()


def test_a_users_lock_the_process_may_only_read_is_enough(shared_store: Path) -> None:
    """The lock is taken on a read-only descriptor: a users.lock without write permission does not matter."""
    (shared_store / "users.lock").chmod(0o444)

    def body() -> int:
        with SessionStore(shared_store, durable=False) as store:
            store.append("a", ChatMessage.user("y"))
            return 0 if len(store.load("a")) == 2 else 11

    assert _as_another_user(body) == 0


@pytest.mark.parametrize("readonly", [False, True])
def test_a_users_lock_the_process_may_not_read_is_refused_clearly(shared_store: Path, readonly: bool) -> None:
    (shared_store / "users.lock").chmod(0)

    def body() -> int:
        try:
            SessionStore(shared_store, durable=False, readonly=readonly).close()
        except StoreInaccessible as exc:
            return 0 if "users.lock" in str(exc) else 11
        return 12

    assert _as_another_user(body) == 0


def _replace_with_directory(path: Path) -> None:
    path.unlink()
    path.mkdir()


def _replace_with_fifo(path: Path) -> None:
    path.unlink()
    os.mkfifo(path)


def _replace_with_dangling_link(path: Path) -> None:
    path.unlink()
    path.symlink_to(path.parent / "nowhere")


@pytest.mark.parametrize("readonly", [False, True])
@pytest.mark.parametrize("spoil", [_replace_with_directory, _replace_with_fifo, _replace_with_dangling_link],
                         ids=["directory", "fifo", "dangling-link"])
def test_a_users_lock_that_is_not_a_file_is_reported_as_damage(tmp_path: Path, readonly: bool,
                                                               spoil: Callable[[Path], None]) -> None:
    """Opening a FIFO there used to wait forever; a directory raised IsADirectoryError."""
    path = tmp_path / "store"
    SessionStore(path, durable=False).close()
    spoil(path / "users.lock")
    with pytest.raises(StoreCorrupted, match=r"users\.lock is not a regular file"):
        SessionStore(path, durable=False, readonly=readonly)


@pytest.mark.parametrize("readonly", [False, True])
@pytest.mark.parametrize("store", [True, False], ids=["in-a-store", "alone"])
@pytest.mark.parametrize("spoil", [_replace_with_directory, _replace_with_fifo], ids=["directory", "fifo"])
def test_a_data_file_that_is_not_a_file_is_reported_as_damage(tmp_path: Path, readonly: bool, store: bool,
                                                              spoil: Callable[[Path], None]) -> None:
    """A FIFO alone there used to make the open wait forever (so the open runs in a child, where a regression
    cannot hang the suite); a directory raised a bare EventStoreError."""
    path = tmp_path / "store"
    if store:
        SessionStore(path, durable=False).close()
    else:
        path.mkdir()
        (path / "data.mdb").touch()
    spoil(path / "data.mdb")
    opening = (f"from eventstore import SessionStore, StoreCorrupted\n"
               f"try:\n    SessionStore({str(path)!r}, durable=False, readonly={readonly})\n"
               f"except StoreCorrupted as exc:\n    print(exc)\n")
    done = subprocess.run([sys.executable, "-c", opening], capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    assert "data.mdb is not a regular file" in done.stdout


@pytest.mark.parametrize("readonly", [False, True])
@pytest.mark.parametrize("spoil", [_replace_with_directory, _replace_with_fifo], ids=["directory", "fifo"])
def test_a_lock_file_that_is_not_a_file_is_reported_as_damage(tmp_path: Path, readonly: bool,
                                                              spoil: Callable[[Path], None]) -> None:
    """These raised a bare EventStoreError (LMDB's "Is a directory" or "Illegal seek"), but one open's."""
    path = tmp_path / "store"
    SessionStore(path, durable=False).close()
    spoil(path / "lock.mdb")
    with pytest.raises(StoreCorrupted, match=r"lock\.mdb is not a regular file"):
        SessionStore(path, durable=False, readonly=readonly)


# -- the command line -------------------------------------------------------------------------


def _run(store_path: Path, *args: str) -> tuple[int, str, str]:
    result = CliRunner().invoke(cli, ["--store", str(store_path), *args], catch_exceptions=False)
    return result.exit_code, result.stdout, result.stderr


def _one_error_line(stderr: str) -> str:
    lines = stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("Error: "), stderr
    return lines[0]


@pytest.mark.parametrize("typed", ["0001-01-01", "0001-01-01T00:00+14:00", "0001-01-01T00:00-14:00"])
def test_cli_as_of_the_first_days_of_year_one_is_before_the_session(store_path: Path, typed: str) -> None:
    code, _, stderr = _run(store_path, "show", "a", "--as-of", typed)
    assert code == 1 and "did not exist as of" in _one_error_line(stderr)


@pytest.mark.parametrize("typed", ["9999-12-31T23:59:59-14:00", "9999-12-31", "9999-12-31T23:59:59.999999+23:59"])
def test_cli_as_of_the_last_days_of_year_9999_is_the_current_session(store_path: Path, typed: str) -> None:
    code, stdout, stderr = _run(store_path, "show", "a", "--as-of", typed, "--json")
    assert code == 0, stderr
    assert [m["content"] for m in json.loads(stdout)["messages"]] == ["first", "second"]


@pytest.mark.parametrize("zone", ["Etc/GMT+12", "Etc/GMT-14"])
@pytest.mark.parametrize("typed", ["0001-01-01", "9999-12-31T23:59:59.999999", "0001-01-01T00:00Z"])
def test_parse_time_at_the_ends_of_time_converts_to_any_zone(monkeypatch: pytest.MonkeyPatch, zone: str,
                                                             typed: str) -> None:
    """Shown in local time and passed on in UTC: neither conversion may overflow."""
    monkeypatch.setenv("TZ", zone)
    time.tzset()
    try:
        moment = parse_time(typed)
        assert moment.astimezone().astimezone(UTC).year == (1 if typed.startswith("0001") else 9999)
    finally:
        monkeypatch.undo()
        time.tzset()


@pytest.mark.parametrize("recorded_at", ["9999-12-31T23:59:59-14:00", "0001-01-01T00:00:00+14:00"])
def test_cli_import_of_an_event_whose_time_overflows_is_one_line(store_path: Path, tmp_path: Path,
                                                                recorded_at: str) -> None:
    exported = tmp_path / "all.events.jsonl"
    assert _run(store_path, "export", "--all", "--out", str(exported))[0] == 0
    header, first = exported.read_text().splitlines()[:2]
    spoiled = tmp_path / "spoiled.events.jsonl"
    spoiled.write_text(header + "\n" + json.dumps({**json.loads(first), "recorded_at": recorded_at}) + "\n")
    code, _, stderr = _run(tmp_path / "new", "import", "events", str(spoiled))
    assert code == 1 and "out of range" in _one_error_line(stderr)




@pytest.mark.parametrize("where", ["check_files", "open"])
def test_an_io_error_at_open_is_store_inaccessible_not_the_base_class(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                                                       where: str) -> None:
    import errno

    import lmdb

    from eventstore.storage import lmdb as engine
    path = tmp_path / "store"
    with SessionStore(path) as store:
        store.append("k", ChatMessage("user", "hello"))

    def check_fails(_path: Path) -> None:
        raise OSError(errno.EIO, os.strerror(errno.EIO))

    def open_fails(*_args: object, **_kwargs: object) -> None:
        raise lmdb.Error(f"{path}: {os.strerror(errno.EIO)}")

    if where == "check_files":
        monkeypatch.setattr(engine, "check_files", check_fails)
    else:
        monkeypatch.setattr(lmdb, "open", open_fails)
    with pytest.raises(StoreInaccessible, match="Input/output error"):
        SessionStore(path)
