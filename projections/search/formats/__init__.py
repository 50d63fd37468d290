"""The search index's stored forms: pure bytes in, bytes out, one form a module.

* ``arrays``: the runs of little-endian unsigned values (and bytes scanned in C) the forms are made of;
* ``keys``: keys and small values (terms, names, a term's head, sessions, meta);
* ``summaries``: a term's summary in a block (``Block``, ``Summary``, ``summary_*``);
* ``maps``: the message maps, repeated messages and messages by level of a block;
* ``chunks``: the chunks of postings, the forward index;
* ``wholes``: a term stored whole, its blocks' summaries and maps in its head.

This package holds what they share: the block size and the thresholds between forms (tests lower them; the modules
read them here when called).

Named key spaces ``search.*``:

* ``search.terms``: term (``tokenizer.term_key``) → term id (u32), then the
  whole term when the key is shortened. Prefix queries walk its keys in order.
  Only terms that some current message holds are kept: a term whose count
  drops to zero leaves the dictionary (and ``search.names``) in the same
  commit, so removed or redacted words do not linger as keys. Ids are never
  reused before the index is cleared (``TermIds`` relies on it).
* ``search.names``: term id → term key, the way back from an id to the term,
  so that a term whose count drops to zero can be removed.
* ``search.summary``: term id → how many messages hold the term (u32), then
  the blocks its summary is stored in (u32 each, ascending); or, for a term in
  at most ``WHOLE_UP_TO`` messages, the term stored whole (``wholes``): its
  blocks' summaries and message maps in this one value, none in
  ``search.blocks`` and ``search.maps``.
* ``search.blocks``: block and term id → the summary (``Block``) of a term stored in blocks over
  the sessions of that block (``1 << BLOCK_BITS`` consecutive session ids):
  each session that holds the term with its best level and a tag, sorted by
  session for binary search; a block of more than ``GROUPED_FROM`` sessions
  also keeps them grouped by level, best first, so that a term's top sessions
  are read first. Sessions are stored as u16 offsets in the block: 4 bytes
  per (term, session), 6 in large blocks. The block
  comes first in the key: new sessions' blocks are appended at the end, and a
  batch of new sessions rewrites only the last blocks (``Summary`` joins a
  term's blocks for queries).
* ``search.maps``: block and term id (as in ``search.blocks``) → the message map there of a term stored in blocks,
  for a block of ``MAP_FROM`` sessions or more (a term stored whole keeps its maps in its head): a roaring bitmap
  (``pyroaring``, serialized) of every message holding
  the term, keyed ``index << MAP_SHIFT | offset`` (``index``: the message's, ``LAST_TAG`` for that or later;
  ``offset``: the session's in the block). ANDing two terms' maps gives the sessions where one message holds
  both; a block of fewer sessions has no map, and a query reads its tags (``placed_keys``).
* ``search.repeats``: block and term id → where the block has the term's message map, the messages (keyed as in
  the map) whose level for the term differs from the message's level (the term repeats there), and those levels:
  ``repeats_value``.
* ``search.levels``: block and level → the messages of the block's sessions whose level (``chunk_levels``: that
  of the terms a message holds once, which its length gives) is ``level``, keyed as in the maps, for messages below
  index ``LAST_TAG``. With a map and the repeats, a message's weight for each term it holds is known without its
  postings.
* ``search.docs``: session and chunk number → the postings of up to
  ``CHUNK_MESSAGES`` messages: each message's term ids (2 bytes below 65,536,
  else 3, or 4 once ids need it) and levels (one a message, and those of the
  postings at another level). The forward index: removals read what to take
  out, and a session's exact multi-term score is computed from it.
* ``search.sessions``: session → message count and latest activity;
  ``search.meta``: message count, next term id, generation (changes when the
  index is cleared, so term ids cached in memory are dropped).
"""

#: A term's summary is stored in blocks of ``1 << BLOCK_BITS`` consecutive session ids, so that indexing new
#: sessions rewrites the last blocks only, never a whole summary; a block stores its sessions as u16 offsets.
BLOCK_BITS = 12
#: The greatest term id, and the greatest session id, the index can hold.
MAX_ID = 0xFFFFFFFF
#: Terms in more sessions than this store their sessions in level order too.
GROUPED_FROM = 256
#: A term's message map is stored for a block of this many sessions or more (fewer: its tags are read)...
MAP_FROM = 32
#: ... up to this many: no block holds more sessions, so every block of ``MAP_FROM`` has one (tests lower it, so that
#: blocks cross it as sessions come and go). The most common words' maps, with ``search.levels`` and
#: ``search.repeats``, answer their queries message by message (``queries._by_messages``).
MAP_UP_TO = MAX_ID
#: A term in at most this many messages is stored whole (``wholes``): a query reads it in one value, and a batch that
#: adds to it rewrites that value, which this bounds.
WHOLE_UP_TO = 8192

__all__ = ["BLOCK_BITS", "GROUPED_FROM", "MAP_FROM", "MAP_UP_TO", "MAX_ID", "WHOLE_UP_TO"]
