"""Storage engines behind one protocol (``protocol``): LMDB, the default (``lmdb``), and in memory (``memory``)."""

from .memory import MemoryStorage
from .protocol import (
    MAX_KEY_SIZE,
    Durability,
    ReadTransaction,
    Space,
    SpaceUsage,
    Storage,
    StorageUsage,
    WriteTransaction,
)

__all__ = ["MAX_KEY_SIZE", "Durability", "MemoryStorage", "ReadTransaction", "Space", "SpaceUsage", "Storage",
           "StorageUsage", "WriteTransaction"]
