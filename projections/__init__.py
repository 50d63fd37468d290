"""Projections: pure folds of the event log, and the LMDB read models that persist them.

``session`` holds the folds (no I/O); ``catalog`` and ``messages`` persist them
in their own named databases; ``chunk`` is the stored form of a run of messages
(pure: bytes in, bytes out), shared by the message read model and the snapshots;
``readmodel`` says what every read model offers.
``search`` is the ranked search index, a deferred read model (a subpackage:
its ``tokenizer`` splits text and queries into terms, purely).
This package may use ``eventstore``'s event and value types; the log knows
nothing of it. Importing it imports nothing else: each module names what it needs.
"""

