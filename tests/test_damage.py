"""Damage to the store's files that LMDB itself would crash on, and files that went missing.

Each victim runs in a child process: a SIGBUS or an LMDB assertion (SIGABRT) kills
the process, and the test asserts that the child ended normally, with a clear
error or report and no traceback.
"""

from __future__ import annotations

import json
import os
import random
import shutil
import struct
import subprocess
import sys
import textwrap
from collections.abc import Iterator
from pathlib import Path

import lmdb
import pytest

from eventstore import (
    ChatMessage,
    SessionStore,
    StoreBusy,
    StoreCorrupted,
    StoreUsedAfterFork,
)

from conftest import raw_value

MARKER = "store.json"  # written when a store is created

PAGE = 4096


def _populate(path: Path, sessions: int = 3, rounds: int = 4) -> None:
    with SessionStore(path, durable=False, snapshot_every=5) as store:
        for round_ in range(rounds):
            for index in range(sessions):
                store.append_many(f"s{index}", [ChatMessage.user(f"round {round_} message {n} hello " + "w" * 300)
                                                for n in range(3)])
        store.delete_session("s1")


@pytest.fixture(scope="module")
def small_store(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("damage") / "store"
    _populate(path)
    return path


def _child(script: str, *args: str) -> subprocess.CompletedProcess[str]:
    """Run ``script`` in a fresh interpreter; fail the test if a signal ended it or a traceback escaped."""
    result = subprocess.run([sys.executable, "-c", textwrap.dedent(script), *args], check=False, capture_output=True,
                            text=True, timeout=600)
    assert result.returncode >= 0, f"killed by signal {-result.returncode}: {result.stderr[-500:]}"
    assert "Traceback" not in result.stderr, result.stderr[-2000:]
    return result


def _damaged_copy(source: Path, into: Path, damage: str) -> Path:
    """A copy of the store with its data file cut (``cut:BYTES``) or one page zeroed (``zero:PAGE``)."""
    into.mkdir(parents=True, exist_ok=True)
    data = bytearray((source / "data.mdb").read_bytes())
    kind, _, where = damage.partition(":")
    if kind == "cut":
        del data[int(where):]
    else:
        data[int(where) * PAGE:(int(where) + 1) * PAGE] = bytes(PAGE)
    (into / "data.mdb").write_bytes(data)
    return into


# The victim: opens each damaged copy, reads everything, verifies, then runs `eventstore verify` and
# `eventstore export` through the command line's code; prints one JSON line per copy.
VICTIM = """
    import json, sys
    from click.testing import CliRunner
    from eventstore import EventStoreError, SessionQuery, SessionStore
    from eventstore.cli import cli
    for path in sys.argv[1:]:
        print(json.dumps({"path": path, "started": True}), flush=True)
        outcome = {"path": path}
        try:
            with SessionStore(path, durable=False) as store:
                for key in store.list_sessions():
                    store.load(key); store.history(key); store.session_at(key, version=1)
                list(store.events()); store.search(SessionQuery("hello")); store.search_messages("hello")
                report = store.verify()
                outcome["library"] = "ok" if report.ok else "reported"
        except EventStoreError as exc:
            outcome["library"] = type(exc).__name__
            outcome["message"] = str(exc)
        for command in (["verify"], ["export", "--all", "--out", path + ".events"]):
            result = CliRunner().invoke(cli, ["--store", path, *command], catch_exceptions=True)
            if result.exception is not None and not isinstance(result.exception, SystemExit):
                raise result.exception
            outcome[command[0]] = [result.exit_code, result.output.strip().splitlines()[-1:]]
        print(json.dumps(outcome), flush=True)
"""


def _run_victim(copies: list[Path]) -> list[dict[str, object]]:
    result = _child(VICTIM, *map(str, copies))
    outcomes = [json.loads(line) for line in result.stdout.splitlines() if line.startswith("{")]
    return [outcome for outcome in outcomes if "started" not in outcome]


def test_every_zeroed_page_and_cut_is_refused_or_reported_never_a_crash(small_store: Path, tmp_path: Path) -> None:
    """A zeroed page at every page of a small store, and cuts at every few pages: the library, verify
    and the command line end normally; damage LMDB would read is refused or reported."""
    size = (small_store / "data.mdb").stat().st_size
    damages = [f"zero:{page}" for page in range(size // PAGE)]
    cuts = [1, PAGE + 100, 2 * PAGE, size // 2, size - PAGE, size - 1, *random.Random(12).sample(range(size), 6)]
    damages += [f"cut:{cut}" for cut in cuts]
    copies = [_damaged_copy(small_store, tmp_path / damage.replace(":", "-"), damage) for damage in damages]
    outcomes = _run_victim(copies)
    assert len(outcomes) == len(copies)
    for outcome in outcomes:
        assert outcome["library"] in ("ok", "reported", "StoreCorrupted"), outcome
        verified, export = outcome["verify"], outcome["export"]
        if outcome["library"] == "ok":  # a zeroed page that no tree reaches (a free page): nothing is lost
            assert verified[0] == 0 and export[0] == 0, outcome  # type: ignore[index]
        else:
            assert verified[0] == 1 and "damaged" in verified[1][0].lower(), outcome  # type: ignore[index]
    refused = sum(outcome["library"] == "StoreCorrupted" for outcome in outcomes)
    assert refused > len(outcomes) // 2, "most pages of a small store are in use"


def test_a_file_cut_in_half_names_the_file_and_the_cut(small_store: Path, tmp_path: Path) -> None:
    size = (small_store / "data.mdb").stat().st_size
    copy = _damaged_copy(small_store, tmp_path / "half", f"cut:{size // 2 // PAGE * PAGE}")
    result = _child("""
        import sys
        from eventstore import SessionStore, StoreCorrupted
        try:
            SessionStore(sys.argv[1])
        except StoreCorrupted as exc:
            print(exc)
    """, str(copy))
    assert str(copy / "data.mdb") in result.stdout and "cut short" in result.stdout, result.stdout


def test_damage_below_the_roots_of_a_large_store_is_found_by_verify_not_by_a_crash(tmp_path: Path) -> None:
    """A store too large to walk at every open (the child makes every store that large) opens on its root
    checks; verify walks its pages before LMDB reads them, and reports the damaged one."""
    path = tmp_path / "large"
    with SessionStore(path, durable=False) as store:
        for index in range(300):
            store.append(f"s{index % 20}", ChatMessage.user(f"message {index} " + "x" * 100))
    environment = lmdb.open(str(path), max_dbs=64, readonly=True, lock=False)
    with environment.begin() as txn:
        events = environment.open_db(b"log.events", txn=txn, create=False)
        assert txn.stat(events)["depth"] > 1, "the damaged leaf must not be the root"
        record = raw_value(txn, struct.pack(">Q", 150), events)
    environment.close()
    data = bytearray((path / "data.mdb").read_bytes())
    page = data.find(record) // PAGE
    data[page * PAGE:(page + 1) * PAGE] = bytes(PAGE)
    (path / "data.mdb").write_bytes(data)
    result = _child("""
        import sys
        from eventstore import SessionStore
        from eventstore.storage import lmdb_files
        lmdb_files._WALK_AT_OPEN_PAGES = 0
        with SessionStore(sys.argv[1]) as store:
            report = store.verify()
            print(report.ok, report.problems)
    """, str(path))
    assert result.stdout.startswith("False") and f"page {page} (of the 'log.events' database)" in result.stdout, \
        result.stdout


# -- a store that existed never silently starts over -------------------------------------------


@pytest.mark.parametrize("how", ["empty", "missing"])
def test_a_store_whose_data_file_is_gone_is_refused_not_recreated(tmp_path: Path, how: str) -> None:
    path = tmp_path / "store"
    _populate(path, sessions=1, rounds=1)
    assert (path / MARKER).is_file()
    if how == "empty":
        (path / "data.mdb").write_bytes(b"")
    else:
        (path / "data.mdb").unlink()
    for readonly in (False, True):
        with pytest.raises(StoreCorrupted) as raised:
            SessionStore(path, readonly=readonly)
        assert str(path / "data.mdb") in str(raised.value) and f"is {how}" in str(raised.value)
    assert (path / "data.mdb").exists() == (how == "empty")
    assert not (path / "data.mdb").exists() or (path / "data.mdb").stat().st_size == 0, "nothing was created"


@pytest.mark.parametrize("trace", ["lock.mdb", "users.lock"])
def test_lock_files_beside_an_empty_data_file_mean_a_store_existed(tmp_path: Path, trace: str) -> None:
    """A store made before the marker existed: its lock files tell that it existed."""
    path = tmp_path / "store"
    path.mkdir()
    (path / "data.mdb").write_bytes(b"")
    (path / trace).write_bytes(b"")
    with pytest.raises(StoreCorrupted, match=r"data\.mdb is empty"):
        SessionStore(path)


def test_a_creation_killed_before_the_data_file_existed_is_created_again(tmp_path: Path) -> None:
    """Lock files without a data file or a marker: a creation killed early, nothing committed; open creates."""
    path = tmp_path / "store"
    path.mkdir()
    for name in ("lock.mdb", "users.lock"):
        (path / name).write_bytes(b"")
    with SessionStore(path) as store:
        store.append("k", ChatMessage.user("hello"))
    with SessionStore(path) as store:
        assert [ChatMessage.user("hello")] == store.load("k")
    assert (path / MARKER).is_file()


@pytest.mark.parametrize("data_file", ["missing", "empty"])
def test_a_creation_killed_before_lmdb_wrote_its_pages_is_created_again(tmp_path: Path, data_file: str) -> None:
    """The creation note without a marker: LMDB had made (or not yet made) the data file but written nothing."""
    path = tmp_path / "store"
    path.mkdir()
    for name in ("lock.mdb", "users.lock", "creating"):
        (path / name).write_bytes(b"")
    if data_file == "empty":
        (path / "data.mdb").write_bytes(b"")
    with SessionStore(path) as store:
        store.append("k", ChatMessage.user("hello"))
    with SessionStore(path) as store:
        assert [ChatMessage.user("hello")] == store.load("k")
    assert (path / MARKER).is_file() and not (path / "creating").exists()


def test_a_creation_note_beside_a_marker_does_not_excuse_an_emptied_store(tmp_path: Path) -> None:
    path = tmp_path / "store"
    _populate(path, sessions=1, rounds=1)
    (path / "creating").write_bytes(b"")
    (path / "data.mdb").write_bytes(b"")
    with pytest.raises(StoreCorrupted, match=r"data\.mdb is empty"):
        SessionStore(path)


def test_a_finished_creation_leaves_no_note(tmp_path: Path) -> None:
    path = tmp_path / "store"
    SessionStore(path).close()
    assert (path / MARKER).is_file() and not (path / "creating").exists()


def test_an_older_store_gets_the_marker_on_its_next_writable_open(tmp_path: Path) -> None:
    path = tmp_path / "store"
    _populate(path, sessions=1, rounds=1)
    (path / MARKER).unlink()
    with SessionStore(path, readonly=True):
        assert not (path / MARKER).exists()
    with SessionStore(path):
        marker = json.loads((path / MARKER).read_text())
    assert marker["format"] == "eventstore" and len(marker["id"]) == 32


def test_cli_write_commands_refuse_an_emptied_store(tmp_path: Path) -> None:
    path = tmp_path / "store"
    _populate(path, sessions=1, rounds=1)
    (path / "data.mdb").write_bytes(b"")
    result = _child("""
        import sys
        from eventstore.cli import main
        sys.argv = ["eventstore", "--store", sys.argv[1], "delete", "s0"]
        main()
    """, str(path))
    assert result.returncode == 1 and "data.mdb is empty" in result.stderr, result.stderr
    assert (path / "data.mdb").stat().st_size == 0


# -- a full file system ---------------------------------------------------------------------------


@pytest.fixture
def tiny_file_system(tmp_path: Path) -> Iterator[Path]:
    mount = tmp_path / "tiny"
    mount.mkdir()
    mounted = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=1m", "tmpfs", str(mount)], check=False,
                             capture_output=True)
    if mounted.returncode:
        pytest.skip("cannot mount a small tmpfs here (not root?)")
    try:
        yield mount
    finally:
        subprocess.run(["umount", "-l", str(mount)], check=True)


def test_creating_a_store_on_a_full_file_system_is_store_full_not_sigbus(tiny_file_system: Path) -> None:
    filler = tiny_file_system / "filler"
    with open(filler, "wb") as file:  # leave room for the directory, not for LMDB's lock file
        file.write(b"\x01" * ((1 << 20) - 3 * PAGE))
    store = tiny_file_system / "store"
    script = """
        import sys
        from eventstore import SessionStore, StoreFull
        try:
            SessionStore(sys.argv[1])
        except StoreFull as exc:
            print("StoreFull:", exc)
    """
    result = _child(script, str(store))
    assert result.stdout.startswith("StoreFull:"), (result.stdout, result.stderr)
    filler.unlink()  # room again: the failed creation left nothing that would refuse a new one
    result = _child(script.replace('print("StoreFull:", exc)', "raise"), str(store))
    assert result.returncode == 0 and (store / MARKER).is_file()


# -- a directory replaced while the process had it open ---------------------------------------------


def test_a_replaced_store_directory_is_opened_anew(tmp_path: Path) -> None:
    path = tmp_path / "store"
    dropped = SessionStore(path)
    dropped.append("old", ChatMessage.user("in the old store"))
    del dropped  # dropped without close(): the process keeps its environment
    path.rename(tmp_path / "moved")
    with SessionStore(path) as fresh:
        assert fresh.list_sessions() == []
        fresh.append("new", ChatMessage.user("in the new store"))
    with SessionStore(path) as again:
        assert again.list_sessions() == ["new"]
    result = _child("""
        import sys
        from eventstore import SessionStore
        with SessionStore(sys.argv[1], readonly=True) as old:
            print(old.list_sessions())
    """, str(tmp_path / "moved"))
    assert result.stdout.strip() == "['old']", "the old store kept its own and got nothing of the new"


def test_a_data_file_replaced_under_an_open_lock_file_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "store"
    holder = SessionStore(path)
    holder.append("a", ChatMessage.user("x"))
    shutil.copy2(path / "data.mdb", tmp_path / "copy.mdb")
    os.replace(tmp_path / "copy.mdb", path / "data.mdb")
    try:
        with pytest.raises(StoreBusy, match="replaced"):
            SessionStore(path)
    finally:
        holder.close()


def test_vacuum_in_a_forked_child_leaves_the_parents_data_file_in_place(tmp_path: Path) -> None:
    """A child that vacuums its parent's store must be refused before it swaps in a new data file:
    the parent would go on writing into the old, unlinked one."""
    path = tmp_path / "store"
    with SessionStore(path) as store:
        store.append("a", ChatMessage.user("x"))
        inode = (path / "data.mdb").stat().st_ino
        pid = os.fork()
        if pid == 0:
            code = 1
            try:
                store.vacuum()
            except StoreUsedAfterFork:
                code = 0
            finally:
                os._exit(code)
        assert os.waitstatus_to_exitcode(os.waitpid(pid, 0)[1]) == 0, "the child's vacuum was not refused"
        assert (path / "data.mdb").stat().st_ino == inode
        store.append("a", ChatMessage.user("y"))
        assert store.verify().ok
    with SessionStore(path) as again:
        assert [message.content for message in again.load("a")] == ["x", "y"]
