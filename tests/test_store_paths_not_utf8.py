"""A store in a directory whose name is not UTF-8 opens, like any other path the file system holds.

POSIX file names are bytes; Python gives those that are not UTF-8 as lone
surrogates (``os.fsdecode``). The LMDB binding encodes a ``str`` path as strict
UTF-8, so opening such a store raised ``UnicodeEncodeError`` through the API
and a traceback from every command, after its directory had been made.
"""

from __future__ import annotations

import os
from pathlib import Path

from click.testing import CliRunner

from eventstore import ChatMessage, SessionStore
from eventstore.cli import cli


def not_utf8(tmp_path: Path, name: bytes) -> Path:
    return tmp_path / os.fsdecode(name)


def test_a_store_opens_reopens_and_vacuums_there(tmp_path: Path) -> None:
    path = not_utf8(tmp_path, b"store-\xfe")
    with SessionStore(path) as store:
        store.append("k", ChatMessage.user("hello"))
    with SessionStore(path) as store:
        store.vacuum()
        assert [m.content for m in store.load("k")] == ["hello"]
        assert store.verify().ok
    assert os.listdir(os.fsencode(tmp_path)) == [b"store-\xfe"]


def test_commands_import_into_it_and_read_it(tmp_path: Path) -> None:
    sessions = tmp_path / "ws" / "sessions"
    sessions.mkdir(parents=True)
    (sessions / "k.jsonl").write_bytes(b'{"role":"user","content":"hello"}\n')
    store = str(not_utf8(tmp_path, b"store-\xff"))
    runner = CliRunner()
    imported = runner.invoke(cli, ["--store", store, "import", "zeroclaw", str(tmp_path / "ws")])
    assert imported.exit_code == 0, imported.output
    shown = runner.invoke(cli, ["--store", store, "show", "k", "--json"])
    assert shown.exit_code == 0, shown.output
    assert "hello" in shown.stdout
