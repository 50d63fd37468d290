"""A workspace or events file whose path is not UTF-8 imports, and a second import adds nothing.

An import receipt names its source by path, and the store keeps only valid
text. A path holding bytes that are not UTF-8 (lone surrogates in Python) made
every source of such a workspace fail ("source is not valid Unicode"), and
``import events`` of such a file stop with that error: the data could not be
imported at all.
"""

from __future__ import annotations

import os
from pathlib import Path

from eventstore import ChatMessage, SessionStore
from eventstore.interchange import export_events, import_events
from eventstore.zeroclaw import import_workspace


def test_a_workspace_under_a_name_that_is_not_utf8(tmp_path: Path) -> None:
    workspace = tmp_path / os.fsdecode(b"ws-\xff")
    (workspace / "sessions").mkdir(parents=True)
    (workspace / "sessions" / "k.jsonl").write_bytes(b'{"role":"user","content":"hello"}\n')
    with SessionStore(tmp_path / "store") as store:
        assert [r.status for r in import_workspace(store, workspace).sources] == ["imported"]
        assert [m.content for m in store.load("k")] == ["hello"]
        assert [r.status for r in import_workspace(store, workspace).sources] == ["unchanged"]
        assert [r.source for r in store.import_receipts()] == [str(tmp_path / "ws-\\xff" / "sessions" / "k.jsonl")]


def test_an_events_file_under_a_name_that_is_not_utf8(tmp_path: Path) -> None:
    file = tmp_path / os.fsdecode(b"events-\xfe.jsonl")
    with SessionStore(tmp_path / "source") as source, open(file, "wb") as out:
        source.append("k", ChatMessage.user("hello"))
        export_events(source, out, ["k"])
    with SessionStore(tmp_path / "copy") as copy:
        assert import_events(copy, file).events == 1
        assert import_events(copy, file).already_present == 1
        assert [m.content for m in copy.load("k")] == ["hello"]
