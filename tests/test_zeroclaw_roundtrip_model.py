"""A ZeroClaw JSONL export imported back gives the sessions it was made from, whatever their keys.

The model is a plain dict of key to messages. Keys come from every Unicode
category but surrogates, and from a list of keys that file names mistreat:
path separators and ``..``, names equal up to case or normalization, keys
whose ZeroClaw name is another key, the manifest's name, overlong keys.
Nothing may be written outside the export directory.
"""

from __future__ import annotations

import tempfile
from pathlib import Path

from hypothesis import given
from hypothesis import strategies as st

from eventstore import ChatMessage, SessionStore
from eventstore.storage import MemoryStorage
from eventstore.zeroclaw import export_jsonl, import_workspace

AWKWARD_KEYS = ["..", ".", "/", "a/../b", "../x", "a\\b", "A", "a", "ß", "SS", "ss", "é", "e\u0301", "ﬁ", "fi",
                "Ⅸ", "ix", "İ", "i̇", "_", "-", "a b", "a_b", "eventstore-manifest", "x" * 300, "é" * 200,
                "สวัสดี", "\u2028", "\n", "~", "CON", "nul", ".jsonl", "k.jsonl", " ", "\t\r"]


def storable(key: str) -> bool:
    return "\x00" not in key and len(key.encode()) <= 1024


keys = st.sampled_from(AWKWARD_KEYS) | st.text(st.characters(exclude_categories=["Cs"]), min_size=1,
                                               max_size=30).filter(storable)
texts = st.text(st.characters(exclude_categories=["Cs"]), max_size=20)
messages = st.lists(st.tuples(st.sampled_from(["user", "assistant", "tool"]), texts), min_size=1, max_size=3)


@given(st.dictionaries(keys, messages, min_size=1, max_size=6))
def test_an_export_imports_back_as_the_model(model: dict[str, list[tuple[str, str]]]) -> None:
    source = SessionStore.on_storage(MemoryStorage())
    for key, rows in model.items():
        source.append_many(key, [ChatMessage(role, content) for role, content in rows])
    with tempfile.TemporaryDirectory() as scratch:
        root = Path(scratch)
        exported = export_jsonl(source, list(model), root / "ws" / "sessions")
        assert exported.not_written == {}
        assert all(path.relative_to(root).parts[:2] == ("ws", "sessions") for path in root.rglob("*")
                   if path.is_file())
        copy = SessionStore.on_storage(MemoryStorage())
        imported = import_workspace(copy, root / "ws")
        assert {r.status for r in imported.sources} == {"imported"}
        assert sorted(copy.list_sessions()) == sorted(model)
        for key, rows in model.items():
            assert [(m.role, m.content) for m in copy.load(key)] == rows
