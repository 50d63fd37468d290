"""Terminal-safe CLI output: no command prints a control or invisible character raw; ``--json`` stays exact.

Each class of hostile text (ESC sequences such as OSC 52 and CSI, other C0 controls, DEL, C1 controls, bidi
controls, zero-width and other invisible characters, line separators, rich markup) is stored in every field a
command prints: keys, names, roles, contents, states, turn ids, delete and redaction reasons, file and store
paths. The human output must hold none of those characters (a message body may keep its newlines) and show each
as a visible escape; the ``--json`` output must hold the exact strings.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import unicodedata
from pathlib import Path
from typing import Any

import attrs
import pytest
from click.testing import CliRunner, Result
from hypothesis import example, given
from hypothesis import strategies as st
from rich.cells import cell_len
from rich.text import Text

from eventstore import ChatMessage, SessionStore
from eventstore.cli import cli
from eventstore.cli._output import ESCAPE_STYLE, safe_text, terminal_safe

#: Each class of hostile text, and how the human output must show it.
HOSTILE: dict[str, tuple[str, str]] = {
    "osc52-clipboard": ("\x1b]52;c;aGFja2Vk\x07", r"\x1b]52;c;aGFja2Vk\x07"),
    "osc0-title": ("\x1b]0;pwned\x1b\\", "\\x1b]0;pwned\\x1b\\"),
    "csi-clear-screen": ("\x1b[2J\x1b[H", r"\x1b[2J\x1b[H"),
    "c0": ("\x01\x08\x0b\x0c\r\x1f", r"\x01\x08\x0b\x0c\r\x1f"),
    "del": ("\x7f", r"\x7f"),
    "c1": ("\x9b2J\x9d0;t\x9c\x85", r"\x9b2J\x9d0;t\x9c\x85"),
    "bidi": ("\u202a\u202b\u202c\u202d\u202e\u2066\u2067\u2068\u2069\u200e\u200f\u061c",
             r"\u202a\u202b\u202c\u202d\u202e\u2066\u2067\u2068\u2069\u200e\u200f\u061c"),
    "invisible": ("\u200b\u200c\u200d\u2060\ufeff\xad\U000e0041\u3164",
                  r"\u200b\u200c\u200d\u2060\ufeff\xad\U000e0041\u3164"),
    "separators": ("\u2028\u2029", r"\u2028\u2029"),
    "rich-markup": ("[red]x[/red][/bogus]:smile:", "[red]x[/red][/bogus]:smile:"),
}
#: A readable environment: wide enough that no table cell folds, and never a terminal (so no styles are drawn).
WIDE = {"COLUMNS": "1000", "FORCE_COLOR": None, "TTY_COMPATIBLE": None, "TTY_INTERACTIVE": None}
UNSAFE_CATEGORIES = {"Cc", "Cf", "Cs", "Zl", "Zp"}
BLANK_LETTERS = "\u115f\u1160\u3164\uffa0"


def is_unsafe(char: str) -> bool:
    return unicodedata.category(char) in UNSAFE_CATEGORIES or char in BLANK_LETTERS


def raw_characters(output: str) -> list[str]:
    """The characters of ``output`` that must never reach a terminal (line breaks between lines are fine)."""
    return [char for char in output if char != "\n" and is_unsafe(char)]


def path_safe(text: str) -> str:
    return text.replace("/", "|")


@attrs.frozen
class Hostile:
    """A store whose every printed field holds one class of hostile text."""

    text: str
    visible: str
    path: Path

    @property
    def key(self) -> str:
        return f"key{self.text}end"

    @property
    def gone(self) -> str:
        return f"gone{self.text}"

    @property
    def secret(self) -> str:
        return f"secret{self.text}"

    @property
    def runner(self) -> str:
        return f"runner{self.text}"

    def run(self, *args: str, input: str | None = None, store: Path | None = None) -> Result:
        arguments = ["--store", str(store or self.path), *args]
        return CliRunner().invoke(cli, arguments, input=input, env=WIDE, catch_exceptions=False)

    def checked(self, *args: str, input: str | None = None, store: Path | None = None, code: int = 0) -> Result:
        """Run a command for people; check its exit code and that stdout and stderr hold nothing raw."""
        result = self.run(*args, input=input, store=store)
        assert result.exit_code == code, result.output
        assert "Traceback" not in result.output
        assert raw_characters(result.stdout) == []
        assert raw_characters(result.stderr) == []
        return result

    def human(self, *args: str, input: str | None = None, store: Path | None = None) -> str:
        """What a successful command printed for people (stdout, then stderr), checked."""
        result = self.checked(*args, input=input, store=store)
        return result.stdout + result.stderr

    def error(self, *args: str, store: Path | None = None, code: int = 1) -> str:
        """The error a failing command printed, checked: one line (after the usage, for a usage error)."""
        lines = self.checked(*args, store=store, code=code).stderr.strip().splitlines()
        assert lines[-1].startswith("Error: ")
        assert code == 2 or len(lines) == 1, lines
        return lines[-1]

    def json(self, *args: str) -> Any:
        result = self.run(*args, "--json")
        assert result.exit_code == 0, result.output
        return json.loads(result.stdout)

    def shown(self, word: str) -> str:
        """How ``word + text`` reads in human output."""
        return word + self.visible


@pytest.fixture(scope="module", params=sorted(HOSTILE))
def template(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> Hostile:
    """The store for one class of hostile text, written once."""
    text, visible = HOSTILE[request.param]
    found = Hostile(text, visible, tmp_path_factory.mktemp("hostile") / "store")
    with SessionStore(found.path) as store:
        store.set_session_state(found.key, f"state{text}", turn_id=f"turn{text}")
        store.append(found.key, ChatMessage(f"role{text}", f"findme {text}\x00 body\nline two\tend"))
        store.append(found.key, ChatMessage.assistant(f"draft{text}"))
        store.update_last(found.key, ChatMessage.assistant(f"final{text}"))
        store.set_session_name(found.key, f"name{text}")
        store.append(found.gone, ChatMessage.user("bye"))
        store.delete_session(found.gone, reason=f"reason{text}")
        store.append(found.secret, ChatMessage.user("password: hunter2"))
        store.redact(found.secret, f"leak{text}")
        store.set_session_state(found.runner, "running", turn_id=f"turn{text}")
    return found


@pytest.fixture
def hostile(template: Hostile, tmp_path: Path) -> Hostile:
    """A copy of the template store, which the test may change."""
    shutil.copytree(template.path, tmp_path / "store")
    return attrs.evolve(template, path=tmp_path / "store")


# -- reading commands ---------------------------------------------------------------------------------------


def test_sessions(hostile: Hostile) -> None:
    out = hostile.human("sessions")
    for word in ("key", "name", "state", "turn", "runner", "secret"):
        assert hostile.shown(word) in out
    assert hostile.shown("turn") in hostile.human("sessions", "--running")
    assert hostile.shown("runner") in hostile.human("sessions", "--stuck", "0")


def test_show_keeps_the_lines_of_a_body(hostile: Hostile) -> None:
    out = hostile.human("show", hostile.key)
    for word in ("key", "name", "state", "turn", "role", "final"):
        assert hostile.shown(word) in out
    assert hostile.shown("findme ") + r"\x00 body" in out
    lines = out.splitlines()
    body = next(i for i, line in enumerate(lines) if "findme" in line)
    assert "line two" in lines[body + 1]  # the newline stays a line break
    assert "\t" not in out and "line two        end" in out  # a tab is spaces to the next multiple of 8
    assert hostile.shown("draft") in hostile.human("show", hostile.key, "--version", "3")


def test_history(hostile: Hostile) -> None:
    out = hostile.human("history", hostile.key)
    assert "History of " + hostile.shown("key") in out
    for word in ("role", "name", "state", "turn"):
        assert hostile.shown(word) in out
    assert hostile.shown("reason") in hostile.human("history", hostile.gone)
    assert hostile.shown("leak") in hostile.human("history", hostile.secret)


def test_replay(hostile: Hostile) -> None:
    out = hostile.human("replay", hostile.key)
    for word in ("role", "name", "state", "turn"):
        assert hostile.shown(word) in out
    assert hostile.shown("leak") in hostile.human("replay", hostile.secret)
    hostile.human("replay", hostile.gone)


def test_search(hostile: Hostile) -> None:
    assert hostile.shown("key") in hostile.human("search", "findme")
    out = hostile.human("search", "findme", "--messages")
    assert hostile.shown("key") in out and hostile.shown("role") in out
    assert hostile.shown("nomatch") in hostile.human("search", f"nomatch{hostile.text}")  # the words are echoed
    assert hostile.shown("nomatch") in hostile.human("search", f"nomatch{hostile.text}", "--messages")


def test_stats_and_verify(hostile: Hostile, tmp_path: Path) -> None:
    store = tmp_path / path_safe(f"store{hostile.text}")
    with SessionStore(store) as opened:
        opened.append(hostile.key, ChatMessage.user("hi"))
    assert path_safe(hostile.shown("store")) in hostile.human("stats", store=store)
    hostile.human("verify", store=store)


# -- errors -------------------------------------------------------------------------------------------------


def test_errors_quote_keys_and_paths_safely(hostile: Hostile, tmp_path: Path) -> None:
    assert hostile.shown("nokey") in hostile.error("show", f"nokey{hostile.text}")
    assert hostile.shown("gone") in hostile.error("show", hostile.gone)  # deleted: suggests a restore command
    assert hostile.shown("key") in hostile.error("replay", hostile.key, "--from", "99")
    missing = tmp_path / path_safe(f"missing{hostile.text}")
    assert path_safe(hostile.shown("missing")) in hostile.error("sessions", store=missing)
    assert hostile.shown("--bad") in hostile.error(f"--bad{hostile.text}", code=2)  # the group's own options
    assert hostile.shown("--bad") in hostile.error("show", f"--bad{hostile.text}", code=2)


def test_a_path_the_terminal_cannot_encode(hostile: Hostile, tmp_path: Path) -> None:
    """A path from a non-UTF-8 argument holds lone surrogates; the error shows them as escapes."""
    assert r"\udcff" in hostile.error("sessions", store=tmp_path / "no\udcffstore")


def test_json_of_a_path_that_is_not_utf8(tmp_path: Path) -> None:
    """JSON cannot hold a lone surrogate raw; it is written as a \\udcXX escape, which gives the path back."""
    with SessionStore(tmp_path / "store") as opened:
        opened.append("k", ChatMessage.user("hi"))
    target = tmp_path / "events\udcff.jsonl"
    arguments = ["--store", str(tmp_path / "store"), "export", "--all", "--out", str(target), "--json"]
    result = CliRunner().invoke(cli, arguments, catch_exceptions=False)
    assert result.exit_code == 0, result.output
    assert r"events\udcff.jsonl" in result.stdout
    assert os.fsencode(json.loads(result.stdout)["out"]) == os.fsencode(target)
    assert target.is_file()


# -- writing commands ---------------------------------------------------------------------------------------


def test_restore_delete_compact_redact(hostile: Hostile) -> None:
    out = hostile.human("restore", hostile.key, "--version", "2", input="y\n")  # the prompt names key and name
    assert out.count(hostile.shown("key")) >= 2
    assert hostile.shown("name") in hostile.human("restore", hostile.key, "--version", "5", input="y\n")
    assert hostile.shown("key") in hostile.human("compact", hostile.key)
    assert hostile.shown("key") in hostile.human("delete", hostile.key, "--reason", f"why{hostile.text}")
    assert hostile.shown("why") in hostile.human("history", hostile.key)
    out = hostile.human("redact", hostile.runner, "--reason", f"r{hostile.text}", input="y\n")
    assert out.count(hostile.shown("runner")) == 2


def test_export_and_import(hostile: Hostile, tmp_path: Path) -> None:
    events = tmp_path / path_safe(f"out{hostile.text}.jsonl")
    assert path_safe(hostile.shown("out")) in hostile.human("export", hostile.key, "--out", str(events))
    out = hostile.human("import", "events", str(events))  # the key is already in the store
    assert hostile.shown("key") in out

    workspace = tmp_path / path_safe(f"ws{hostile.text}")
    (workspace / "sessions").mkdir(parents=True)
    stem = path_safe(f"zc{hostile.text}")
    (workspace / "sessions" / f"{stem}.jsonl").write_text('{"role": "user", "content": "hi"}\nnot json\n')
    out = hostile.human("import", "zeroclaw", str(workspace), "--verbose")
    assert terminal_safe(stem) in out  # the table's source and the skipped line
    out = hostile.human("import", "zeroclaw", str(workspace), store=tmp_path / "other")
    (workspace / "sessions" / f"{stem}.jsonl").rename(workspace / "sessions" / "again.jsonl")
    with SessionStore(tmp_path / "other") as opened:
        opened.append("again", ChatMessage.user("taken"))
    assert "'again' is already in the store" in hostile.human("import", "zeroclaw", str(workspace),
                                                              store=tmp_path / "other")


def test_demo_in_a_hostile_store_path(hostile: Hostile, tmp_path: Path) -> None:
    store = tmp_path / path_safe(f"demo{hostile.text}")
    assert path_safe(hostile.shown("demo")) in hostile.human("demo", store=store)


# -- JSON stays exact ---------------------------------------------------------------------------------------


def test_json_keeps_the_exact_strings(hostile: Hostile) -> None:
    text = hostile.text
    lines = hostile.run("sessions", "--json").stdout.split("\n")[:-1]  # JSON Lines; not splitlines(): U+2028 is data
    listed = {row["key"]: row for row in map(json.loads, lines)}
    assert listed[hostile.key]["name"] == f"name{text}"
    assert listed[hostile.key]["state"] == {"state": f"state{text}", "turn_id": f"turn{text}",
                                            "turn_started_at": None}
    shown = hostile.json("show", hostile.key)
    assert shown["key"] == hostile.key
    assert [(m["role"], m["content"]) for m in shown["messages"]] == [
        (f"role{text}", f"findme {text}\x00 body\nline two\tend"), ("assistant", f"final{text}")]
    lines = hostile.run("history", hostile.gone, "--json").stdout.split("\n")
    assert json.loads(lines[-2])["payload"] == {"reason": f"reason{text}"}
    replayed = [json.loads(line) for line in hostile.run("replay", hostile.key, "--json").stdout.split("\n")[:-1]]
    assert {"kind": "renamed", "from": None, "to": f"name{text}"} in replayed[-1]["changes"]
    hits = hostile.json("search", "findme", "--messages")
    assert [(hit["session_key"], hit["message"]["content"]) for hit in hits] == [
        (hostile.key, f"findme {text}\x00 body\nline two\tend")]


def test_json_is_not_escaped_for_the_terminal(hostile: Hostile) -> None:
    """JSON escapes only what JSON must (C0 controls); every other character is printed as it is stored."""
    out = hostile.run("sessions", "--json").stdout
    assert [char for char in hostile.text if char >= " " and char not in out] == []


# -- on a terminal ------------------------------------------------------------------------------------------


def test_a_terminal_gets_styles_only_and_dimmed_escapes(tmp_path: Path) -> None:
    store = tmp_path / "store"
    with SessionStore(store) as opened:
        opened.append("k\x1b]52;c;eA==\x07", ChatMessage.user("x"))
    result = CliRunner().invoke(cli, ["--store", str(store), "sessions"], env={**WIDE, "TTY_COMPATIBLE": "1"})
    assert result.exit_code == 0
    styles = re.findall(r"\x1b\[[0-9;]*m", result.stdout)
    assert styles  # drawn as on a terminal
    assert raw_characters(re.sub(r"\x1b\[[0-9;]*m", "", result.stdout)) == []
    assert "\x1b[2m\\x1b\x1b[0m]52;c;eA==\x1b[2m\\x07\x1b[0m" in result.stdout


# -- the function itself ------------------------------------------------------------------------------------


def model(text: str, *, body: bool = False) -> str:
    """Escape each unsafe character as ``ascii()`` writes it, one at a time."""
    kept = "\t\n" if body else ""
    escaped = "".join(ascii(char)[1:-1] if is_unsafe(char) and char not in kept else char for char in text)
    if not body:
        return escaped
    shown, column = [], 0  # tabs to the next multiple of 8 terminal cells, a character at a time
    for char in escaped:
        if char == "\t":
            shown.append(" " * (8 - column % 8))
            column += 8 - column % 8
        else:
            shown.append(char)
            column = 0 if char == "\n" else column + cell_len(char)
    return "".join(shown)


INTERESTING = st.sampled_from(["\x1b", "\x07", "\r", "\t", "\n", "\x7f", "\x85", "\x9b", "\u202e", "\u2066", "\u200b",
                               "\ufeff", "\u2028", "\ud800", "\udcff", "\U000e0041", "\u3164", "\\", "[", "é", "😀"])


@given(st.text(st.one_of(st.characters(), INTERESTING)), st.booleans())
@example("a\tb\x1b\tc\nd\te", True)
@example("\u2e80\t", True)  # a wide character before a tab
@example("\ud83d\ude00", False)  # a surrogate pair stays two escapes: a str holds no pairs
def test_terminal_safe_matches_the_model(text: str, body: bool) -> None:
    assert terminal_safe(text, body=body) == model(text, body=body)
    assert safe_text(text, body=body).plain == model(text, body=body)


def test_every_unsafe_character_is_escaped() -> None:
    """Across the whole of Unicode, not only the planes the implementation scans."""
    every = "".join(chr(code) for code in range(0x110000) if is_unsafe(chr(code)))
    assert len(every) > 2200
    assert terminal_safe(every) == model(every)
    assert raw_characters(terminal_safe(every)) == []


def test_ordinary_text_is_untouched() -> None:
    text = "héllo wörld 中文 😀 ∑ [bold]x[/bold] C:\\temp \\x1b  \u00a0nbsp"
    assert terminal_safe(text) == text
    assert safe_text(text).plain == text and safe_text(text).spans == []


def test_safe_text_keeps_styles_and_dims_escapes() -> None:
    result = safe_text(Text.assemble(("a\x1bb", "bold"), "c\u202e"))
    assert result.plain == "a\\x1bbc\\u202e"
    styles = {(span.start, span.end, str(span.style)) for span in result.spans}
    assert {(0, 1, "bold"), (1, 5, "bold"), (1, 5, ESCAPE_STYLE), (5, 6, "bold"), (7, 13, ESCAPE_STYLE)} <= styles
    assert not any(span.start < 7 <= span.end - 1 and str(span.style) == "bold" for span in result.spans)


def test_rich_would_drop_these_silently() -> None:
    """Why user text never goes through ``Text(...)``: rich deletes BEL, BS, VT, FF and CR from it."""
    assert Text("a\x07\x08\x0b\x0c\rb").plain == "ab"
    assert safe_text("a\x07\x08\x0b\x0c\rb").plain == r"a\x07\x08\x0b\x0c\rb"
