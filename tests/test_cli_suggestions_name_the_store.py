"""A command the command line suggests runs against the store the user chose.

The suggestions (`history`, `sessions`, `restore`, `vacuum`, `verify`, `demo`, ...) said ``eventstore COMMAND``:
pasted as told after ``--store PATH``, each ran against the default store. Each is now built by ``Env.command``
and names the store (quoted for a shell); here each is triggered, then run exactly as printed.
"""

from __future__ import annotations

import re
import shlex
from pathlib import Path

import pytest
from click.testing import CliRunner, Result

from eventstore import ChatMessage, SessionStore, StoreCorrupted
from eventstore.cli import cli
from eventstore.cli._context import Env, user_error


@pytest.fixture(autouse=True)
def no_store_from_the_environment(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.delenv("EVENTSTORE_PATH", raising=False)
    monkeypatch.setenv("XDG_DATA_HOME", str(tmp_path / "default"))  # the default store: never the one chosen


@pytest.fixture
def store(tmp_path: Path) -> Path:
    """A store whose path needs quoting: "alpha" has two messages, "gone" was deleted."""
    path = tmp_path / "my store"
    with SessionStore(path) as opened:
        opened.append_many("alpha", [ChatMessage.user("one"), ChatMessage.assistant("two")])
        opened.append("gone", ChatMessage.user("bye"))
        opened.delete_session("gone")
    return path


def invoke(*args: str, env: dict[str, str] | None = None) -> Result:
    return CliRunner().invoke(cli, list(args), env=env, catch_exceptions=False)


def suggested(said: str) -> list[str]:
    """The one suggested command in what a command said, split as a shell splits it (without ``eventstore``)."""
    commands = re.findall(r"`(eventstore [^`]*)`", said)
    assert len(commands) == 1, said
    words = shlex.split(commands[0])
    assert words[0] == "eventstore"
    return words[1:]


def names_the_store(words: list[str], path: Path) -> list[str]:
    assert words[:2] == ["--store", str(path)], words
    return words


class TestEachSuggestionRunsAgainstTheChosenStore:
    def test_history_after_a_version_that_does_not_exist(self, store: Path) -> None:
        said = invoke("--store", str(store), "show", "alpha", "--version", "9").stderr
        assert f"`eventstore --store '{store}' history alpha`" in said
        listed = invoke(*names_the_store(suggested(said), store))
        assert listed.exit_code == 0 and "user: one" in listed.stdout

    def test_history_after_a_version_where_the_session_did_not_exist(self, store: Path) -> None:
        said = invoke("--store", str(store), "show", "gone", "--version", "2").stderr
        assert "did not exist at version 2" in said
        assert "deleted" in invoke(*names_the_store(suggested(said), store)).stdout

    def test_sessions_after_an_unknown_key(self, store: Path) -> None:
        said = invoke("--store", str(store), "show", "nobody", "--version", "1").stderr
        listed = invoke(*names_the_store(suggested(said), store))
        assert listed.exit_code == 0 and "alpha" in listed.stdout

    def test_restore_of_a_deleted_session(self, store: Path) -> None:
        said = invoke("--store", str(store), "show", "gone").stderr
        assert invoke(*names_the_store(suggested(said), store), "--yes").exit_code == 0
        with SessionStore(store, readonly=True) as opened:
            assert opened.load("gone") == [ChatMessage.user("bye")]

    def test_restore_after_a_delete_and_after_a_restore(self, store: Path) -> None:
        said = invoke("--store", str(store), "delete", "alpha").stdout
        assert invoke(*names_the_store(suggested(said), store), "--yes").exit_code == 0
        said = invoke("--store", str(store), "restore", "alpha", "--version", "1", "--yes").stdout
        assert invoke(*names_the_store(suggested(said), store), "--yes").exit_code == 0
        with SessionStore(store, readonly=True) as opened:
            assert len(opened.load("alpha")) == 2 and len(opened.history("alpha")) == 6  # undone: as before

    def test_vacuum_after_a_redaction(self, store: Path) -> None:
        said = invoke("--store", str(store), "redact", "alpha", "--reason", "x", "--yes").stdout
        assert invoke(*names_the_store(suggested(said), store)).exit_code == 0

    def test_demo_where_there_is_no_store(self, tmp_path: Path) -> None:
        missing = tmp_path / "new store"
        said = invoke("--store", str(missing), "sessions").stderr
        assert f"`eventstore --store '{missing}' import`" in said
        demo = re.search(r"`(eventstore [^`]*demo)`", said)
        assert demo is not None
        assert invoke(*shlex.split(demo.group(1))[1:]).exit_code == 0
        assert (missing / "data.mdb").is_file()

    def test_verify_after_damage(self, store: Path) -> None:
        said = user_error(StoreCorrupted("position 3 does not decode"), Env.chosen_by(str(store), None)).message
        assert invoke(*names_the_store(suggested(said), store)).exit_code == 0


class TestWhereTheStoreCameFrom:
    def test_a_store_from_the_environment_is_named_too_so_the_command_runs_anywhere(self, store: Path) -> None:
        said = invoke("show", "nobody", "--version", "1", env={"EVENTSTORE_PATH": str(store)}).stderr
        listed = invoke(*names_the_store(suggested(said), store))  # without the variable
        assert listed.exit_code == 0 and "alpha" in listed.stdout

    def test_the_default_store_is_not_named(self, tmp_path: Path) -> None:
        with SessionStore(tmp_path / "default" / "eventstore") as opened:
            opened.append("alpha", ChatMessage.user("one"))
        said = invoke("show", "nobody", "--version", "1").stderr
        assert suggested(said) == ["sessions"]
