"""Storage engines behind one protocol (``protocol``): LMDB, the default (``lmdb``), and in memory (``memory``)."""

from .protocol import Durability, ReadTransaction, Space, Storage, WriteTransaction

__all__ = ["Durability", "ReadTransaction", "Space", "Storage", "WriteTransaction"]
