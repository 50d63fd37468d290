"""``eventstore verify`` names the command that repairs each kind of damage: salvage for the log or the data file,
a rebuild of the damaged read model for read-model damage (the log is sound then, and salvage loses nothing but
would be the long way round), and a writable open for one damaged copy of the compression dictionary.
"""

from __future__ import annotations

import json
import struct
from collections.abc import Callable
from pathlib import Path

import lmdb
import pytest
from click.testing import CliRunner, Result

from eventstore import ChatMessage, SessionStore, _log
from eventstore.cli import cli

from test_tamper import editing

PAGE = 4096


def _store(path: Path) -> Path:
    with SessionStore(path, durable=False, snapshot_every=3) as store:
        for index in range(12):
            store.append(f"k{index % 3}", ChatMessage.user(f"hello river {index} " + "words " * 60))
        store.catch_up()  # the search index is written, so damage to it is damage to what is stored
        assert store.verify().ok
    return path


def _first_entry(path: Path, database: bytes) -> tuple[bytes, bytes]:
    with editing(path, database) as txn:
        key, value = next(iter(txn.cursor()))
        return bytes(key), bytes(value)


def _delete_first(database: bytes) -> Callable[[Path], None]:
    def damage(path: Path) -> None:
        key, _ = _first_entry(path, database)
        with editing(path, database) as txn:
            txn.delete(key)
    return damage


def _flip_last_byte(database: bytes) -> Callable[[Path], None]:
    def damage(path: Path) -> None:
        key, value = _first_entry(path, database)
        with editing(path, database) as txn:
            txn.put(key, value[:-1] + bytes([value[-1] ^ 0x01]))
    return damage


def _zero_an_event_page(path: Path) -> None:
    data = bytearray((path / "data.mdb").read_bytes())
    environment = lmdb.open(str(path), max_dbs=64, readonly=True, lock=False)
    with environment.begin() as txn:
        record = txn.get(struct.pack(">Q", 5), db=environment.open_db(b"log.events", txn=txn, create=False))
    environment.close()
    assert record is not None
    page = data.find(bytes(record)) // PAGE
    data[page * PAGE:(page + 1) * PAGE] = bytes(PAGE)
    (path / "data.mdb").write_bytes(data)


def _run(path: Path, *args: str) -> Result:
    return CliRunner().invoke(cli, ["--store", str(path), *args], catch_exceptions=False)


#: (kind of damage, how to make it, what verify reports as damaged, the repair it names, and one it must not).
#: A changed event also changes the sessions folded from the log, so the read models differ from them too.
KINDS = [
    ("catalog", _delete_first(b"catalog.sessions"), ["catalog"], "`eventstore rebuild --only catalog`",
     "`eventstore salvage"),
    ("messages", _delete_first(b"messages.chunks"), ["messages"], "`eventstore rebuild --only messages`",
     "`eventstore salvage"),
    ("snapshot", _flip_last_byte(b"snapshots"), ["messages"], "`eventstore rebuild --only messages`",
     "`eventstore salvage"),
    ("search index", _flip_last_byte(b"search.sessions"), ["search"], "`eventstore rebuild --only search`",
     "`eventstore salvage"),
    ("event record", _flip_last_byte(b"log.events"), ["catalog", "log", "messages", "search"],
     "`eventstore salvage --out FILE`", "`eventstore rebuild"),
    ("stream index", _delete_first(b"log.streams"), ["log"], "`eventstore salvage --out FILE`",
     "`eventstore rebuild"),
    ("data file page", _zero_an_event_page, ["file"], "`eventstore salvage --out FILE`", "`eventstore rebuild"),
]


@pytest.mark.parametrize(("damage", "damaged", "repair", "wrong"), [kind[1:] for kind in KINDS],
                         ids=[kind[0] for kind in KINDS])
def test_verify_names_the_repair_for_the_kind_of_damage(tmp_path: Path, damage: Callable[[Path], None],
                                                        damaged: list[str], repair: str, wrong: str) -> None:
    path = _store(tmp_path / "store")
    named = f"`eventstore --store {path} "  # the commands named run against the store verify was given
    repair, wrong = repair.replace("`eventstore ", named), wrong.replace("`eventstore ", named)
    damage(path)
    result = _run(path, "verify")
    assert result.exit_code == 1
    last = result.output.strip().splitlines()[-1]
    assert last.startswith("DAMAGED:") and repair in last and wrong not in last, last
    report = json.loads(_run(path, "verify", "--json").output)
    found = len(report["problems"])
    assert last.startswith(f"DAMAGED: {found} problem{'' if found == 1 else 's'} found in "), last
    assert report["damaged"] == damaged
    assert len(report["repairs"]) == 1 and repair in report["repairs"][0]
    if "rebuild" in repair:  # and the command it names does repair it, run as it is
        assert CliRunner().invoke(cli, repair.strip("`").split()[1:], catch_exceptions=False).exit_code == 0
        assert _run(path, "verify").exit_code == 0


def test_one_damaged_copy_of_the_dictionary_names_a_writable_open(tmp_path: Path,
                                                                    monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(_log, "TRAINING_EVENTS", 8)
    path = _store(tmp_path / "store")
    with editing(path, b"log.meta") as txn:
        txn.delete(b"dictionary.copy")
    report = json.loads(_run(path, "verify", "--json").output)
    assert report["damaged"] == ["dictionary"]
    assert report["repairs"] == [f"`eventstore --store {path} rebuild` (as any writable open) rewrites the damaged "
                                 "copy of the compression dictionary from the intact one"]
    assert _run(path, "rebuild").exit_code == 0
    assert _run(path, "verify").exit_code == 0


def test_a_sound_store_needs_no_repair(tmp_path: Path) -> None:
    report = json.loads(_run(_store(tmp_path / "store"), "verify", "--json").output)
    assert report == {"ok": True, "events_checked": 12, "problems": [], "damaged": [], "repairs": []}
