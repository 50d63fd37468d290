"""A catch-up of many batches: each batch reuses the pages the one before it freed, rather than grow the file, and
each batch's position is reported again once it is written.

Each batch of a long catch-up rewrites the heads of the terms it shares with the batch before. LMDB hands out the
pages a commit freed only once a later commit exists, so without a commit in between a batch could not reuse what the
batch before it freed, and took new pages at the end of the file instead.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from eventstore import ChatMessage, SessionStore, _deferred

SESSIONS = 240
BATCH = 200  # events: 15 batches


def build(path: Path) -> None:
    with SessionStore(path) as store:
        for n in range(SESSIONS):
            store.append_many(
                f"s{n}",
                [ChatMessage.user(" ".join(f"word{(m * 7 + n + w) % 60}" for w in range(9))) for m in range(12)],
            )


def caught_up_bytes(path: Path, release: bool, monkeypatch: pytest.MonkeyPatch) -> int:
    monkeypatch.setattr(_deferred, "DEFERRED_BATCH", BATCH)
    with SessionStore(path) as store:
        released: list[int] = []
        release_of = store._search._release_freed_pages

        def counted() -> None:
            released.append(1)
            if release:
                release_of()

        monkeypatch.setattr(store._search, "_release_freed_pages", counted)
        applied = store.catch_up()
        assert applied > 10 * BATCH
        assert len(released) >= 10  # once between every two batches
        assert store.verify().ok
        return store.stats().bytes


def test_a_long_catch_up_grows_the_file_less_than_without_the_release(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    build(tmp_path / "with")
    build(tmp_path / "without")
    with_release = caught_up_bytes(tmp_path / "with", True, monkeypatch)
    without_release = caught_up_bytes(tmp_path / "without", False, monkeypatch)
    assert with_release < without_release


def test_a_catch_up_reports_each_batch_again_once_it_is_written(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """So that a batch's settling and writing count with its own events in a measure of cost by position."""
    build(tmp_path / "store")
    monkeypatch.setattr(_deferred, "DEFERRED_BATCH", BATCH)
    seen: list[int | str] = []
    with SessionStore(tmp_path / "store") as store:
        write_batch = store._search._write_batch

        def noted(*arguments: object) -> bool:
            seen.append("written")
            return write_batch(*arguments)  # type: ignore[arg-type]

        monkeypatch.setattr(store._search, "_write_batch", noted)
        store.catch_up(progress=lambda done, total: seen.append(done))
    writes = [at for at, item in enumerate(seen) if item == "written"]
    assert len(writes) >= 10
    for at in writes:
        assert seen[at - 1] == seen[at + 1]  # the position the fold reached, then the same once written
    assert seen[-1] == seen[-2]  # the whole catch-up's end, reported once more by every catch-up
