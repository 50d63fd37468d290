"""An export killed midway (SIGKILL: no handler runs) leaves its temporary file beside the target; the next write
into that directory removes it, and nothing else: not a file of another name, a link, a directory, a FIFO, nor the
temporary file of a write still under way."""

from __future__ import annotations

import errno
import fcntl
import os
import signal
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
from click.testing import CliRunner

from eventstore._files import atomic_file, atomic_write, open_directory, remove_abandoned
from eventstore.cli import cli
from eventstore.interchange import check_events_file

from test_cli_output_failures import store_of_long_messages

#: The name a write's temporary file has (``eventstore/_files.py``), with a fixed token.
LEFTOVER = ".eventstore-0123456789abcdef.tmp"

#: Runs the command line given in ``sys.argv[1:]``, and stops for good after its first write to a temporary file,
#: having said so on stderr: the parent kills it there.
_STOPS_MIDWAY = textwrap.dedent("""
    import os, sys, time
    real_write = os.write

    def write(fd, data):
        written = real_write(fd, data)
        if os.path.basename(os.readlink(f"/proc/self/fd/{fd}")).startswith(".eventstore-"):
            sys.stderr.write("midway\\n")
            sys.stderr.flush()
            time.sleep(600)
        return written

    os.write = write
    from eventstore.cli import main
    sys.argv = ["eventstore", *sys.argv[1:]]
    main()
""")


@pytest.fixture(scope="module")
def store_path(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return store_of_long_messages(tmp_path_factory.mktemp("killed") / "store", sessions=3, messages=200, size=500)


def killed_midway(*arguments: str) -> None:
    """Run ``eventstore ARGUMENTS`` and SIGKILL it once it has written part of a temporary file."""
    with subprocess.Popen([sys.executable, "-c", _STOPS_MIDWAY, *arguments], stderr=subprocess.PIPE,
                          stdout=subprocess.DEVNULL) as running:
        assert running.stderr is not None
        assert running.stderr.readline() == b"midway\n", running.stderr.read()
        os.kill(running.pid, signal.SIGKILL)
        assert running.wait(timeout=60) == -signal.SIGKILL


def temporaries(directory: Path) -> list[str]:
    return sorted(path.name for path in directory.iterdir() if path.name.startswith(".eventstore-"))


def run(*arguments: str) -> None:
    result = CliRunner().invoke(cli, list(arguments), catch_exceptions=False)
    assert result.exit_code == 0, result.output


class TestKilledExports:
    def test_an_events_export_killed_midway_is_cleaned_up_by_the_next(self, store_path: Path,
                                                                      tmp_path: Path) -> None:
        target = tmp_path / "all.events.jsonl"
        killed_midway("--store", str(store_path), "export", "--all", "--out", str(target))
        left = temporaries(tmp_path)
        assert len(left) == 1 and not target.exists()  # the kill left its temporary file, and no target
        assert (tmp_path / left[0]).stat().st_size > 0
        run("--store", str(store_path), "export", "--all", "--out", str(target))
        assert temporaries(tmp_path) == [] and check_events_file(target).events == 600

    def test_a_jsonl_export_killed_midway_is_cleaned_up_by_the_next(self, store_path: Path, tmp_path: Path) -> None:
        out = tmp_path / "sessions"
        killed_midway("--store", str(store_path), "export", "--all", "--format", "jsonl", "--out", str(out))
        assert len(temporaries(out)) == 1
        run("--store", str(store_path), "export", "--all", "--format", "jsonl", "--out", str(out), "--force")
        assert temporaries(out) == []
        assert sorted(p.name for p in out.iterdir()) == ["chat_0.jsonl", "chat_1.jsonl", "chat_2.jsonl",
                                                          "eventstore-manifest.json"]

    def test_a_salvage_killed_midway_is_cleaned_up_by_the_next(self, store_path: Path, tmp_path: Path) -> None:
        target = tmp_path / "salvaged.events.jsonl"
        killed_midway("--store", str(store_path), "salvage", "--out", str(target))
        assert len(temporaries(tmp_path)) == 1
        run("--store", str(store_path), "salvage", "--out", str(target))
        assert temporaries(tmp_path) == [] and check_events_file(target).events == 600


def test_only_the_abandoned_temporary_files_are_removed(tmp_path: Path) -> None:
    """What the sweep must never touch: another name, a link of the temporaries' name (to a file outside, which
    stays whole), a directory and a FIFO of that name, and a temporary file whose write is under way."""
    outside = tmp_path / "outside"
    outside.write_bytes(b"the user's")
    out = tmp_path / "out"
    out.mkdir()
    (out / ".eventstore-notes.tmp").write_bytes(b"a user's file")
    (out / ".eventstore-0123456789ABCDEF.tmp").write_bytes(b"not a token this code makes")
    (out / LEFTOVER).write_bytes(b"abandoned")
    (out / ".eventstore-1111111111111111.tmp").symlink_to(outside)
    (out / ".eventstore-2222222222222222.tmp").mkdir()
    os.mkfifo(out / ".eventstore-3333333333333333.tmp")
    with open_directory(out) as directory_fd, atomic_write(directory_fd, "first", out / "first",
                                                           replace=False) as first:
        first.write(b"being written")
        first.flush()
        under_way = [name for name in temporaries(out) if name not in {
            ".eventstore-notes.tmp", ".eventstore-0123456789ABCDEF.tmp", ".eventstore-1111111111111111.tmp",
            ".eventstore-2222222222222222.tmp", ".eventstore-3333333333333333.tmp"}]
        assert len(under_way) == 1  # the first write's own (the leftover went when its directory was opened)
        with atomic_file(out / "second", replace=False) as second:
            second.write(b"second")
        assert under_way[0] in temporaries(out)
    assert (out / "first").read_bytes() == b"being written" and (out / "second").read_bytes() == b"second"
    assert temporaries(out) == [".eventstore-0123456789ABCDEF.tmp", ".eventstore-1111111111111111.tmp",
                                ".eventstore-2222222222222222.tmp", ".eventstore-3333333333333333.tmp",
                                ".eventstore-notes.tmp"]
    assert outside.read_bytes() == b"the user's"


def test_a_temporary_file_swept_before_its_write_locks_it_is_replaced(tmp_path: Path,
                                                                       monkeypatch: pytest.MonkeyPatch) -> None:
    """A sweep may take a new temporary file between its creation and its write's lock: the write takes another."""
    real_flock = fcntl.flock
    swept: list[int] = []

    def flock(fd: int, operation: int) -> None:
        if operation == fcntl.LOCK_EX and not swept:  # the write's first lock: a sweep runs just before it
            directory_fd = os.open(tmp_path, os.O_RDONLY | os.O_DIRECTORY)
            swept.append(remove_abandoned(directory_fd))
            os.close(directory_fd)
        real_flock(fd, operation)

    monkeypatch.setattr(fcntl, "flock", flock)
    with atomic_file(tmp_path / "file", replace=False) as stream:
        stream.write(b"whole")
    assert swept == [1]
    assert sorted(os.listdir(tmp_path)) == ["file"] and (tmp_path / "file").read_bytes() == b"whole"


def test_without_flock_nothing_is_swept(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A file system that cannot lock: no write can be told from an abandoned one, so none is removed."""
    def flock(fd: int, operation: int) -> None:
        raise OSError(errno.ENOLCK, os.strerror(errno.ENOLCK))

    (tmp_path / LEFTOVER).write_bytes(b"abandoned, or not")
    monkeypatch.setattr(fcntl, "flock", flock)
    with atomic_file(tmp_path / "file", replace=False) as stream:
        stream.write(b"whole")
    assert sorted(os.listdir(tmp_path)) == [LEFTOVER, "file"] and (tmp_path / "file").read_bytes() == b"whole"


def test_a_directory_that_cannot_be_listed_is_still_written_into(tmp_path: Path,
                                                                  monkeypatch: pytest.MonkeyPatch) -> None:
    """The sweep is housekeeping: a directory it cannot list (write and search permission without read) keeps its
    leftovers, and the write goes on."""
    def scandir(path: object) -> None:
        raise PermissionError(errno.EACCES, os.strerror(errno.EACCES))

    (tmp_path / LEFTOVER).write_bytes(b"abandoned")
    monkeypatch.setattr(os, "scandir", scandir)
    with atomic_file(tmp_path / "file", replace=False) as stream:
        stream.write(b"whole")
    monkeypatch.undo()
    assert sorted(os.listdir(tmp_path)) == [LEFTOVER, "file"] and (tmp_path / "file").read_bytes() == b"whole"
