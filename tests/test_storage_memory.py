"""The in-memory engine (the reference semantics) against the storage conformance tests."""

from __future__ import annotations

from pathlib import Path

from storage_conformance import StorageConformance

from eventstore.storage import MemoryStorage, Storage


class TestMemoryStorage(StorageConformance):
    def make_storage(self, tmp_path: Path, *, readonly: bool = False) -> Storage:
        # One store per path for the test's life, as on disk: opening the path again shares its contents.
        stores: dict[Path, MemoryStorage] = self.__dict__.setdefault("stores", {})
        return stores.setdefault(tmp_path, MemoryStorage(tmp_path)).open_again(readonly=readonly)
