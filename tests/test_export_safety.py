"""Exports never write outside their directory, never leave a partial file, and choose names that cannot fail.

Hostile directories: symbolic links planted at the targets (dangling, to a file
outside, to a directory), keys longer than a file name may be, keys that differ
only in case, and a disk that fills up in the middle of a write.
"""

from __future__ import annotations

import errno
import hashlib
import json
import os
from collections.abc import Callable
from pathlib import Path

import pytest
from click.testing import CliRunner, Result

from eventstore import ChatMessage, SessionStore
from eventstore._files import UnsafeTarget, WriteFailed, atomic_file
from eventstore.cli import cli
from eventstore.zeroclaw import (
    MANIFEST_NAME,
    MAX_NAME_BYTES,
    export_jsonl,
    import_workspace,
    plan_file_names,
    read_jsonl,
    sanitize_key,
)

LONG_KEY = "telegram:" + "é" * 200  # 409 UTF-8 bytes: no file name can hold it
CASE_KEYS = ["Alice", "alice"]


def run(*args: str) -> Result:
    return CliRunner().invoke(cli, list(args), catch_exceptions=False)


def tree(root: Path) -> dict[str, str]:
    """Every entry under ``root``: a file's SHA-256, a link's target, or "dir"."""
    found = {}
    for path in sorted(root.rglob("*")):
        name = str(path.relative_to(root))
        if path.is_symlink():
            found[name] = "-> " + os.readlink(path)
        elif path.is_dir():
            found[name] = "dir"
        else:
            found[name] = hashlib.sha256(path.read_bytes()).hexdigest()
    return found


def zeroclaw_load(sessions: Path, key: str) -> list[dict[str, str]]:
    """ZeroClaw's JSONL ``load``: the file of the sanitized key, lines trimmed, blank or non-message lines
    skipped (a line is a message when ``role`` and ``content`` are strings; other fields are ignored)."""
    path = sessions / f"{sanitize_key(key)}.jsonl"
    messages = []
    for line in path.read_bytes().decode().split("\n"):
        try:
            data = json.loads(line.strip())
        except ValueError:
            continue
        if isinstance(data, dict) and isinstance(data.get("role"), str) and isinstance(data.get("content"), str):
            messages.append({"role": data["role"], "content": data["content"]})
    return messages


@pytest.fixture
def store_path(tmp_path: Path) -> Path:
    path = tmp_path / "store"
    with SessionStore(path) as store:
        store.append("chat/1", ChatMessage.user("hello"))
        store.append("chat/1", ChatMessage.assistant("hi"))
        store.append("plain", ChatMessage.user("plain key"))
        store.append(LONG_KEY, ChatMessage.user("long key"))
        for key in CASE_KEYS:
            store.append(key, ChatMessage.user(f"I am {key}"))
    return path


@pytest.fixture
def outside(tmp_path: Path) -> Path:
    """A directory outside the export's, with a file a planted link may point at."""
    path = tmp_path / "outside"
    path.mkdir()
    (path / "victim.txt").write_bytes(b"precious\n")
    return path


class TestPlantedSymlinks:
    @pytest.mark.parametrize("force", [False, True])
    @pytest.mark.parametrize("target", ["missing.txt", "victim.txt", "."], ids=["dangling", "file", "directory"])
    def test_jsonl_export_never_follows_a_link(self, store_path: Path, tmp_path: Path, outside: Path,
                                               target: str, force: bool) -> None:
        out = tmp_path / "out"
        out.mkdir()
        (out / "chat_1.jsonl").symlink_to(outside / target)
        before = tree(tmp_path / "outside")
        result = run("--store", str(store_path), "export", "chat/1", "--format", "jsonl", "--out", str(out),
                     *(["--force"] if force else []))
        assert result.exit_code == 1
        assert f"not written: 'chat/1': {out / 'chat_1.jsonl'} is a symbolic link; it is neither followed " \
               "nor replaced" in result.stdout
        assert tree(tmp_path / "outside") == before
        assert os.readlink(out / "chat_1.jsonl") == str(outside / target)
        assert sorted(p.name for p in out.iterdir()) == ["chat_1.jsonl"]  # no manifest: nothing was written

    def test_other_keys_are_still_written(self, store_path: Path, tmp_path: Path, outside: Path) -> None:
        out = tmp_path / "out"
        out.mkdir()
        (out / "chat_1.jsonl").symlink_to(outside / "missing.txt")
        with SessionStore(store_path) as store:
            result = export_jsonl(store, ["chat/1", "plain"], out, overwrite=True)
        assert list(result.written) == ["plain"]
        assert list(result.not_written) == ["chat/1"]
        assert json.loads((out / MANIFEST_NAME).read_bytes())["sessions"] == {"plain": "plain.jsonl"}
        assert not (outside / "missing.txt").exists()

    def test_fifo_at_a_target_is_refused(self, store_path: Path, tmp_path: Path) -> None:
        out = tmp_path / "out"
        out.mkdir()
        os.mkfifo(out / "plain.jsonl")
        with SessionStore(store_path) as store:
            result = export_jsonl(store, ["plain"], out, overwrite=True)
        assert result.not_written == {"plain": f"{out / 'plain.jsonl'} is a FIFO; it is neither followed nor "
                                                "replaced"}

    def test_link_at_the_manifest_refuses_the_export(self, store_path: Path, tmp_path: Path,
                                                     outside: Path) -> None:
        out = tmp_path / "out"
        out.mkdir()
        (out / MANIFEST_NAME).symlink_to(outside / "victim.txt")
        with SessionStore(store_path) as store, pytest.raises(UnsafeTarget, match="is a symbolic link"):
            export_jsonl(store, ["plain"], out, overwrite=True)
        assert sorted(p.name for p in out.iterdir()) == [MANIFEST_NAME]
        assert (outside / "victim.txt").read_bytes() == b"precious\n"

    @pytest.mark.parametrize("force", [False, True])
    @pytest.mark.parametrize("target", ["missing.txt", "victim.txt"], ids=["dangling", "file"])
    def test_events_export_never_follows_a_link(self, store_path: Path, tmp_path: Path, outside: Path,
                                                target: str, force: bool) -> None:
        link = tmp_path / "backup.events.jsonl"
        link.symlink_to(outside / target)
        before = tree(outside)
        result = run("--store", str(store_path), "export", "--all", "--out", str(link),
                     *(["--force"] if force else []))
        assert result.exit_code == 1
        assert result.stderr == f"Error: {link} is a symbolic link; it is neither followed nor replaced\n"
        assert tree(outside) == before
        assert link.is_symlink()

    def test_events_export_replaces_a_regular_file_only_with_force(self, store_path: Path, tmp_path: Path) -> None:
        target = tmp_path / "backup.events.jsonl"
        target.write_bytes(b"old\n")
        result = run("--store", str(store_path), "export", "--all", "--out", str(target))
        assert result.stderr == f"Error: {target} exists; pass --force to replace it\n"
        assert target.read_bytes() == b"old\n"
        assert run("--store", str(store_path), "export", "--all", "--out", str(target), "--force").exit_code == 0
        assert json.loads(target.read_bytes().split(b"\n")[0])["format"] == "eventstore.events"


class TestFileNames:
    def test_names_fit_and_differ_up_to_case(self) -> None:
        keys = ["plain", "chat/1", "chat:1", LONG_KEY, "x" * 1000, *CASE_KEYS, "e\u0301", "\u00e9"]
        names = plan_file_names(keys)
        assert names["plain"] == "plain.jsonl"  # unique and short: ZeroClaw's own name
        assert all(len(os.fsencode(name)) <= MAX_NAME_BYTES for name in names.values())
        caseless = [name.casefold() for name in names.values()]
        assert len(set(caseless)) == len(keys)
        for key in ["chat/1", "chat:1", *CASE_KEYS, LONG_KEY, "x" * 1000]:  # shared or too long: hashed
            assert names[key] != f"{sanitize_key(key)}.jsonl"
            assert names[key].endswith(hashlib.sha256(key.encode()).hexdigest()[:32] + ".jsonl")
        assert names["e\u0301"] != names["\u00e9"]  # the same name on a normalizing file system: hashed

    def test_long_and_case_keys_export_and_come_back(self, store_path: Path, tmp_path: Path) -> None:
        """Every key is written under a name that fits; its file and the manifest carry the real key, and an
        import of the directory gives back every session under its real key."""
        out = tmp_path / "ws" / "sessions"
        result = run("--store", str(store_path), "export", "--all", "--format", "jsonl", "--out", str(out), "--json")
        assert result.exit_code == 0, result.output
        files = json.loads(result.stdout)["files"]
        manifest = json.loads((out / MANIFEST_NAME).read_bytes())["sessions"]
        assert manifest == {key: Path(path).name for key, path in files.items()}
        assert len(os.listdir(out)) == 6  # five sessions and the manifest
        with SessionStore(store_path) as store:
            for key, name in manifest.items():
                assert [e.message for _, e in read_jsonl(out / name).sessions[key]] == store.load(key)
            with SessionStore(tmp_path / "copy") as copy:
                imported = import_workspace(copy, tmp_path / "ws")
                assert imported.sessions == 5
                assert {k: copy.load(k) for k in copy.list_sessions()} == {
                    k: store.load(k) for k in store.list_sessions()}

    def test_zeroclaw_reads_what_keeps_its_names(self, store_path: Path, tmp_path: Path) -> None:
        out = tmp_path / "sessions"
        run("--store", str(store_path), "export", "chat/1", "plain", "--format", "jsonl", "--out", str(out))
        with SessionStore(store_path) as store:
            for key in ["chat/1", "plain"]:
                assert zeroclaw_load(out, key) == [{"role": m.role, "content": m.content} for m in store.load(key)]
        assert (out / "plain.jsonl").read_bytes() == b'{"role":"user","content":"plain key"}\n'  # ZeroClaw's bytes

    def test_manifest_keeps_earlier_exports(self, store_path: Path, tmp_path: Path) -> None:
        out = tmp_path / "out"
        run("--store", str(store_path), "export", "chat/1", "--format", "jsonl", "--out", str(out))
        run("--store", str(store_path), "export", "plain", "--format", "jsonl", "--out", str(out))
        assert json.loads((out / MANIFEST_NAME).read_bytes())["sessions"] == {
            "chat/1": "chat_1.jsonl", "plain": "plain.jsonl"}


def fail_after(limit: int) -> Callable[[int, object], int]:
    """An ``os.write`` that writes ``limit`` bytes in all, then fails as a full disk does."""
    real_write = os.write
    left = [limit]

    def write(fd: int, data: object) -> int:
        view = memoryview(data)  # type: ignore[arg-type]
        if left[0] <= 0:
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
        written = real_write(fd, view[: left[0]])
        left[0] -= written
        return written

    return write


class TestFullDisk:
    @pytest.mark.parametrize("limit", [0, 10, 45])
    def test_jsonl_export_leaves_no_partial_file(self, store_path: Path, tmp_path: Path,
                                                 monkeypatch: pytest.MonkeyPatch, limit: int) -> None:
        """The disk fills during some file: files finished before it stay whole; nothing else is left."""
        out = tmp_path / "out"
        out.mkdir()
        (out / "chat_1.jsonl").write_bytes(b"kept\n")
        before = tree(tmp_path / "store")
        with SessionStore(store_path) as store:
            expected = {key: store.load(key) for key in ["plain", "chat/1"]}
            monkeypatch.setattr(os, "write", fail_after(limit))
            with pytest.raises(WriteFailed) as raised:
                export_jsonl(store, ["plain", "chat/1"], out, overwrite=True)
            monkeypatch.undo()
        assert raised.value.errno == errno.ENOSPC
        assert "No space left on device" in str(raised.value)
        names = sorted(p.name for p in out.iterdir())
        assert names in (["chat_1.jsonl"], ["chat_1.jsonl", "plain.jsonl"])  # no temporary, no manifest
        assert (out / "chat_1.jsonl").read_bytes() == b"kept\n"  # the file being replaced is untouched
        if "plain.jsonl" in names:
            assert [e.message for _, e in read_jsonl(out / "plain.jsonl").sessions["plain"]] == expected["plain"]
        assert all(p.stat().st_size > 0 for p in out.iterdir())
        assert tree(tmp_path / "store") == before

    def test_events_export_leaves_nothing(self, store_path: Path, tmp_path: Path,
                                          monkeypatch: pytest.MonkeyPatch) -> None:
        target = tmp_path / "dump" / "all.events.jsonl"
        target.parent.mkdir()
        monkeypatch.setattr(os, "write", fail_after(100))
        result = CliRunner().invoke(cli, ["--store", str(store_path), "export", "--all", "--out", str(target)])
        monkeypatch.undo()
        assert result.exit_code == 1
        assert result.stderr == f"Error: cannot write {target}: No space left on device\n"
        assert list(target.parent.iterdir()) == []

    def test_an_error_in_the_block_keeps_the_old_file(self, tmp_path: Path) -> None:
        target = tmp_path / "file"
        target.write_bytes(b"old")
        with pytest.raises(KeyError), atomic_file(target, replace=True) as stream:
            stream.write(b"new, half written")
            raise KeyError("the producer failed")
        assert sorted(os.listdir(tmp_path)) == ["file"]
        assert target.read_bytes() == b"old"
