"""``import events`` of a pipe or a FIFO: refused at once with the project's error, since an import reads its file
twice (to check it, then to import it). A pipe was read empty the second time ("the file is empty", after the check
had passed); a FIFO whose writer had gone waited for ever."""

from __future__ import annotations

import io
import os
import subprocess
import sys
import threading
from pathlib import Path

import pytest

from eventstore import ChatMessage, SessionStore, interchange


def _export(path: Path) -> bytes:
    with SessionStore(path, durable=False) as store:
        store.append_many("a", [ChatMessage.user("alpha"), ChatMessage.user("beta")])
        out = io.BytesIO()
        interchange.export_events(store, out)
    return out.getvalue()


def test_a_pipe_is_refused_as_not_a_regular_file(tmp_path: Path) -> None:
    exported = _export(tmp_path / "source")
    read_end, write_end = os.pipe()

    def write() -> None:
        os.write(write_end, exported)
        os.close(write_end)

    writer = threading.Thread(target=write)
    writer.start()
    try:
        with SessionStore(tmp_path / "copy", durable=False) as store:
            with pytest.raises(interchange.BadExportFile, match="a FIFO, not a regular file"):
                interchange.import_events(store, f"/dev/fd/{read_end}")
            assert list(store.events()) == []
    finally:
        writer.join()
        os.close(read_end)


def test_the_command_refuses_a_fifo_without_waiting_for_a_writer(tmp_path: Path) -> None:
    fifo = tmp_path / "backup.events.jsonl"
    os.mkfifo(fifo)
    command = [sys.executable, "-m", "eventstore", "--store", str(tmp_path / "copy"), "import", "events", str(fifo)]
    done = subprocess.run(command, capture_output=True, text=True, timeout=60)
    assert done.returncode == 1
    assert done.stderr.startswith("Error: ") and "a FIFO, not a regular file" in done.stderr
    assert "Traceback" not in done.stderr
