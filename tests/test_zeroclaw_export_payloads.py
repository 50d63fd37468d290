"""A ZeroClaw JSONL export of messages with payloads says what its files leave out.

ZeroClaw's lines hold a role and a content only, so a message's payload (an
assistant's tool calls, a framework's item) cannot go into the file. The export
wrote such a message as its bare text and said nothing: a file that looked
complete had lost the tool call.
"""

from __future__ import annotations

import json
from pathlib import Path

from click.testing import CliRunner

from eventstore import ChatMessage, SessionStore
from eventstore.cli import cli
from eventstore.zeroclaw import export_jsonl

TOOL_CALL = ChatMessage("assistant", "", {"tool_calls": [{"id": "call_1", "name": "shell"}]})


def build(path: Path) -> None:
    with SessionStore(path) as store:
        store.append_many("with-tools", [ChatMessage.user("list the files"), TOOL_CALL, TOOL_CALL])
        store.append("plain", ChatMessage.user("hello"))


def test_the_export_counts_the_payloads_its_files_leave_out(tmp_path: Path) -> None:
    build(tmp_path / "store")
    with SessionStore(tmp_path / "store") as store:
        result = export_jsonl(store, ["with-tools", "plain"], tmp_path / "out")
    assert result.payloads_left_out == {"with-tools": 2}
    lines = [json.loads(line) for line in (tmp_path / "out" / "with-tools.jsonl").read_text().splitlines()]
    assert lines[1] == {"role": "assistant", "content": ""}  # ZeroClaw's line, as before


def test_the_command_says_so_in_text_and_json(tmp_path: Path) -> None:
    build(tmp_path / "store")
    runner = CliRunner()
    text = runner.invoke(cli, ["--store", str(tmp_path / "store"), "export", "--all", "--format", "jsonl",
                               "--out", str(tmp_path / "text")], catch_exceptions=False)
    assert text.exit_code == 0, text.output
    said = [line for line in text.stdout.splitlines() if "payload" in line]
    assert said == ["'with-tools': 2 messages with a payload (a tool call, a framework's item) written without it: "
                    "ZeroClaw's files have no field for one (--format events keeps it)."]
    as_json = runner.invoke(cli, ["--store", str(tmp_path / "store"), "export", "--all", "--format", "jsonl",
                                  "--out", str(tmp_path / "json"), "--json"], catch_exceptions=False)
    assert as_json.exit_code == 0, as_json.output
    assert json.loads(as_json.stdout)["payloads_left_out"] == {"with-tools": 2}
