"""A session's run in the stream index (``log.streams``) whose count of events is damaged to billions: the work that
goes a version at a time up to the session's version (a snapshot due at each multiple of ``snapshot_every``) is
refused at once, not done for each version the count names (a list of 17 million snapshot targets, or 4 billion
with ``snapshot_every=1``, built before the first fold met the damage), and ``verify`` names the log."""

from __future__ import annotations

import bisect
import struct
import types
from collections.abc import Callable
from pathlib import Path

import pytest

from eventstore import ChatMessage, SessionStore, StoreCorrupted

from _damage import change_value

_STREAM_KEY = struct.Struct(">QQ")
_RUN = struct.Struct(">QI")
_DAMAGED_COUNT = 2**32 - 1


def _rebuild_messages(path: Path) -> None:
    with SessionStore(path, durable=False) as store:
        store.rebuild_projections(["messages"])


def _open_with_snapshots_due(path: Path) -> None:
    """An open that takes the snapshots the store lacks (once, as for a store an older version wrote)."""
    change_value(path, b"projections.checkpoints", b"snapshots", lambda _: b"")
    SessionStore(path, durable=False).close()


def _redact(path: Path) -> None:
    with SessionStore(path, durable=False) as store, pytest.raises(StoreCorrupted, match="stream index"):
        store.redact("a", "asked to")


COMMANDS: dict[str, Callable[[Path], None]] = {
    "rebuild_projections": _rebuild_messages,
    "open with snapshots due": _open_with_snapshots_due,
    "redact": _redact,
}


@pytest.mark.parametrize("command", sorted(COMMANDS))
def test_a_run_counted_past_the_log_takes_no_snapshot_target_for_each_version_it_names(
        tmp_path: Path, command: str, monkeypatch: pytest.MonkeyPatch) -> None:
    path = tmp_path / "store"
    with SessionStore(path, durable=False) as store:
        store.append_many("a", [ChatMessage.user(word) for word in ("alpha", "beta", "gamma")])
        store.append("b", ChatMessage.user("delta"))
    change_value(path, b"log.streams", _STREAM_KEY.pack(1, 1), lambda _: _RUN.pack(1, _DAMAGED_COUNT))
    looks: list[int] = []

    def bisect_right(held: list[int], target: int) -> int:
        looks.append(target)
        return bisect.bisect_right(held, target)

    # derive_snapshots tests each snapshot target it considers against the snapshots held by two of these.
    monkeypatch.setattr("eventstore._folding.bisect", types.SimpleNamespace(bisect_right=bisect_right))
    COMMANDS[command](path)
    assert len(looks) <= 2  # the versions the log holds (none due at 250), not the 17 million the count names
    with SessionStore(path, durable=False) as store:
        report = store.verify()
        assert not report.ok and "log" in report.damaged
        assert store.load("b") == [ChatMessage.user("delta")]
