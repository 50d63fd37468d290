"""Projections: pure folds of the event log, and the LMDB read models that persist them.

``session`` holds the folds (no I/O); ``catalog`` and ``messages`` persist them
in their own named databases; ``readmodel`` says what every read model offers.
This package may use ``eventstore``'s event and value types; the log knows
nothing of it.
"""
