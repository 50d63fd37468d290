"""Snippets that follow the query's bound, read commands on a store of the version before, and crafted events files
refused as bad files: each test failed before its fix."""

from __future__ import annotations

import io
import json
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import lmdb
import pytest
from click.testing import CliRunner

from eventstore import ChatMessage, SessionStore
from eventstore._errors import IncompatibleStore
from eventstore.cli import cli
from eventstore.cli._context import Env, user_error
from eventstore.interchange import BadExportFile, export_events, import_events
from eventstore.storage import MemoryStorage
from projections.search.planning import MAX_QUERY_TERMS

from conftest import ENGINES, open_store


@pytest.fixture(params=ENGINES)
def store(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[SessionStore]:
    with open_store(request.param, tmp_path / "store") as opened:
        yield opened


class TestSnippetsFollowTheQueryBound:
    """A word the query bound ignores is not marked in snippets either, so a long query costs each hit little.

    Before, every snippet matched all of the query's words against the message: a query of 5,000 known words
    took about 50 ms per hit (a second for the default 20 hits, half a minute for 1,000).
    """

    def test_a_word_past_the_bound_is_not_marked(self, store: SessionStore) -> None:
        counted = [f"w{number}" for number in range(MAX_QUERY_TERMS)]
        store.append_many("s", [ChatMessage.user(" ".join(counted)), ChatMessage.user("ignored w0")])
        hits = store.search_messages(" ".join([*counted, "ignored"]), 5)
        assert ["ignored [w0]"] == [hit.snippet for hit in hits if hit.index == 1]

    def test_a_word_within_the_bound_is_marked(self, store: SessionStore) -> None:
        store.append_many("s", [ChatMessage.user("alpha beta"), ChatMessage.user("gamma alpha")])
        hits = store.search_messages("gam* alpha", 5)
        assert {"[alpha] beta", "[gamma] [alpha]"} == {hit.snippet for hit in hits}


class TestReadCommandsOnAStoreOfTheVersionBefore:
    """A read command on a store that lacks a key space this version added opens it writable once (as for read
    models out of date), instead of failing with "written by a newer eventstore" until some write comes."""

    @staticmethod
    def older_store(path: Path) -> Path:
        with SessionStore(path) as store:
            store.append("alpha", ChatMessage.user("hello there"))
        environment = lmdb.open(str(path), max_dbs=64)
        with environment.begin(write=True) as txn:
            txn.drop(environment.open_db(b"search.names", txn=txn), delete=True)
        environment.close()
        return path

    def test_a_listing_upgrades_the_store_and_answers(self, tmp_path: Path) -> None:
        path = self.older_store(tmp_path / "store")
        result = CliRunner().invoke(cli, ["--store", str(path), "sessions", "--json"], catch_exceptions=False)
        assert 0 == result.exit_code, result.output
        assert ["alpha"] == [json.loads(line)["key"] for line in result.stdout.split("\n") if line]
        with SessionStore(path, readonly=True) as store:
            assert store.verify().ok

    def test_the_error_does_not_call_an_older_store_newer(self, tmp_path: Path) -> None:
        path = self.older_store(tmp_path / "store")
        with pytest.raises(IncompatibleStore) as refused:
            SessionStore(path, readonly=True)
        message = user_error(refused.value, Env.chosen_by(str(path), None)).message
        assert "newer" not in message
        assert "open it writable once" in message


class TestCraftedEventsFilesAreRefusedAsBadFiles:
    """An events file whose numbers do not fit the chain's fields, or whose hash is not hexadecimal, is a bad file
    (``BadExportFile``), not a ``struct.error`` or ``ValueError`` from inside the check."""

    @staticmethod
    def exported(tmp_path: Path, keys: list[str] | None, edit: Callable[[dict[str, Any]], None], line: int = 1
                 ) -> Path:
        """An export of two sessions (``k`` at positions 1, 2, 4, 5), its ``line``-th line (0 is the header)
        edited."""
        with SessionStore.on_storage(MemoryStorage()) as source:
            source.append_many("k", [ChatMessage.user("one"), ChatMessage.user("two")])
            source.append("other", ChatMessage.user("three"))
            source.append_many("k", [ChatMessage.user("four"), ChatMessage.user("five")])
            out = io.BytesIO()
            export_events(source, out, keys)
        lines = out.getvalue().splitlines()
        event = json.loads(lines[line])
        edit(event)
        lines[line] = json.dumps(event).encode()
        file = tmp_path / "crafted.events"
        file.write_bytes(b"\n".join(lines) + b"\n")
        return file

    @pytest.mark.parametrize("keys", [None, ["k"]])
    @pytest.mark.parametrize("field, value", [("version", -1), ("version", 2**64 - 1), ("schema_version", 2**16)])
    def test_a_number_out_of_range(self, tmp_path: Path, keys: list[str] | None, field: str, value: int) -> None:
        file = self.exported(tmp_path, keys, lambda event: event.update({field: value}))
        with SessionStore.on_storage(MemoryStorage()) as store:
            with pytest.raises(BadExportFile):
                import_events(store, file)
            assert [] == list(store.events())

    def test_a_hash_that_is_not_hexadecimal(self, tmp_path: Path) -> None:
        # Position 4 follows an event not in the file, so only position 5's check reads its hash.
        file = self.exported(tmp_path, ["k"], lambda event: event.update({"hash": "not hex"}), line=3)
        with SessionStore.on_storage(MemoryStorage()) as store:
            with pytest.raises(BadExportFile):
                import_events(store, file)
            assert [] == list(store.events())
