"""The application services behind ``SessionStore``: one module per job.

``commands``: the pure deciders; ``writer``: the command pipeline; ``queries``:
current-state reads; ``time_travel``: reads of the past, and restore;
``maintenance``: compaction, rebuilds, redaction, vacuum, verify and stats;
``replication``: imports and replication; ``replica``: a host's replica of a shared
log, and ``write_capture`` the capture of what its commands wrote, as the shared log's
commit. ``arguments`` holds the argument checks and ``cache`` the decoded message
lists the queries and the writer share.
"""
