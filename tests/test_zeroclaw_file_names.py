"""An export names a session's file as ZeroClaw does.

ZeroClaw's JSONL store (``SessionStore::session_path``) keeps a key's characters that Rust's
``char::is_alphanumeric`` accepts, and ``_`` and ``-``; the rest become ``_``. Rust accepts more than Python's
``str.isalnum``: the combining marks Unicode counts as alphabetic (Thai and Devanagari vowel signs, an Arabic vowel
mark) and circled letters. ``ZEROCLAW_NAMES`` are the names that very code, compiled with rustc 1.95, made of each
key; an export that named such a key otherwise left ZeroClaw looking for its file under another name.
"""

from __future__ import annotations

import bisect
import itertools
from pathlib import Path

import pytest

from eventstore import ChatMessage, SessionStore
from eventstore.zeroclaw import export_jsonl, read_jsonl, sanitize_key
from eventstore.zeroclaw._rust_alphanumeric import RANGES, is_alphanumeric

ZEROCLAW_NAMES = {
    "\u0e2a\u0e27\u0e31\u0e2a\u0e14\u0e35": "\u0e2a\u0e27\u0e31\u0e2a\u0e14\u0e35",  # Thai: two vowel signs
    "\u0928\u092e\u0938\u094d\u0924\u0947": "\u0928\u092e\u0938_\u0924\u0947",  # Devanagari: the virama is no letter
    "\u24b6lice": "\u24b6lice",  # a circled letter
    "\u0645\u064e\u0631\u062d\u0628\u0627": "\u0645\u064e\u0631\u062d\u0628\u0627",  # Arabic: a vowel mark
    "e\u0301": "e_",  # a combining acute accent is no letter
    "x\u00b2": "x\u00b2",  # a superscript digit is a number
    "\u01c5": "\u01c5",  # a title-case letter
    "slack/thread:123/user": "slack_thread_123_user",
    "a.b c": "a_b_c",
}


@pytest.mark.parametrize("key", ZEROCLAW_NAMES)
def test_a_key_is_sanitized_as_zeroclaw_does(key: str) -> None:
    assert ZEROCLAW_NAMES[key] == sanitize_key(key)


def test_an_export_writes_zeroclaw_s_own_file_and_reads_back_under_the_key(tmp_path: Path) -> None:
    keys = [key for key, name in ZEROCLAW_NAMES.items() if name == key]
    with SessionStore(tmp_path / "store", durable=False) as store:
        for number, key in enumerate(keys):
            store.append(key, ChatMessage.user(f"message {number}"))
        exported = export_jsonl(store, keys, tmp_path / "sessions")
    assert {key: f"{key}.jsonl" for key in keys} == {key: path.name for key, path in exported.written.items()}
    for number, key in enumerate(keys):
        path = tmp_path / "sessions" / f"{key}.jsonl"
        # ZeroClaw's own bytes: no line naming the key, as the file's name is the key.
        assert f'{{"role":"user","content":"message {number}"}}\n'.encode() == path.read_bytes()
        assert [key] == list(read_jsonl(path).sessions)


def test_every_character_python_calls_alphanumeric_rust_does_too() -> None:
    """Rust's set holds Python's: letters and digits of every general category Python counts."""
    missing = [code for code in range(0x110000) if chr(code).isalnum() and not is_alphanumeric(chr(code))]
    assert [] == missing


def test_the_runs_are_sorted_apart_and_in_range() -> None:
    runs = [[int(end, 16) for end in run.split("-")] for run in RANGES.split()]
    assert all(len(run) in (1, 2) and run[0] <= run[-1] for run in runs)
    assert all(before[-1] + 1 < after[0] for before, after in itertools.pairwise(runs))
    assert runs[-1][-1] <= 0x10FFFF
    firsts = [run[0] for run in runs]
    assert firsts == sorted(firsts) and bisect.bisect_left(firsts, 0x30) == 0  # the digits open the table
