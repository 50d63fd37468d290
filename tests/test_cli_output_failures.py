"""Standard output that cannot be written: a full device (``> /dev/full``), a pipe whose reader went away, a closed
descriptor. Each command says in one line that its output could not be written and why, and exits non-zero; an
export to standard output says that what it wrote is incomplete (it has no trailer line, so no import takes it)."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from eventstore import ChatMessage, SessionStore
from eventstore.interchange import BadExportFile, import_events

NO_ROOM = os.strerror(28)  # ENOSPC: "No space left on device"


@pytest.fixture(scope="module")
def store_path(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A store whose export is far larger than a pipe holds, so a reader that leaves early cuts it."""
    return store_of_long_messages(tmp_path_factory.mktemp("output") / "store", sessions=4, messages=100, size=1000)


def store_of_long_messages(path: Path, *, sessions: int, messages: int, size: int) -> Path:
    """A store at ``path`` of ``sessions`` sessions of ``messages`` user messages of about ``size`` bytes."""
    with SessionStore(path, durable=False) as store:
        for session in range(sessions):
            store.append_many(f"chat/{session}", [ChatMessage.user(f"{i} " + "x" * size) for i in range(messages)])
    return path


def eventstore(store: Path, *arguments: str, stdout: str) -> subprocess.CompletedProcess[str]:
    """Run the command with standard output sent where ``stdout`` (a shell redirection) says."""
    command = " ".join([f'"{sys.executable}"', "-m", "eventstore", "--store", f'"{store}"', *arguments])
    return subprocess.run(["sh", "-c", f"exec {command} {stdout}"], capture_output=True, text=True, timeout=120)


def one_error(done: subprocess.CompletedProcess[str]) -> str:
    """The one ``Error:`` line a failed command printed (no traceback, no "Exception ignored" at exit)."""
    assert done.returncode == 1, (done.returncode, done.stderr)
    lines = done.stderr.splitlines()
    assert len(lines) == 1 and lines[0].startswith("Error: "), done.stderr
    return lines[0]


class TestFullDevice:
    def test_an_export_to_a_full_standard_output_says_so(self, store_path: Path) -> None:
        said = one_error(eventstore(store_path, "export", "--all", stdout="> /dev/full"))
        assert said == (f"Error: cannot write the export to standard output: {NO_ROOM}; what was written is "
                        "incomplete (it has no trailer line, so `eventstore import events` refuses it)")

    def test_an_export_of_some_sessions_too(self, store_path: Path) -> None:
        said = one_error(eventstore(store_path, "export", "chat/1", stdout="> /dev/full"))
        assert said.startswith(f"Error: cannot write the export to standard output: {NO_ROOM};")

    @pytest.mark.parametrize("arguments", [("sessions",), ("sessions", "--json"), ("history", "chat/1"),
                                           ("show", "chat/1")])
    def test_other_commands_say_what_they_could_not_write(self, store_path: Path, arguments: tuple[str, ...]) -> None:
        """They said "Error: No space left on device:", a sentence cut at a colon."""
        said = one_error(eventstore(store_path, *arguments, stdout="> /dev/full"))
        assert said == f"Error: cannot write to standard output: {NO_ROOM}"

    def test_an_export_to_a_file_on_a_full_device_still_reports_on_standard_output(
            self, store_path: Path, tmp_path: Path) -> None:
        """The file is whole; the report of it could not be printed, which is said, and the exit status says so."""
        target = tmp_path / "all.events.jsonl"
        said = one_error(eventstore(store_path, "export", "--all", "--out", f'"{target}"', stdout="> /dev/full"))
        assert said == f"Error: cannot write to standard output: {NO_ROOM}"
        assert target.stat().st_size > 0 and [p.name for p in tmp_path.iterdir()] == [target.name]


def test_an_export_to_a_closed_standard_output_is_refused(store_path: Path) -> None:
    """It raised AttributeError (Python sets ``sys.stdout`` to ``None`` when descriptor 1 is closed)."""
    said = one_error(eventstore(store_path, "export", "--all", stdout=">&-"))
    assert said == "Error: standard output is closed; give --out PATH to write the export to a file"


def test_a_listing_to_a_closed_standard_output_is_an_error(store_path: Path) -> None:
    """It printed nothing and exited 0, as if the listing had been shown."""
    assert one_error(eventstore(store_path, "sessions", stdout=">&-")) == "Error: standard output is closed"


def test_an_export_whose_reader_leaves_says_it_was_cut(store_path: Path, tmp_path: Path) -> None:
    """A reader that closes the pipe early (``| head``) leaves an export cut short: unlike a listing, that is said.
    What the reader got has no trailer line, so it does not import."""
    command = [sys.executable, "-m", "eventstore", "--store", str(store_path), "export", "--all"]
    with subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.PIPE) as running:
        assert running.stdout is not None and running.stderr is not None
        got = running.stdout.read(70_000)
        running.stdout.close()
        stderr = running.stderr.read().decode()
        status = running.wait(timeout=120)
    done = subprocess.CompletedProcess(command, status, "", stderr)
    said = one_error(done)
    assert said.startswith(f"Error: cannot write the export to standard output: {os.strerror(32)};")  # EPIPE
    (tmp_path / "cut.events.jsonl").write_bytes(got[:got.rindex(b"\n") + 1])
    with SessionStore(tmp_path / "copy") as copy, pytest.raises(BadExportFile, match="cut short"):
        import_events(copy, tmp_path / "cut.events.jsonl")


def test_a_listing_whose_reader_leaves_stops_quietly(store_path: Path) -> None:
    """``eventstore history KEY | head``: the reader has what it wanted; no error is printed (status 1)."""
    command = [sys.executable, "-m", "eventstore", "--store", str(store_path), "history", "chat/1", "--json"]
    with subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.PIPE) as running:
        assert running.stdout is not None and running.stderr is not None
        running.stdout.read(100)
        running.stdout.close()
        stderr = running.stderr.read().decode()
        status = running.wait(timeout=120)
    assert (status, stderr) == (1, "")
