"""The ``eventstore`` command line, every command through click's ``CliRunner``: exit codes, output, ``--json``.

Times print in the local zone: the tests pin it to UTC+05:30 (a POSIX TZ string,
no tz database needed) so that a wrong zone shows up as a wrong hour.
"""

from __future__ import annotations

import itertools
import json
import os
import re
import subprocess
import sys
import time
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta, timezone
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import click
import lmdb
import pytest
from click.testing import CliRunner, Result

from eventstore import ChatMessage, SessionStore
from eventstore.cli import cli
from eventstore.cli._context import default_store_path, parse_time
from eventstore.cli._output import show_time

from conftest import FakeClock

START = datetime(2026, 1, 1, tzinfo=UTC)  # 05:30 local in the tests' zone
LISBON = ZoneInfo("Europe/Lisbon")


@pytest.fixture(autouse=True)
def local_zone(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    monkeypatch.setenv("TZ", "IST-5:30")
    time.tzset()
    yield
    monkeypatch.undo()
    time.tzset()


def run(store: Path | None, *args: str, input: str | None = None, env: dict[str, str] | None = None) -> Result:
    arguments = (["--store", str(store)] if store is not None else []) + list(args)
    return CliRunner().invoke(cli, arguments, input=input, env=env, catch_exceptions=False)


def error_line(result: Result) -> str:
    """The single line a failed command printed, checking it is one line starting with ``Error:``."""
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    assert lines[0].startswith("Error: ")
    assert "Traceback" not in result.output
    return lines[0]


@pytest.fixture
def path(tmp_path: Path) -> Path:
    """A store with three live sessions, one deleted, known times (from 2026-01-01 00:00 UTC)."""
    store_path = tmp_path / "store"
    clock = FakeClock(START)
    with SessionStore(store_path, clock=clock) as store:
        fill(store, clock)
    return store_path


def fill(store: SessionStore, clock: FakeClock) -> None:
    """Three live sessions, one deleted, at known times."""
    store.append("alpha", ChatMessage.system("You are terse."))  # v1 00:00
    clock.advance(minutes=1)
    store.append("alpha", ChatMessage.user("Where is Lisbon?"))  # v2 00:01
    clock.advance(minutes=1)
    store.append("alpha", ChatMessage.assistant("In Portugal, on the Tagus."))  # v3 00:02
    clock.advance(minutes=1)
    store.set_session_name("alpha", "Geography")  # v4 00:03
    clock.advance(minutes=1)
    store.append("alpha", ChatMessage.user("A wrong question"))  # v5 00:04
    clock.advance(minutes=1)
    store.remove_last("alpha")  # v6 00:05
    clock.advance(minutes=1)
    store.set_session_state("beta", "running", turn_id="t1")
    store.append("beta", ChatMessage.user("Deploy the release"))
    clock.advance(minutes=1)
    store.append("gamma", ChatMessage.user("hello there"))
    store.append("gamma", ChatMessage.assistant("draft"))
    store.update_last("gamma", ChatMessage.assistant("final answer"))
    clock.advance(minutes=1)
    store.append("gone", ChatMessage.user("temporary"))
    store.delete_session("gone", reason="test")


def open_store(path: Path) -> SessionStore:
    return SessionStore(path)


def json_lines(text: str) -> list[Any]:
    """The objects of JSON Lines output (split on ``\n`` alone, as docs/cli-output.md says)."""
    return [json.loads(line) for line in text.split("\n") if line]


# -- help -------------------------------------------------------------------------------------


def all_commands(group: click.Group, prefix: tuple[str, ...] = ()) -> Iterator[tuple[tuple[str, ...], click.Command]]:
    for name, command in sorted(group.commands.items()):
        yield (*prefix, name), command
        if isinstance(command, click.Group):
            yield from all_commands(command, (*prefix, name))


class TestHelp:
    def test_every_command_has_a_summary_and_an_example(self) -> None:
        """Every command's --help has a one-line summary and an Example: section with a real invocation."""
        commands = list(all_commands(cli))
        assert {"demo", "sessions", "show", "history", "replay", "search", "restore", "delete", "compact",
                "verify", "rebuild", "redact", "vacuum", "stats", "import", "export"} <= {p[0] for p, _ in commands}
        assert {("import", "zeroclaw"), ("import", "events")} <= {p for p, _ in commands}
        for words, command in [((), cli), *commands]:
            result = run(None, *words, "--help")
            assert result.exit_code == 0, words
            assert "Example:" in result.stdout, words
            example = result.stdout.split("Example:", 1)[1]
            assert "eventstore " + " ".join(words) in example, words
            assert command.get_short_help_str(limit=200).strip(), words

    def test_summaries_fit_the_command_list(self) -> None:
        """`eventstore --help` lists every command with its whole one-line summary (none cut with ...)."""
        listing = run(None, "--help").stdout.split("Commands:", 1)[1]
        assert "..." not in listing
        assert len(listing.strip().splitlines()) == len(cli.commands)

    def test_reference_documents_every_command(self) -> None:
        """The generated reference has a section, with its example, for every command."""
        from eventstore.cli._reference import reference

        text = reference()
        for words, _ in all_commands(cli):
            section = text.split(f"## eventstore {' '.join(words)}\n", 1)[1].split("\n## ", 1)[0]
            assert "Example:" in section, words
            assert f"Usage: eventstore {' '.join(words)} " in section, words

    def test_checked_in_reference_is_current(self) -> None:
        """docs/cli.md is what `python -m eventstore.cli._reference` prints now (regenerate it when help changes)."""
        from eventstore.cli._reference import reference

        checked_in = (Path(__file__).parent.parent / "docs" / "cli.md").read_text(encoding="utf-8")
        assert reference() == checked_in

    def test_every_command_takes_json(self) -> None:
        """Every command (not the groups) offers --json."""
        for words, command in all_commands(cli):
            if not isinstance(command, click.Group):
                assert "--json" in run(None, *words, "--help").stdout, words

    def test_version(self) -> None:
        """--version names the program."""
        result = run(None, "--version")
        assert result.exit_code == 0
        assert result.stdout.startswith("eventstore ")

    def test_python_dash_m(self, path: Path) -> None:
        """`python -m eventstore` runs the same command line."""
        done = subprocess.run([sys.executable, "-m", "eventstore", "--store", str(path), "sessions", "--json"],
                              capture_output=True, text=True, timeout=60)
        assert done.returncode == 0, done.stderr
        assert [row["key"] for row in json_lines(done.stdout)] == ["gamma", "beta", "alpha"]
        assert done.stderr == ""


# -- store location and errors ---------------------------------------------------------------


class TestStoreLocation:
    def test_missing_store_is_an_error_and_not_created(self, tmp_path: Path) -> None:
        """A read on a path with no store fails in one line and creates nothing there."""
        missing = tmp_path / "nothing-here"
        for args in (["sessions"], ["show", "k"], ["history", "k"], ["verify"], ["stats"], ["delete", "k"],
                     ["compact", "--all"], ["vacuum"], ["rebuild"], ["export", "--all"]):
            result = run(missing, *args)
            assert result.exit_code == 1, args
            assert f"no store at {missing}" in error_line(result)
            assert not missing.exists(), args

    def test_empty_directory_is_not_a_store(self, tmp_path: Path) -> None:
        """An existing directory without data.mdb is not turned into a store by a read."""
        result = run(tmp_path, "sessions")
        assert result.exit_code == 1
        assert "no store at" in error_line(result)
        assert list(tmp_path.iterdir()) == []

    def test_a_store_whose_data_file_is_gone_is_damaged_not_missing(self, tmp_path: Path) -> None:
        """A store directory that lost data.mdb (its marker is there) is reported as damaged, never as a place
        with no store where `demo` or `import` would make one."""
        with SessionStore(tmp_path, durable=False) as store:
            store.append("k", ChatMessage.user("hello"))
        (tmp_path / "data.mdb").unlink()
        for args in (["sessions"], ["show", "k"], ["stats"]):
            result = run(tmp_path, *args)
            assert result.exit_code == 1, args
            assert "data.mdb is missing, but a store existed" in error_line(result), args
        verified = run(tmp_path, "verify")
        assert verified.exit_code == 1
        assert "data.mdb is missing, but a store existed" in verified.output
        assert not (tmp_path / "data.mdb").exists()

    def test_a_file_is_not_a_store(self, tmp_path: Path) -> None:
        """--store naming a file fails in one line."""
        file = tmp_path / "file"
        file.write_text("x")
        result = run(file, "sessions")
        assert result.exit_code == 1
        assert "is a file, not a store directory" in error_line(result)

    def test_damaged_store(self, tmp_path: Path) -> None:
        """A data.mdb that is not LMDB is reported in one line."""
        (tmp_path / "data.mdb").write_bytes(b"not an lmdb file" * 100)
        result = run(tmp_path, "sessions")
        assert result.exit_code == 1
        assert "damaged" in error_line(result)

    def test_outdated_read_models_are_rebuilt_by_a_read(self, path: Path) -> None:
        """A store whose read models an older version wrote is brought up to date, not refused."""
        env = lmdb.open(str(path), max_dbs=32)
        db = env.open_db(b"projections.checkpoints")
        with env.begin(write=True) as txn:
            txn.put(b"catalog", (0).to_bytes(8, "big") + (1).to_bytes(8, "big"), db=db)
        env.close()
        result = run(path, "sessions", "--json")
        assert result.exit_code == 0, result.output
        assert len(json_lines(result.stdout)) == 3
        assert json.loads(run(path, "stats", "--json").stdout)["checkpoints"]["catalog"]["position"] == 13

    def test_environment_variable(self, path: Path) -> None:
        """EVENTSTORE_PATH picks the store when --store is not given."""
        result = run(None, "sessions", "--json", env={"EVENTSTORE_PATH": str(path)})
        assert result.exit_code == 0
        assert len(json_lines(result.stdout)) == 3

    def test_option_wins_over_environment(self, path: Path, tmp_path: Path) -> None:
        """--store wins over EVENTSTORE_PATH."""
        result = run(path, "sessions", "--json", env={"EVENTSTORE_PATH": str(tmp_path / "other")})
        assert result.exit_code == 0
        assert len(json_lines(result.stdout)) == 3

    def test_default_store_under_xdg_data_home(self, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
        """Without --store or EVENTSTORE_PATH the store is $XDG_DATA_HOME/eventstore, named in the error."""
        monkeypatch.setenv("XDG_DATA_HOME", str(tmp_path / "xdg"))
        monkeypatch.delenv("EVENTSTORE_PATH", raising=False)
        if sys.platform != "darwin":
            assert default_store_path() == tmp_path / "xdg" / "eventstore"
        result = run(None, "sessions")
        assert result.exit_code == 1
        assert str(default_store_path()) in error_line(result)
        assert "the default store" in result.stderr


# -- sessions -----------------------------------------------------------------------------------


class TestSessions:
    def test_table(self, path: Path) -> None:
        """The table lists live sessions (not the deleted one) with names, counts, states and local times."""
        result = run(path, "sessions")
        assert result.exit_code == 0
        lines = result.stdout.splitlines()
        rows = [line for line in lines if line.startswith("│")]
        assert [row.split("│")[1].strip() for row in rows] == ["gamma", "beta", "alpha"]
        alpha = rows[2]
        assert "Geography" in alpha and " 3 " in alpha
        assert "2026-01-01 05:30:00" in alpha  # created 00:00 UTC, shown at UTC+05:30
        assert "running (t1)" in rows[1]
        assert "gone" not in result.stdout

    def test_json(self, path: Path) -> None:
        """--json gives one JSON object a line with the facade's values and local ISO times."""
        result = run(path, "sessions", "--json")
        rows = json_lines(result.stdout)
        alpha = rows[2]
        assert alpha == {"key": "alpha", "name": "Geography", "messages": 3,
                         "state": {"state": "idle", "turn_id": None, "turn_started_at": None},
                         "created_at": "2026-01-01T05:30:00.000000+05:30",
                         "last_activity": "2026-01-01T05:35:00.000000+05:30"}
        assert rows[1]["state"] == {"state": "running", "turn_id": "t1",
                                    "turn_started_at": "2026-01-01T05:36:00.000000+05:30"}
        assert ("", 3) == (result.stderr, len(rows))

    def test_running_and_stuck(self, path: Path) -> None:
        """--running lists running sessions; --stuck SECS those whose turn is older than SECS."""
        assert [r["key"] for r in json_lines(run(path, "sessions", "--running", "--json").stdout)] == ["beta"]
        assert [r["key"] for r in json_lines(run(path, "sessions", "--stuck", "60", "--json").stdout)] == ["beta"]
        far = 10 * 365 * 86400  # the turn started in 2026; ten years is longer than any test run's clock drift
        assert run(path, "sessions", "--stuck", str(far * 100), "--json").stdout == ""
        result = run(path, "sessions", "--stuck", str(far * 100))
        assert "No session has been running" in result.stdout

    def test_empty_store(self, tmp_path: Path) -> None:
        """An empty store lists nothing: a sentence for people, no line for scripts."""
        SessionStore(tmp_path / "s").close()
        assert run(tmp_path / "s", "sessions").stdout.strip() == "No sessions."
        assert run(tmp_path / "s", "sessions", "--json").stdout == ""

    def test_running_and_stuck_together_is_an_error(self, path: Path) -> None:
        result = run(path, "sessions", "--running", "--stuck", "5")
        assert result.exit_code == 1
        assert "not both" in error_line(result)

    @pytest.mark.parametrize("arguments", [["--all", "--limit", "2"], ["--running", "--limit", "2"],
                                           ["--stuck", "1", "--prefix", "a"], ["--running", "--all"],
                                           ["--running", "--after", "AQ"]])
    def test_paging_options_that_do_not_go_together(self, path: Path, arguments: list[str]) -> None:
        result = run(path, "sessions", *arguments)
        assert result.exit_code == 1
        assert "not" in error_line(result)

    def test_a_bad_cursor_is_one_line(self, path: Path) -> None:
        result = run(path, "sessions", "--after", "nonsense")
        assert result.exit_code == 1
        assert "cursor" in error_line(result)


def _keys(table: str) -> list[str]:
    return [line.split("│")[1].strip() for line in table.splitlines() if line.startswith("│")]


class TestSessionPages:
    @pytest.fixture
    def many(self, tmp_path: Path) -> Path:
        """120 sessions, a minute apart: s119 is the most recent; every third key starts with "x"."""
        clock = FakeClock(START)
        with SessionStore(tmp_path / "many", clock=clock) as store:
            for number in range(120):
                clock.advance(minutes=1)
                store.append(("x" if number % 3 == 0 else "s") + f"{number:03d}", ChatMessage.user("hi"))
        return tmp_path / "many"

    def test_the_latest_page_then_the_count_and_the_next_command(self, many: Path) -> None:
        result = run(many, "sessions")
        assert result.exit_code == 0
        keys = _keys(result.stdout)
        assert 50 == len(keys) and ("s119", "s070") == (keys[0], keys[-1])
        lines = result.stdout.rstrip("\n").split("\n")
        assert "50 of 120 sessions." == lines[-2]
        command = lines[-1].removeprefix("Next: eventstore ").split()
        assert ["--store", str(many), "sessions"] == command[:3] and "--after" == command[3]
        following = run(None, *command)
        assert _keys(following.stdout)[:2] == ["x069", "s068"]

    def test_walking_the_pages_by_their_commands_lists_each_session_once(self, many: Path) -> None:
        seen: list[str] = []
        command = ["--store", str(many), "sessions", "--limit", "45"]
        while True:
            result = run(None, *command)
            seen += _keys(result.stdout)
            last = result.stdout.rstrip("\n").split("\n")[-1]
            if not last.startswith("Next: "):
                assert f"{len(_keys(result.stdout))} of 120 sessions." == last
                break
            assert ["--limit", "45"] == last.split()[5:7]
            command = last.removeprefix("Next: eventstore ").split()
        with SessionStore(many) as store:
            assert store.list_sessions() == seen

    def test_limit_all_and_prefix(self, many: Path) -> None:
        assert 7 == len(_keys(run(many, "sessions", "--limit", "7").stdout))
        everything = run(many, "sessions", "--all").stdout.rstrip("\n").split("\n")
        assert ["KEY", "NAME", "MESSAGES"] == everything[0].split()[:3] and "120 of 120 sessions." == everything[-1]
        with SessionStore(many) as store:
            assert store.list_sessions() == [line.split()[0] for line in everything[1:-1]]
        assert "x117  -     1         idle   2026-01-01 07:28:00  2026-01-01 07:28:00" == everything[3]
        result = run(many, "sessions", "--prefix", "x", "--limit", "30")
        assert all(key.startswith("x") for key in _keys(result.stdout)) and 30 == len(_keys(result.stdout))
        lines = result.stdout.rstrip("\n").split("\n")
        assert "30 of 40 sessions whose key starts with 'x'." == lines[-2]
        rest = run(None, *lines[-1].removeprefix("Next: eventstore ").split())
        assert 10 == len(_keys(rest.stdout)) and rest.stdout.rstrip("\n").endswith("10 of 40 sessions whose key "
                                                                                    "starts with 'x'.")

    @pytest.mark.parametrize("form", [[], ["--json"]])
    def test_all_lists_every_session_while_another_writer_moves_sessions_to_the_front(
            self, many: Path, monkeypatch: pytest.MonkeyPatch, form: list[str]) -> None:
        """A walk a page at a time misses a session that changes after the walk passed the front (it moves there);
        ``--all`` promises every session, so it reads them at once."""
        monkeypatch.setattr("eventstore.cli._inspect._BLOCK", 10)
        with SessionStore(many) as writer:
            oldest = writer.list_sessions()[::-1]
            original = SessionStore.list_sessions_page

            def page_then_a_write(store: SessionStore, *args: Any, **kwargs: Any) -> Any:
                page = original(store, *args, **kwargs)
                writer.append(oldest.pop(0), ChatMessage.user("meanwhile"))  # not listed yet: now the most recent
                return page

            def listing_then_a_write(store: SessionStore, *args: Any, **kwargs: Any) -> Any:
                found = original_listing(store, *args, **kwargs)
                writer.append(oldest.pop(0), ChatMessage.user("meanwhile"))
                return found

            original_listing = SessionStore.list_sessions_with_metadata
            monkeypatch.setattr(SessionStore, "list_sessions_page", page_then_a_write)
            monkeypatch.setattr(SessionStore, "list_sessions_with_metadata", listing_then_a_write)
            result = run(many, "sessions", "--all", *form)
        rows = result.stdout.rstrip("\n").split("\n")[1:-1]  # the columns' header and the count aside
        listed = [row["key"] for row in json_lines(result.stdout)] if form else [row.split()[0] for row in rows]
        assert len(listed) == 120 and len(set(listed)) == 120

    def test_json_streams_every_session_or_a_page_with_the_next_command_on_stderr(self, many: Path) -> None:
        result = run(many, "sessions", "--json")
        with SessionStore(many) as store:
            assert store.list_sessions() == [row["key"] for row in json_lines(result.stdout)]
        assert "" == result.stderr
        page = run(many, "sessions", "--json", "--limit", "100")
        assert 100 == len(json_lines(page.stdout))
        told = page.stderr.rstrip("\n").split("\n")
        assert "100 of 120 sessions." == told[0]
        rest = run(None, *told[1].removeprefix("Next: eventstore ").split())
        assert ["s019", "x018", "s017"] == [row["key"] for row in json_lines(rest.stdout)][:3]
        assert 20 == len(json_lines(rest.stdout)) and "" == rest.stderr

    def test_all_escapes_what_a_terminal_would_run(self, tmp_path: Path) -> None:
        with SessionStore(tmp_path / "s") as store:
            store.append("evil\x1b]52;c;aGk=\x07", ChatMessage.user("hi"))
            store.set_session_name("evil\x1b]52;c;aGk=\x07", "\u202ename")
        out = run(tmp_path / "s", "sessions", "--all").stdout
        assert "\x1b" not in out and "\u202e" not in out
        assert "evil\\x1b]52;c;aGk=\\x07  \\u202ename" in out

    def test_the_next_command_keeps_a_prefix_of_any_characters_exactly(self, tmp_path: Path) -> None:
        """A prefix the terminal would see escaped is quoted so that a shell gives back its very characters."""
        prefix = "it's \\ a\n\x1b[31m\x85\u202e\u3164:"
        with SessionStore(tmp_path / "s") as store:
            for number in range(3):
                store.append(f"{prefix}{number}", ChatMessage.user("hi"))
            store.append("other", ChatMessage.user("hi"))
        page = run(tmp_path / "s", "sessions", "--json", "--limit", "1", "--prefix", prefix)
        assert [f"{prefix}2"] == [row["key"] for row in json_lines(page.stdout)]
        told = page.stderr.rstrip("\n").split("\n")[1]
        assert told.isprintable()
        shell = subprocess.run(["bash", "-c", 'printf "%s\\0" ' + told.removeprefix("Next: eventstore ")],
                               check=True, capture_output=True, text=True)
        following = run(None, *shell.stdout.split("\0")[:-1])
        assert [f"{prefix}1"] == [row["key"] for row in json_lines(following.stdout)]

    def test_a_page_past_the_end_says_so(self, many: Path) -> None:
        with SessionStore(many) as store:
            cursor = store.list_sessions_page(limit=120).next_cursor
            assert cursor is None
            last = store.list_sessions_page(limit=119).next_cursor
            assert last is not None
            store.delete_session("x000")
        result = run(many, "sessions", "--after", last)
        assert ["No sessions after that cursor.", "0 of 119 sessions."] == result.stdout.strip().split("\n")


# -- show ---------------------------------------------------------------------------------------


class TestShow:
    def test_current(self, path: Path) -> None:
        """show prints the head and every message with its local time."""
        result = run(path, "show", "alpha")
        assert result.exit_code == 0
        assert "alpha — Geography" in result.stdout
        assert "version:       6" in result.stdout
        assert "In Portugal, on the Tagus." in result.stdout
        assert "2026-01-01 05:32:00" in result.stdout
        assert "A wrong question" not in result.stdout

    def test_a_session_never_given_a_state_shows_idle(self, path: Path) -> None:
        """As get_session_state: idle with no turn, in the table and in --json."""
        assert "state:         idle\n" in run(path, "show", "alpha").stdout
        data = json.loads(run(path, "show", "alpha", "--json").stdout)
        assert data["state"] == {"state": "idle", "turn_id": None, "turn_started_at": None}
        assert json.loads(run(path, "show", "gone", "--version", "1", "--json").stdout)["state"]["state"] == "idle"

    def test_json_matches_the_facade(self, path: Path) -> None:
        """--json gives the session with every message and its time."""
        data = json.loads(run(path, "show", "alpha", "--json").stdout)
        with open_store(path) as store:
            messages = store.load_with_timestamps("alpha")
        assert data["version"] == 6 and data["exists"] and data["name"] == "Geography"
        assert [(m["role"], m["content"]) for m in data["messages"]] == [
            (m.message.role, m.message.content) for m in messages]
        assert [datetime.fromisoformat(m["created_at"]) for m in data["messages"]] == [m.created_at for m in messages]

    def test_version(self, path: Path) -> None:
        """--version N shows the session after its N-th event."""
        data = json.loads(run(path, "show", "alpha", "--version", "5", "--json").stdout)
        assert data["version"] == 5
        assert data["messages"][-1]["content"] == "A wrong question"
        assert "(at version 2)" in run(path, "show", "alpha", "--version", "2").stdout

    def test_as_of_local_time(self, path: Path) -> None:
        """--as-of reads a naive time as local time, to the end of the second given."""
        # 05:34:00 local = 00:04:00 UTC, the moment "A wrong question" was appended.
        data = json.loads(run(path, "show", "alpha", "--as-of", "2026-01-01T05:34:00", "--json").stdout)
        assert data["version"] == 5
        data = json.loads(run(path, "show", "alpha", "--as-of", "2026-01-01T00:03:30Z", "--json").stdout)
        assert data["version"] == 4
        # A minute names its end: 05:34 is 05:34:59.999999, shown to the second.
        assert "(as of 2026-01-01 05:34:59)" in run(path, "show", "alpha", "--as-of", "2026-01-01T05:34").stdout

    def test_unknown_session(self, path: Path) -> None:
        result = run(path, "show", "nope")
        assert result.exit_code == 1
        assert "no session 'nope'" in error_line(result)

    def test_deleted_session(self, path: Path) -> None:
        """A deleted session's error says how to bring it back."""
        result = run(path, "show", "gone")
        assert result.exit_code == 1
        assert f"`eventstore --store {path} restore gone --version 1`" in error_line(result)

    def test_bad_version(self, path: Path) -> None:
        result = run(path, "show", "alpha", "--version", "99")
        assert result.exit_code == 1
        assert "version 99 does not exist" in error_line(result)
        result = run(path, "show", "alpha", "--version", "-1")
        assert result.exit_code == 1
        error_line(result)

    def test_version_before_creation(self, path: Path) -> None:
        result = run(path, "show", "alpha", "--version", "0")
        assert result.exit_code == 1
        assert "did not exist at version 0" in error_line(result)

    def test_bad_time(self, path: Path) -> None:
        result = run(path, "show", "alpha", "--as-of", "last tuesday")
        assert result.exit_code == 1
        assert "is not a time" in error_line(result)

    def test_version_and_time_together(self, path: Path) -> None:
        result = run(path, "show", "alpha", "--version", "1", "--as-of", "2026-01-01")
        assert result.exit_code == 1
        assert "not both" in error_line(result)


_IST = timezone(timedelta(hours=5, minutes=30))  # the tests' local zone


class TestParseTime:
    @pytest.mark.parametrize(("text", "end"), [
        ("2026", datetime(2026, 12, 31, 23, 59, 59, 999999, _IST)),  # a year and a month are units too
        ("2026-10", datetime(2026, 10, 31, 23, 59, 59, 999999, _IST)),
        ("2026-12", datetime(2026, 12, 31, 23, 59, 59, 999999, _IST)),
        ("2028-02", datetime(2028, 2, 29, 23, 59, 59, 999999, _IST)),
        ("2026-03-01", datetime(2026, 3, 1, 23, 59, 59, 999999, _IST)),
        ("2026-03-01T14", datetime(2026, 3, 1, 14, 59, 59, 999999, _IST)),
        ("2026-03-01T14:05", datetime(2026, 3, 1, 14, 5, 59, 999999, _IST)),
        ("2026-03-01 14:05:09", datetime(2026, 3, 1, 14, 5, 9, 999999, _IST)),
        ("2026-03-01T14:05:09.5", datetime(2026, 3, 1, 14, 5, 9, 500000, _IST)),
        ("2026-03-01T14:05:09Z", datetime(2026, 3, 1, 14, 5, 9, 999999, UTC)),
        ("2026-03-01T14:05+0100", datetime(2026, 3, 1, 14, 5, 59, 999999, timezone(timedelta(hours=1)))),
    ])
    def test_units_end_at_their_last_microsecond(self, text: str, end: datetime) -> None:
        """A time names the end of its last unit (the help says so); naive means local; fractions are exact."""
        assert parse_time(text) == end

    def test_now(self) -> None:
        assert abs(parse_time("now") - datetime.now(UTC)) < timedelta(seconds=5)

    @pytest.mark.parametrize("text", ["soon", "14:05:09", "20260301", "2026-03-01Z", "2026-13", "2026-02-30",
                                      "2026-03-01T14:05:09.1234567", "2026-03-01T14:05+24:00"])
    def test_garbage(self, text: str) -> None:
        """Only what the docstring and the help list is read: another form of ISO 8601 (basic, a bare time) would
        otherwise mean something the documentation does not say (the start of a day, say)."""
        with pytest.raises(click.ClickException, match="is not a time"):
            parse_time(text)


@pytest.fixture
def lisbon(monkeypatch: pytest.MonkeyPatch) -> None:
    """Local time in Lisbon (``local_zone``, which every test uses, puts the zone back afterwards)."""
    monkeypatch.setenv("TZ", "Europe/Lisbon")
    time.tzset()


@pytest.mark.parametrize("day", ["2026-10-25", "2026-03-29"])  # Lisbon leaves, then enters, summer time
def test_a_typed_date_ends_at_the_last_microsecond_of_that_local_day(lisbon: None, day: str) -> None:
    """`--as-of 2026-10-25` names the end of that day in local time, however long the day is (23 to 25 hours)."""
    start = datetime.fromisoformat(day).replace(tzinfo=LISBON)
    next_midnight = (start + timedelta(days=1)).replace(tzinfo=LISBON)  # wall-clock arithmetic, then the zone
    end = next_midnight.astimezone(UTC) - timedelta(microseconds=1)
    assert parse_time(day).astimezone(UTC) == end


@pytest.mark.parametrize(("zone", "skipped", "kept"), [
    ("Europe/Lisbon", ["2026-03-29T01", "2026-03-29T01:30", "2026-03-29T01:59:59.5"],
     ["2026-03-29", "2026-03-29T00:59:59", "2026-03-29T02", "2026-03-29T01:30Z"]),
    ("America/Sao_Paulo", ["2018-11-04T00", "2018-11-04T00:00"], ["2018-11-04", "2018-11-04T01"]),
])
def test_a_local_time_the_clocks_skipped_is_refused(monkeypatch: pytest.MonkeyPatch, zone: str,
                                                    skipped: list[str], kept: list[str]) -> None:
    """No event shows such a time, and either reading of it lands up to an hour from the jump: it is refused, and
    a day, an hour or a time around it, or the same time given with a zone, is read as usual."""
    monkeypatch.setenv("TZ", zone)
    time.tzset()
    for text in skipped:
        with pytest.raises(click.ClickException, match="a local time the clocks skipped"):
            parse_time(text)
    for text in kept:
        parse_time(text)


@pytest.mark.parametrize("zone", ["Europe/Lisbon", "Australia/Lord_Howe", "America/Sao_Paulo", "America/St_Johns"])
def test_a_table_prints_the_offset_of_exactly_the_times_the_clocks_show_twice(monkeypatch: pytest.MonkeyPatch,
                                                                               zone: str) -> None:
    """``show_time`` reads a wall time both ways only near a change of the clocks (the C library's offsets a day
    either side tell it); the times it gives an offset are those zoneinfo reads two ways: every 3 hours over a year,
    and every 7 minutes two days either side of each change, by an hour, by half an hour (Lord Howe), at midnight
    (Sao Paulo in 2018), in the southern hemisphere and in the northern."""
    monkeypatch.setenv("TZ", zone)
    time.tzset()
    model = ZoneInfo(zone)
    coarse = [datetime(2018, 1, 1, tzinfo=UTC) + timedelta(hours=3 * step) for step in range(366 * 8)]
    changes = [moment for moment, following in itertools.pairwise(coarse)
               if moment.astimezone(model).utcoffset() != following.astimezone(model).utcoffset()]
    assert len(changes) == 2, changes
    fine = [change + timedelta(minutes=minutes) for change in changes for minutes in range(-3000, 3000, 7)]
    found = 0
    for moment in coarse + fine:
        wall = moment.astimezone(model).replace(tzinfo=None)
        twice = wall.replace(tzinfo=model, fold=0).utcoffset() != wall.replace(tzinfo=model, fold=1).utcoffset()
        shown = show_time(moment)
        assert shown == (moment.astimezone(model).isoformat(sep=" ", timespec="seconds") if twice
                         else wall.strftime("%Y-%m-%d %H:%M:%S")), moment
        found += twice
    assert found >= 4  # a fall-back hour (half an hour on Lord Howe) at a step of 7 minutes


def test_each_time_history_prints_in_the_repeated_hour_names_its_own_event(lisbon: None, tmp_path: Path) -> None:
    """The night the clocks go back, 01:20 comes twice: ``history`` tells the two apart (their UTC offsets), and
    ``show --as-of`` a time copied from it holds exactly the events up to that one, in and around that hour."""
    clock = FakeClock(datetime(2026, 10, 24, 23, 50, tzinfo=UTC))  # 00:50 local, summer time
    with SessionStore(tmp_path / "store", clock=clock) as store:
        for count in range(6):
            store.append("k", ChatMessage.user(f"m{count}"))
            clock.advance(minutes=30)  # 00:50, 01:20, 01:50, then 01:20, 01:50 again, 02:20
    table = run(tmp_path / "store", "history", "k").stdout
    shown = re.findall(r"2026-10-25 \d\d:\d\d:\d\d(?:[+-]\d\d:\d\d)?", table)
    assert len(shown) == 6 and len(set(shown)) == 6, table
    for count, moment in enumerate(shown):
        view = json.loads(run(tmp_path / "store", "show", "k", "--as-of", moment, "--json").stdout)
        assert [m["content"] for m in view["messages"]] == [f"m{n}" for n in range(count + 1)], moment
    assert "(as of 2026-10-25 23:59:59)" in run(tmp_path / "store", "show", "k", "--as-of", "2026-10-25").stdout


# -- history and replay --------------------------------------------------------------------------


class TestHistory:
    def test_table(self, path: Path) -> None:
        result = run(path, "history", "alpha")
        assert result.exit_code == 0
        for words in ("MessageAppended", "renamed to 'Geography'", "last message removed", "2026-01-01 05:35:00"):
            assert words in result.stdout

    def test_json_lines(self, path: Path) -> None:
        """--json prints one event a line, in the export format with local times."""
        lines = run(path, "history", "gone", "--json").stdout.splitlines()
        events = [json.loads(line) for line in lines]
        assert [e["type"] for e in events] == ["MessageAppended", "SessionDeleted"]
        assert [e["version"] for e in events] == [1, 2]
        assert events[1]["payload"] == {"reason": "test"}
        assert events[0]["recorded_at"].endswith("+05:30")

    def test_unknown(self, path: Path) -> None:
        result = run(path, "history", "nope")
        assert result.exit_code == 1
        assert "no session 'nope'" in error_line(result)


class TestReplay:
    def test_text_shows_each_change(self, path: Path) -> None:
        result = run(path, "replay", "alpha")
        assert result.exit_code == 0
        out = result.stdout
        assert "v1" in out and "session created" in out
        assert "+ #3 assistant: In Portugal, on the Tagus." in out
        assert "name: - → Geography" in out
        assert "- #4 user: A wrong question" in out

    def test_json_changes(self, path: Path) -> None:
        """--json: one step a line, with the kinds of change."""
        steps = [json.loads(line) for line in run(path, "replay", "gamma", "--json").stdout.splitlines()]
        assert [s["version"] for s in steps] == [1, 2, 3]
        assert steps[2]["changes"] == [{"kind": "message_replaced", "index": 1, "role": "assistant",
                                        "content": "final answer", "was": {"role": "assistant", "content": "draft"}}]
        beta = [json.loads(line) for line in run(path, "replay", "beta", "--json").stdout.splitlines()]
        assert beta[0]["changes"][1]["kind"] == "state"
        assert beta[0]["changes"][1]["to"]["state"] == "running"
        gone = [json.loads(line) for line in run(path, "replay", "gone", "--from", "2", "--json").stdout.splitlines()]
        assert [c["kind"] for c in gone[0]["changes"]] == ["deleted", "message_removed"]
        # Coming to life idle, or leaving from idle, is no change of state worth a line.
        alpha = [json.loads(line) for line in run(path, "replay", "alpha", "--json").stdout.splitlines()]
        assert [c["kind"] for c in alpha[0]["changes"]] == ["created", "message_added"]

    def test_range_checked(self, path: Path) -> None:
        result = run(path, "replay", "alpha", "--from", "9")
        assert result.exit_code == 1
        assert "has versions 1 to 6" in error_line(result)


# -- search and stats ---------------------------------------------------------------------------------


class TestSearch:
    def test_sessions(self, path: Path) -> None:
        """Words are OR-ed, whole and case-insensitive; the table lists matching sessions."""
        rows = json.loads(run(path, "search", "LISBON", "release", "--json").stdout)
        assert [r["key"] for r in rows] == ["beta", "alpha"]
        assert "alpha" in run(path, "search", "tagus").stdout

    def test_no_match(self, path: Path) -> None:
        assert json.loads(run(path, "search", "zebra", "--json").stdout) == []
        assert "No session matches 'zebra'." in run(path, "search", "zebra").stdout

    def test_limit(self, path: Path) -> None:
        rows = json.loads(run(path, "search", "lisbon", "release", "--limit", "1", "--json").stdout)
        assert [r["key"] for r in rows] == ["beta"]

    def test_index_of_an_earlier_version(self, path: Path) -> None:
        """A store whose search index an earlier version built (another code version) is searched: the read-only
        open cannot rebuild the index, so the command opens the store writable and rebuilds it first."""
        with SessionStore(path) as store:
            store.catch_up()
            position = store.stats().checkpoints["search"].position
            store._environment.write(lambda txn: store._checkpoints.put(txn, "search", 2, position))
        result = run(path, "search", "tagus", "--json")
        assert (0, ["alpha"]) == (result.exit_code, [row["key"] for row in json.loads(result.stdout)])
        with SessionStore(path, readonly=True) as store:
            assert store.stats().checkpoints["search"].code_version > 2

    def test_messages(self, path: Path) -> None:
        """--messages lists matching messages when the facade can search them, else says it cannot."""
        result = run(path, "search", "tagus", "--messages", "--json")
        if hasattr(SessionStore, "search_messages"):
            assert result.exit_code == 0
            hits = json.loads(result.stdout)
            assert len(hits) == 1 and "alpha" in json.dumps(hits[0])
        else:
            assert result.exit_code == 1
            assert "cannot search messages" in error_line(result)


class TestStats:
    def test_json_counts(self, path: Path) -> None:
        data = json.loads(run(path, "stats", "--json").stdout)
        assert data["events"] == 13
        assert data["sessions"] == 3
        assert data["deleted_sessions"] == 1
        assert data["messages"] == 6
        assert data["last_position"] == 13
        assert data["bytes"] == (path / "data.mdb").stat().st_size
        assert data["snapshots"] == 0
        assert data["checkpoints"]["catalog"]["position"] == 13
        assert set(data["checkpoints"]) == {"catalog", "messages"}

    def test_table(self, path: Path) -> None:
        out = run(path, "stats").stdout
        assert "events:" in out and "13" in out
        assert "Projection checkpoints" in out and "catalog" in out
        assert "Where the bytes go" in out and "log.events" in out and "free pages:" in out

    def test_json_says_where_the_bytes_go(self, path: Path) -> None:
        usage = json.loads(run(path, "stats", "--json").stdout)["usage"]
        spaces = {space["name"]: space for space in usage["spaces"]}
        assert spaces["log.events"]["entries"] == 13
        assert spaces["log.events"]["key_bytes"] == 13 * 8  # positions are 8 bytes
        assert spaces["log.events"]["leaf_pages"] >= 1
        assert usage["page_size"] == os.sysconf("SC_PAGE_SIZE")
        assert usage["file_pages"] * usage["page_size"] <= (path / "data.mdb").stat().st_size


# -- writing commands ------------------------------------------------------------------------------


class TestRestore:
    def test_asks_and_can_be_refused(self, path: Path) -> None:
        """Without --yes, restore asks; answering no changes nothing and exits non-zero."""
        result = run(path, "restore", "alpha", "--version", "5", input="n\n")
        assert result.exit_code == 1
        assert "Restore 'alpha'" in result.stderr
        with open_store(path) as store:
            assert len(store.history("alpha")) == 6

    def test_confirmed(self, path: Path) -> None:
        result = run(path, "restore", "alpha", "--version", "5", input="y\n")
        assert result.exit_code == 0
        assert "Restored alpha to version 5" in result.stdout
        with open_store(path) as store:
            assert store.load("alpha")[-1].content == "A wrong question"

    def test_yes_json_as_of(self, path: Path) -> None:
        """--yes skips the question; --as-of picks the version by local time."""
        result = run(path, "restore", "alpha", "--as-of", "2026-01-01T05:32", "--yes", "--json")
        assert result.exit_code == 0
        assert json.loads(result.stdout) == {"key": "alpha", "restored_to": 3, "changed": True, "version": 7,
                                             "exists": True, "messages": 3}
        with open_store(path) as store:
            assert store.get_session_name("alpha") is None

    def test_brings_back_a_deleted_session(self, path: Path) -> None:
        assert run(path, "restore", "gone", "--version", "1", "--yes").exit_code == 0
        with open_store(path) as store:
            assert store.load("gone") == [ChatMessage.user("temporary")]

    def test_nothing_to_do(self, path: Path) -> None:
        result = run(path, "restore", "alpha", "--version", "6", "--yes")
        assert result.exit_code == 0
        assert "Nothing to do" in result.stdout

    def test_needs_exactly_one_point(self, path: Path) -> None:
        for args in ([], ["--version", "1", "--as-of", "2026-01-01"]):
            result = run(path, "restore", "alpha", *args, "--yes")
            assert result.exit_code == 1
            assert "--version N or --as-of TIME" in error_line(result)

    def test_bad_version_and_unknown_key(self, path: Path) -> None:
        assert "does not exist" in error_line(run(path, "restore", "alpha", "--version", "40", "--yes"))
        assert "no session 'nope'" in error_line(run(path, "restore", "nope", "--version", "1", "--yes"))


class TestDelete:
    def test_delete(self, path: Path) -> None:
        result = run(path, "delete", "gamma", "--reason", "done", "--json")
        assert result.exit_code == 0
        assert json.loads(result.stdout) == {"key": "gamma", "deleted": True, "version": 4}
        with open_store(path) as store:
            assert not store.session_exists("gamma")
            assert store.history("gamma")[-1].event.reason == "done"

    def test_text_says_how_to_undo(self, path: Path) -> None:
        assert (f"`eventstore --store {path} restore gamma --version 3` brings it back"
                in run(path, "delete", "gamma").stdout)

    def test_the_undo_command_of_a_key_that_looks_like_an_option_runs(self, tmp_path: Path) -> None:
        with SessionStore(tmp_path / "s") as store:
            store.append("-v", ChatMessage.user("hi"))
        told = run(tmp_path / "s", "delete", "--", "-v").stdout
        command = told[told.index("`eventstore ") + len("`eventstore "):told.rindex("`")]
        shell = subprocess.run(["bash", "-c", 'printf "%s\\0" ' + command], check=True, capture_output=True, text=True)
        words = shell.stdout.split("\0")[:-1]
        assert words[:3] == ["--store", str(tmp_path / "s"), "restore"]
        assert 0 == run(None, *words[:3], "--yes", *words[3:]).exit_code  # as told: no --store added
        with SessionStore(tmp_path / "s") as store:
            assert [ChatMessage.user("hi")] == store.load("-v")

    def test_deleted_or_unknown(self, path: Path) -> None:
        assert "was deleted" in error_line(run(path, "delete", "gone"))
        assert "no session 'nope'" in error_line(run(path, "delete", "nope"))


class TestCompact:
    def test_one_session(self, path: Path) -> None:
        assert "Took a snapshot of alpha" in run(path, "compact", "alpha").stdout
        assert "already has a snapshot" in run(path, "compact", "alpha").stdout
        with open_store(path) as store:
            assert store.stats().snapshots == 1

    def test_all(self, path: Path) -> None:
        result = run(path, "compact", "--all", "--json")
        assert result.exit_code == 0
        assert json.loads(result.stdout) == {"sessions": 3, "snapshots_taken": 3, "keys": ["gamma", "beta", "alpha"]}
        assert result.stderr == ""  # no progress bar when not on a terminal

    def test_needs_key_or_all(self, path: Path) -> None:
        for args in ([], ["alpha", "--all"]):
            result = run(path, "compact", *args)
            assert result.exit_code == 1
            assert "KEY or --all" in error_line(result)


def damage_catalog(path: Path) -> None:
    """Delete one entry of the catalog read model behind the store's back."""
    env = lmdb.open(str(path), max_dbs=32)
    db = env.open_db(b"catalog.sessions")
    with env.begin(write=True) as txn:
        key = next(iter(txn.cursor(db=db).iternext(values=False)))
        txn.delete(key, db=db)
    env.close()


class TestVerifyAndRebuild:
    def test_sound(self, path: Path) -> None:
        result = run(path, "verify")
        assert result.exit_code == 0
        assert result.stdout.startswith("OK: 13 events checked")
        assert result.stderr == ""
        assert json.loads(run(path, "verify", "--json").stdout) == {"ok": True, "events_checked": 13, "problems": [],
                                                                    "damaged": [], "repairs": []}

    def test_damaged_exits_1_with_problems(self, path: Path) -> None:
        damage_catalog(path)
        result = run(path, "verify")
        assert result.exit_code == 1
        assert "problem: catalog.sessions" in result.stdout
        assert "DAMAGED:" in result.stdout
        data = json.loads(run(path, "verify", "--json").stdout)
        assert data["ok"] is False and data["problems"]
        assert run(path, "verify", "--json").exit_code == 1

    def test_rebuild_repairs(self, path: Path) -> None:
        damage_catalog(path)
        result = run(path, "rebuild")
        assert result.exit_code == 0
        assert "Rebuilt the read models from 13 events." in result.stdout
        assert run(path, "verify").exit_code == 0
        assert json.loads(run(path, "rebuild", "--json").stdout) == {"rebuilt": True, "events": 13}


class TestRedact:
    def test_needs_reason(self, path: Path) -> None:
        result = run(path, "redact", "alpha", "--yes")
        assert result.exit_code == 2  # a usage error: --reason is required

    def test_asks(self, path: Path) -> None:
        result = run(path, "redact", "alpha", "--reason", "pii", input="n\n")
        assert result.exit_code == 1
        with open_store(path) as store:
            assert store.load("alpha")[1].content == "Where is Lisbon?"

    def test_redacts_and_still_verifies(self, path: Path) -> None:
        result = run(path, "redact", "alpha", "--reason", "pii", "--yes", "--json")
        assert result.exit_code == 0
        assert json.loads(result.stdout) == {"key": "alpha", "events_redacted": 4, "reason": "pii"}
        with open_store(path) as store:
            assert [m.content for m in store.load("alpha")] == ["[redacted]"] * 3
        assert run(path, "verify").exit_code == 0
        assert f"Run `eventstore --store {path} vacuum`" in run(path, "redact", "beta", "--reason", "x", "--yes").stdout


class TestVacuum:
    def test_vacuum(self, path: Path) -> None:
        result = run(path, "vacuum", "--json")
        assert result.exit_code == 0
        data = json.loads(result.stdout)
        assert data["bytes_after"] == (path / "data.mdb").stat().st_size
        assert data["bytes_after"] <= data["bytes_before"]
        assert "Vacuumed the store" in run(path, "vacuum").stdout
        assert run(path, "verify").exit_code == 0

    def test_busy_store(self, path: Path) -> None:
        """vacuum while another SessionStore has the store open fails in one line (StoreBusy)."""
        with open_store(path):
            result = run(path, "vacuum")
        assert result.exit_code == 1
        assert "needs the store to itself" in error_line(result)


# -- import and export (the details are in test_zeroclaw_import.py and test_export_roundtrip.py) ----------


class TestInterchange:
    def test_export_needs_keys_or_all(self, path: Path) -> None:
        assert "--all" in error_line(run(path, "export"))
        assert "--all" in error_line(run(path, "export", "alpha", "--all"))

    def test_export_jsonl_needs_a_directory(self, path: Path) -> None:
        assert "give --out DIRECTORY" in error_line(run(path, "export", "--all", "--format", "jsonl"))

    def test_export_events_to_stdout(self, path: Path) -> None:
        result = run(path, "export", "gone")
        assert result.exit_code == 0
        lines = [json.loads(line) for line in result.stdout.splitlines()]
        assert lines[0] == {"format": "eventstore.events", "version": 2, "whole_log": False, "keys": ["gone"]}
        assert [line["type"] for line in lines[1:-1]] == ["MessageAppended", "SessionDeleted"]
        assert lines[-1] == {"end": True, "events": 2, "last_hash": lines[-2]["hash"]}

    def test_export_refuses_to_overwrite(self, path: Path, tmp_path: Path) -> None:
        target = tmp_path / "out.jsonl"
        target.write_text("keep me")
        assert "pass --force" in error_line(run(path, "export", "--all", "--out", str(target)))
        assert target.read_text() == "keep me"
        result = run(path, "export", "--all", "--out", str(target), "--force", "--json")
        assert json.loads(result.stdout) == {"format": "events", "out": str(target), "events": 13,
                                             "whole_log": True}

    def test_export_unknown_key(self, path: Path) -> None:
        assert "no session 'nope'" in error_line(run(path, "export", "nope"))

    def test_import_events_file_that_is_not_one(self, path: Path, tmp_path: Path) -> None:
        bogus = tmp_path / "bogus.jsonl"
        bogus.write_text('{"role": "user", "content": "hi"}\n')
        result = run(tmp_path / "new", "import", "events", str(bogus))
        assert result.exit_code == 1
        assert "line 1: not an eventstore events file" in error_line(result)

    def test_import_zeroclaw_bad_workspace_creates_no_store(self, tmp_path: Path) -> None:
        (tmp_path / "ws").mkdir()
        result = run(tmp_path / "store", "import", "zeroclaw", str(tmp_path / "ws"))
        assert result.exit_code == 1
        assert "no ZeroClaw sessions" in error_line(result)
        assert not (tmp_path / "store").exists()


# -- demo ---------------------------------------------------------------------------------------------


class TestDemo:
    def test_end_to_end_twice(self, tmp_path: Path) -> None:
        """The README's demo: writes the sessions, tours them in five printed steps; a second run reuses them."""
        store = tmp_path / "demo"
        first = run(store, "demo")
        assert first.exit_code == 0, first.output
        out = first.stdout
        assert "Wrote the demo sessions demo:lisbon-trip, demo:bug-triage, demo:sql-help, demo:old-draft" in out
        for step in range(1, 6):
            assert f"Step {step} of 5" in out
        assert f"$ eventstore --store {store} sessions" in out
        assert f"$ eventstore --store {store} show demo:lisbon-trip --as-of " in out
        assert "Nightly export failure" in out  # the session list
        assert "Sintra (40 min from Rossio)" in out  # show
        assert "SessionRestored" in out and "LastMessageRemoved" in out  # history
        point_in_time = out.split("Step 5 of 5", 1)[1]
        assert "how expensive are taxis?" in point_in_time  # the retracted question, back in time
        assert "Traceback" not in first.output

        second = run(store, "demo")
        assert second.exit_code == 0, second.output
        assert "already in the store" in second.stdout
        assert "Step 5 of 5" in second.stdout
        with open_store(store) as opened:
            assert opened.verify().ok
            assert opened.list_sessions() == ["demo:sql-help", "demo:bug-triage", "demo:lisbon-trip"]
            assert opened.stats().snapshots >= 1
            assert [m.key for m in opened.list_running_sessions()] == ["demo:bug-triage"]
            trip = opened.history("demo:lisbon-trip")
            assert {type(r.event).__name__ for r in trip} >= {"SessionRenamed", "LastMessageRemoved",
                                                             "LastMessageReplaced", "MessagesCleared",
                                                             "SessionRestored"}
            assert not opened.session_exists("demo:old-draft")

    def test_default_store(self, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
        """`eventstore demo` with no options writes the default per-user store."""
        monkeypatch.setenv("XDG_DATA_HOME", str(tmp_path))
        monkeypatch.setenv("HOME", str(tmp_path))
        monkeypatch.delenv("EVENTSTORE_PATH", raising=False)
        result = run(None, "demo")
        assert result.exit_code == 0, result.output
        assert "$ eventstore sessions" in result.stdout
        assert (default_store_path() / "data.mdb").is_file()
        assert len(json_lines(run(None, "sessions", "--json").stdout)) == 3

    def test_json(self, tmp_path: Path) -> None:
        data = json.loads(run(tmp_path / "d", "demo", "--json").stdout)
        assert data["created"] == ["demo:lisbon-trip", "demo:bug-triage", "demo:sql-help", "demo:old-draft"]
        assert data["tour"][0] == f"eventstore --store {tmp_path / 'd'} sessions"

    def test_brings_back_a_deleted_demo_session(self, tmp_path: Path) -> None:
        """If the user deleted a demo session, the next demo run restores it and the tour still works."""
        store = tmp_path / "d"
        run(store, "demo", "--json")
        assert run(store, "delete", "demo:lisbon-trip").exit_code == 0
        result = run(store, "demo")
        assert result.exit_code == 0, result.output
        assert "Brought back the deleted demo sessions demo:lisbon-trip" in result.stdout
        assert "Wrote the demo sessions" not in result.stdout

    def test_writes_again_a_deleted_demo_session_whose_content_was_redacted(self, tmp_path: Path) -> None:
        """A restore would bring back only "[redacted]": the session is written afresh under its key instead."""
        store = tmp_path / "d"
        run(store, "demo", "--json")
        assert run(store, "redact", "demo:sql-help", "--reason", "trying it", "--yes").exit_code == 0
        assert run(store, "delete", "demo:sql-help").exit_code == 0
        again = json.loads(run(store, "demo", "--json").stdout)
        assert (again["created"], again["restored"]) == (["demo:sql-help"], [])
        with open_store(store) as opened:
            messages = opened.load("demo:sql-help")
            assert messages[0].content == "How do I find duplicate emails in a users table?"
            assert "[redacted]" not in {m.content for m in messages}
            assert opened.verify().ok


def test_progress_bar_draws_on_a_terminal(path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """On a terminal (forced here), long work draws a progress bar on stderr; stdout keeps the result."""
    monkeypatch.setenv("TTY_COMPATIBLE", "1")
    result = run(path, "verify", "--json")
    assert result.exit_code == 0
    assert json.loads(result.stdout)["ok"] is True
    assert "Verifying" in result.stderr


def test_user_errors_never_print_tracebacks(path: Path) -> None:
    """A sweep of user mistakes: each is one line on stderr and a non-zero exit."""
    mistakes = [["show", ""], ["show", "x" * 2000], ["history", "nope"], ["replay", "nope"],
                ["compact", "nope"], ["redact", "nope", "--reason", "r", "--yes"],
                ["restore", "alpha", "--as-of", "2026-13-45", "--yes"], ["export", "nope", "--format", "jsonl",
                                                                          "--out", os.devnull]]
    for args in mistakes:
        result = run(path, *args)
        assert result.exit_code == 1, args
        error_line(result)


def test_the_library_never_imports_click_or_rich() -> None:
    """The CLI is a thin shell: the package and its interchange modules load without click or rich."""
    code = ("import sys, eventstore, eventstore.zeroclaw, eventstore.interchange; "
            "print(sorted(m for m in sys.modules if m.split('.')[0] in ('click', 'rich')))")
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "[]"
