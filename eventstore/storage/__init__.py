"""Storage engines behind one protocol (``protocol``): LMDB, the default (``lmdb``), and in memory (``memory``)."""

from .memory import MemoryStorage
from .protocol import (
    MAX_KEY_SIZE,
    BeforeCommit,
    Durability,
    GroupCommitting,
    Outcome,
    ReadTransaction,
    Space,
    SpaceRewrite,
    SpaceUsage,
    Storage,
    StorageUsage,
    VacuumRewrite,
    WriteTransaction,
)

__all__ = ["MAX_KEY_SIZE", "BeforeCommit", "Durability", "GroupCommitting", "MemoryStorage", "Outcome",
           "ReadTransaction", "Space", "SpaceRewrite", "SpaceUsage", "Storage", "StorageUsage", "VacuumRewrite",
           "WriteTransaction"]
