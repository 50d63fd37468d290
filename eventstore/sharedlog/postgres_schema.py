"""The PostgreSQL log's schema: the tables, ``es_commit`` and the procedures that call it, as each format made them,
and the SQL that takes a schema of each format to the next (``UPGRADES``). Plain SQL text: the log that runs it
(``postgres``) holds the driver."""

from __future__ import annotations

from typing import LiteralString

__all__ = ["CREATE", "SCHEMA_FORMAT", "UPGRADES"]

#: The schema's format; a database with a newer one is refused, an older one upgraded by ``UPGRADES``.
SCHEMA_FORMAT = 6

CREATE: LiteralString = """
CREATE TABLE es_meta (format int NOT NULL);
CREATE TABLE es_head (
    one bool PRIMARY KEY DEFAULT true CHECK (one), position int8 NOT NULL, hash bytea NOT NULL);
CREATE TABLE es_sessions (key text PRIMARY KEY, version int8 NOT NULL, recorded_at int8 NOT NULL);
CREATE TABLE es_events (
    position int8 PRIMARY KEY, key text NOT NULL, version int8 NOT NULL, recorded_at int8 NOT NULL,
    event_id bytea NOT NULL, type text NOT NULL, schema_version int4 NOT NULL, payload bytea NOT NULL,
    digest bytea NOT NULL, hash bytea NOT NULL, redacted bool NOT NULL);
CREATE TABLE es_records (space text NOT NULL, key bytea NOT NULL, value bytea NOT NULL, PRIMARY KEY (space, key));
INSERT INTO es_meta VALUES (1);

CREATE FUNCTION es_commit(
    a_keys text[], a_expected int8[], a_recorded int8[], a_counts int4[],
    e_ids bytea[], e_types text[], e_schemas int4[], e_payloads bytea[], e_digests bytea[], e_redacted bool[],
    w_positions int8[], w_payloads bytea[], r_spaces text[], r_keys bytea[], r_values bytea[], pinned int8,
    OUT first_position int8, OUT head_position int8, OUT head_hash bytea)
LANGUAGE plpgsql AS $$
DECLARE
    e int := 0;
    current_version int8;
    recorded int8;
    key_bytes bytea;
    type_bytes bytea;
BEGIN
    -- A writer refused again and again holds its session's turn (an exclusive advisory lock): wait for it.
    PERFORM pg_advisory_xact_lock_shared(hashtextextended(k, 0)) FROM unnest(a_keys) AS k ORDER BY k;
    PERFORM 1 FROM es_sessions WHERE key = ANY (a_keys) ORDER BY key FOR UPDATE;
    SELECT position, hash INTO head_position, head_hash FROM es_head FOR UPDATE;
    first_position := head_position + 1;
    IF pinned IS NOT NULL AND pinned <> first_position THEN
        RAISE EXCEPTION USING ERRCODE = 'EV412', MESSAGE = 'the head moved';
    END IF;
    FOR i IN 1 .. coalesce(array_length(a_keys, 1), 0) LOOP
        SELECT version, recorded_at INTO current_version, recorded FROM es_sessions WHERE key = a_keys[i];
        IF NOT FOUND THEN
            current_version := 0;
            recorded := a_recorded[i];
        END IF;
        IF current_version <> a_expected[i] THEN
            RAISE EXCEPTION USING ERRCODE = 'EV409', MESSAGE = 'wrong expected version',
                DETAIL = current_version::text, HINT = i::text;
        END IF;
        recorded := greatest(recorded, a_recorded[i]);
        key_bytes := convert_to(a_keys[i], 'UTF8');
        FOR j IN 1 .. a_counts[i] LOOP
            e := e + 1;
            head_position := head_position + 1;
            current_version := current_version + 1;
            IF NOT e_redacted[e] AND sha256(e_payloads[e]) <> e_digests[e] THEN
                RAISE EXCEPTION USING ERRCODE = 'EV400', MESSAGE = 'a payload does not match its digest';
            END IF;
            type_bytes := convert_to(e_types[e], 'UTF8');
            head_hash := sha256(head_hash || int8send(head_position) || int8send(current_version)
                || int8send(recorded) || e_ids[e] || substr(int4send(e_schemas[e]), 3)
                || substr(int4send(octet_length(type_bytes)), 3) || substr(int4send(octet_length(key_bytes)), 3)
                || type_bytes || key_bytes || e_digests[e]);
            INSERT INTO es_events VALUES (head_position, a_keys[i], current_version, recorded, e_ids[e], e_types[e],
                e_schemas[e], e_payloads[e], e_digests[e], head_hash, e_redacted[e]);
        END LOOP;
        INSERT INTO es_sessions VALUES (a_keys[i], current_version, recorded)
            ON CONFLICT (key) DO UPDATE SET version = excluded.version, recorded_at = excluded.recorded_at;
    END LOOP;
    UPDATE es_events SET payload = w.payload, redacted = true
        FROM unnest(w_positions, w_payloads) AS w (position, payload) WHERE es_events.position = w.position;
    FOR i IN 1 .. coalesce(array_length(r_spaces, 1), 0) LOOP
        INSERT INTO es_records VALUES (r_spaces[i], r_keys[i], r_values[i]) ON CONFLICT DO NOTHING;
        IF NOT FOUND THEN
            RAISE EXCEPTION USING ERRCODE = 'EV410', MESSAGE = 'record taken', HINT = i::text;
        END IF;
    END LOOP;
    UPDATE es_head SET position = head_position, hash = head_hash;
END $$;
"""

# Format 2: ``es_append``, the one call of a commit. It commits ``es_commit`` and its ``NOTIFY`` without waiting
# for the flush, so the head row and the notification queue's lock (both held to the end of a commit) are free
# for the next writer at once; then a transaction of its own writes one WAL record (a transactional logical
# message) and commits with the session's ``synchronous_commit``: WAL is flushed in order, so that flush makes
# the commit before it durable too, and the call returns after it. Concurrent writers' flushes overlap (the
# server flushes every waiting commit at once) instead of queueing behind the head row. A crash between the two
# loses the commit, never acknowledged, which readers may have seen (docs/postgres.md, failures).
_APPEND: LiteralString = """
CREATE PROCEDURE es_append(
    a_keys text[], a_expected int8[], a_recorded int8[], a_counts int4[],
    e_ids bytea[], e_types text[], e_schemas int4[], e_payloads bytea[], e_digests bytea[], e_redacted bool[],
    w_positions int8[], w_payloads bytea[], r_spaces text[], r_keys bytea[], r_values bytea[], pinned int8,
    INOUT first_position int8 DEFAULT NULL, INOUT head_position int8 DEFAULT NULL, INOUT head_hash bytea DEFAULT NULL)
LANGUAGE plpgsql AS $$
BEGIN
    SELECT c.first_position, c.head_position, c.head_hash INTO first_position, head_position, head_hash
        FROM es_commit(a_keys, a_expected, a_recorded, a_counts, e_ids, e_types, e_schemas, e_payloads, e_digests,
                       e_redacted, w_positions, w_payloads, r_spaces, r_keys, r_values, pinned) AS c;
    PERFORM pg_notify('eventstore_log', ''), set_config('synchronous_commit', 'off', true);
    COMMIT;
    PERFORM pg_logical_emit_message(true, 'eventstore', '');
END $$;
"""

# Format 3: ``es_append_batch``, the one call of a host's group commit: several commands, each checked against
# its own sessions' versions (a refused one leaves the others alone, in a subtransaction of its own) by the
# function ``es_commit_batch``, as ``es_commit`` checks one command for ``es_append``, and committed
# together with one flush, as ``es_append`` commits one. It takes the head row first, so every writer waits there
# and nothing that holds it waits for another writer: session rows are locked (by ``es_commit``) and new ones
# inserted only under the head. (Locking a batch's session rows before the head deadlocks: a session created
# between that and the head is locked again under it, maybe by a writer already waiting for the head.) A session's
# turn is only tried: a command on a session whose turn another writer holds is refused at once, since a writer
# holding its host's replica lock must not wait for a turn whose holder may be waiting for that lock. A command
# after a refused one in the batch that shares a session with it decided against that command's events, so it is
# refused too. ``turns``: the sessions whose turn the calling connection holds, not tried (a try fails behind
# another writer already waiting for the turn; the turn's exclusive lock is all its holder needs). ``c_pinned``: 0
# for a command pinned nowhere. (Written once for formats 3 and 5: they differ in the hints' type and the
# procedure's name.)
_COMMIT_BATCH: LiteralString = """
CREATE FUNCTION es_commit_batch(
    c_appends int4[], c_rewrites int4[], c_records int4[], c_pinned int8[],
    a_keys text[], a_expected int8[], a_recorded int8[], a_counts int4[],
    e_ids bytea[], e_types text[], e_schemas int4[], e_payloads bytea[], e_digests bytea[], e_redacted bool[],
    w_positions int8[], w_payloads bytea[], r_spaces text[], r_keys bytea[], r_values bytea[], turns text[],
    OUT first_positions int8[], OUT head_positions int8[], OUT head_hashes bytea[], OUT refusals text[],
    OUT hints HINT_TYPE[], OUT details text[], OUT taken bytea[])
LANGUAGE plpgsql AS $$
DECLARE
    a int := 0;
    e int := 0;
    w int := 0;
    r int := 0;
    n int;
    m int;
    keys text[];
    refused text[];
    clash int;
    first_position int8;
    head_position int8;
    head_hash bytea;
    code text;
    hint text;
    detail text;
BEGIN
    refused := ARRAY(SELECT k FROM unnest(a_keys) AS k
                     WHERE k <> ALL (turns) AND NOT pg_try_advisory_xact_lock_shared(hashtextextended(k, 0)));
    PERFORM 1 FROM es_head FOR UPDATE;
    first_positions := '{}'; head_positions := '{}'; head_hashes := '{}'; refusals := '{}'; hints := '{}';
    details := '{}'; taken := '{}';
    FOR c IN 1 .. coalesce(array_length(c_appends, 1), 0) LOOP
        n := c_appends[c];
        keys := a_keys[a + 1 : a + n];
        m := (SELECT coalesce(sum(k), 0) FROM unnest(a_counts[a + 1 : a + n]) AS k);
        first_position := NULL; head_position := NULL; head_hash := NULL; code := NULL; hint := NULL; detail := NULL;
        clash := (SELECT min(i) FROM generate_subscripts(keys, 1) AS i WHERE keys[i] = ANY (refused));
        IF clash IS NOT NULL THEN
            code := 'EV409';
            hint := clash::text;
            detail := coalesce((SELECT version FROM es_sessions WHERE key = keys[clash]), 0)::text;
        ELSE
            BEGIN
                SELECT d.first_position, d.head_position, d.head_hash INTO first_position, head_position, head_hash
                    FROM es_commit(keys, a_expected[a + 1 : a + n], a_recorded[a + 1 : a + n], a_counts[a + 1 : a + n],
                        e_ids[e + 1 : e + m], e_types[e + 1 : e + m], e_schemas[e + 1 : e + m],
                        e_payloads[e + 1 : e + m], e_digests[e + 1 : e + m], e_redacted[e + 1 : e + m],
                        w_positions[w + 1 : w + c_rewrites[c]], w_payloads[w + 1 : w + c_rewrites[c]],
                        r_spaces[r + 1 : r + c_records[c]], r_keys[r + 1 : r + c_records[c]],
                        r_values[r + 1 : r + c_records[c]], nullif(c_pinned[c], 0)) AS d;
            EXCEPTION WHEN SQLSTATE 'EV409' OR SQLSTATE 'EV410' OR SQLSTATE 'EV412' OR SQLSTATE 'EV400' THEN
                GET STACKED DIAGNOSTICS code = RETURNED_SQLSTATE, detail = PG_EXCEPTION_DETAIL,
                    hint = PG_EXCEPTION_HINT;
            END;
        END IF;
        IF code IS NOT NULL THEN
            refused := refused || keys;
        END IF;
        first_positions := first_positions || first_position;
        head_positions := head_positions || head_position;
        head_hashes := head_hashes || head_hash;
        refusals := refusals || code;
        hints := hints || hint::HINT_TYPE;
        details := details || detail;
        taken := taken || CASE WHEN code = 'EV410' THEN (SELECT value FROM es_records
            WHERE space = r_spaces[r + hint::int4] AND key = r_keys[r + hint::int4]) END;
        a := a + n;
        e := e + m;
        w := w + c_rewrites[c];
        r := r + c_records[c];
    END LOOP;
END $$;
"""
_GROUP_PROCEDURE: LiteralString = """
CREATE PROCEDURE GROUP_PROCEDURE(
    c_appends int4[], c_rewrites int4[], c_records int4[], c_pinned int8[],
    a_keys text[], a_expected int8[], a_recorded int8[], a_counts int4[],
    e_ids bytea[], e_types text[], e_schemas int4[], e_payloads bytea[], e_digests bytea[], e_redacted bool[],
    w_positions int8[], w_payloads bytea[], r_spaces text[], r_keys bytea[], r_values bytea[], turns text[],
    INOUT first_positions int8[] DEFAULT NULL, INOUT head_positions int8[] DEFAULT NULL,
    INOUT head_hashes bytea[] DEFAULT NULL, INOUT refusals text[] DEFAULT NULL,
    INOUT hints HINT_TYPE[] DEFAULT NULL, INOUT details text[] DEFAULT NULL, INOUT taken bytea[] DEFAULT NULL)
LANGUAGE plpgsql AS $$
BEGIN
    SELECT b.first_positions, b.head_positions, b.head_hashes, b.refusals, b.hints, b.details, b.taken
        INTO first_positions, head_positions, head_hashes, refusals, hints, details, taken
        FROM es_commit_batch(c_appends, c_rewrites, c_records, c_pinned, a_keys, a_expected, a_recorded, a_counts,
                             e_ids, e_types, e_schemas, e_payloads, e_digests, e_redacted, w_positions, w_payloads,
                             r_spaces, r_keys, r_values, turns) AS b;
    IF array_position(refusals, NULL) IS NOT NULL THEN  -- a command was accepted
        PERFORM pg_notify(NOTIFIED_CHANNEL, ''), set_config('synchronous_commit', 'off', true);
        COMMIT;
        PERFORM pg_logical_emit_message(true, 'eventstore', '');
    END IF;
END $$;
"""
_APPEND_BATCH: LiteralString = (_COMMIT_BATCH + _GROUP_PROCEDURE.replace("GROUP_PROCEDURE", "es_append_batch")
                                 ).replace("HINT_TYPE", "int4").replace("NOTIFIED_CHANNEL", "'eventstore_log'")

# Format 4: ``es_append_one``, the call of a lone command (a host's group of one, the case without concurrency),
# and a leaner ``es_commit``. A lone command needs no subtransaction: nothing else shares its transaction, so a
# refusal raised by ``es_commit`` aborts it all, and the client reads the refusal from the error (code, hint,
# detail). It tries the sessions' turns as ``es_commit_batch`` does, then ``es_commit`` takes the head row first
# (the batch already holds it) and the session rows in key order under it, as in the batch. ``es_commit`` no
# longer waits for the turns, which both callers tried (``es_append``, the one caller that did not, is dropped),
# and skips the rewrites' statement when there are none. Every refusal has a numeric hint (the session's or the
# record's index, the head's position, the event's index), since ``es_commit_batch`` casts it: an empty one failed
# the whole batch of a pinned command that found the head moved, or of a payload that does not match its digest.
# A lone command's call takes about half the server time it took in ``es_append_batch`` (docs/benchmarks.md).
# ``es_commit`` of formats 4 and 5 (``_APPEND_ONE``, ``_UNLOCKED_ALONE``): it takes the head row first; format 4 then
# locked the command's session rows, which format 5 leaves to the head row (below).
_COMMIT_HEAD: LiteralString = """
CREATE OR REPLACE FUNCTION es_commit(
    a_keys text[], a_expected int8[], a_recorded int8[], a_counts int4[],
    e_ids bytea[], e_types text[], e_schemas int4[], e_payloads bytea[], e_digests bytea[], e_redacted bool[],
    w_positions int8[], w_payloads bytea[], r_spaces text[], r_keys bytea[], r_values bytea[], pinned int8,
    OUT first_position int8, OUT head_position int8, OUT head_hash bytea)
LANGUAGE plpgsql AS $$
DECLARE
    e int := 0;
    current_version int8;
    recorded int8;
    key_bytes bytea;
    type_bytes bytea;
BEGIN
    SELECT position, hash INTO head_position, head_hash FROM es_head FOR UPDATE;
"""
_LOCK_SESSIONS: LiteralString = """
    PERFORM 1 FROM es_sessions WHERE key = ANY (a_keys) ORDER BY key FOR UPDATE;
"""
_COMMIT_REST: LiteralString = """
    first_position := head_position + 1;
    IF pinned IS NOT NULL AND pinned <> first_position THEN
        RAISE EXCEPTION USING ERRCODE = 'EV412', MESSAGE = 'the head moved', HINT = head_position::text;
    END IF;
    FOR i IN 1 .. coalesce(array_length(a_keys, 1), 0) LOOP
        SELECT version, recorded_at INTO current_version, recorded FROM es_sessions WHERE key = a_keys[i];
        IF NOT FOUND THEN
            current_version := 0;
            recorded := a_recorded[i];
        END IF;
        IF current_version <> a_expected[i] THEN
            RAISE EXCEPTION USING ERRCODE = 'EV409', MESSAGE = 'wrong expected version',
                DETAIL = current_version::text, HINT = i::text;
        END IF;
        recorded := greatest(recorded, a_recorded[i]);
        key_bytes := convert_to(a_keys[i], 'UTF8');
        FOR j IN 1 .. a_counts[i] LOOP
            e := e + 1;
            head_position := head_position + 1;
            current_version := current_version + 1;
            IF NOT e_redacted[e] AND sha256(e_payloads[e]) <> e_digests[e] THEN
                RAISE EXCEPTION USING ERRCODE = 'EV400', MESSAGE = 'a payload does not match its digest',
                    HINT = e::text;
            END IF;
            type_bytes := convert_to(e_types[e], 'UTF8');
            head_hash := sha256(head_hash || int8send(head_position) || int8send(current_version)
                || int8send(recorded) || e_ids[e] || substr(int4send(e_schemas[e]), 3)
                || substr(int4send(octet_length(type_bytes)), 3) || substr(int4send(octet_length(key_bytes)), 3)
                || type_bytes || key_bytes || e_digests[e]);
            INSERT INTO es_events VALUES (head_position, a_keys[i], current_version, recorded, e_ids[e], e_types[e],
                e_schemas[e], e_payloads[e], e_digests[e], head_hash, e_redacted[e]);
        END LOOP;
        INSERT INTO es_sessions VALUES (a_keys[i], current_version, recorded)
            ON CONFLICT (key) DO UPDATE SET version = excluded.version, recorded_at = excluded.recorded_at;
    END LOOP;
    IF cardinality(w_positions) > 0 THEN
        UPDATE es_events SET payload = w.payload, redacted = true
            FROM unnest(w_positions, w_payloads) AS w (position, payload) WHERE es_events.position = w.position;
    END IF;
    FOR i IN 1 .. coalesce(array_length(r_spaces, 1), 0) LOOP
        INSERT INTO es_records VALUES (r_spaces[i], r_keys[i], r_values[i]) ON CONFLICT DO NOTHING;
        IF NOT FOUND THEN
            RAISE EXCEPTION USING ERRCODE = 'EV410', MESSAGE = 'record taken', HINT = i::text;
        END IF;
    END LOOP;
    UPDATE es_head SET position = head_position, hash = head_hash;
END $$;

"""
#: A lone command's procedure, named LONE_PROCEDURE: it tries the sessions' turns, commits through ``es_commit``, and
#: notifies; LONE_FLUSH is what it does after (format 4 commits and flushes there, format 5 leaves the flush to
#: the client).
_LONE_PROCEDURE: LiteralString = """
CREATE PROCEDURE LONE_PROCEDURE(
    a_keys text[], a_expected int8[], a_recorded int8[], a_counts int4[],
    e_ids bytea[], e_types text[], e_schemas int4[], e_payloads bytea[], e_digests bytea[], e_redacted bool[],
    w_positions int8[], w_payloads bytea[], r_spaces text[], r_keys bytea[], r_values bytea[], pinned int8,
    turns text[],
    INOUT first_position int8 DEFAULT NULL, INOUT head_position int8 DEFAULT NULL, INOUT head_hash bytea DEFAULT NULL)
LANGUAGE plpgsql AS $$
BEGIN
    FOR i IN 1 .. coalesce(array_length(a_keys, 1), 0) LOOP  -- expressions, not a query: a tenth of the time
        IF a_keys[i] <> ALL (turns) AND NOT pg_try_advisory_xact_lock_shared(hashtextextended(a_keys[i], 0)) THEN
            RAISE EXCEPTION USING ERRCODE = 'EV409', MESSAGE = 'wrong expected version', HINT = i::text,
                DETAIL = coalesce((SELECT version FROM es_sessions WHERE key = a_keys[i]), 0)::text;
        END IF;
    END LOOP;
    SELECT c.first_position, c.head_position, c.head_hash INTO first_position, head_position, head_hash
        FROM es_commit(a_keys, a_expected, a_recorded, a_counts, e_ids, e_types, e_schemas, e_payloads, e_digests,
                       e_redacted, w_positions, w_payloads, r_spaces, r_keys, r_values, pinned) AS c;
    PERFORM pg_notify(NOTIFIED_CHANNEL, head_position::text), set_config('synchronous_commit', 'off', true);
LONE_FLUSHEND $$;
"""
_APPEND_ONE: LiteralString = "\nDROP PROCEDURE es_append;\n\n" + _COMMIT_HEAD + _LOCK_SESSIONS + _COMMIT_REST + (
    _LONE_PROCEDURE.replace("LONE_PROCEDURE", "es_append_one").replace("LONE_FLUSH", """    COMMIT;
    PERFORM pg_logical_emit_message(true, 'eventstore', '');
""")).replace("NOTIFIED_CHANNEL", "'eventstore_log'")

# Format 5: a group's refusal hints are int8. ``es_commit_batch`` cast each to int4, and the hint of a pinned command
# that found the head moved is the head's position: past 2^31 events, the whole group failed ("out of range"). The
# hosts of format 4 still running call ``es_append_batch``, whose result type (int4 hints) their prepared call holds
# ("cached plan must not change result type" otherwise): it stays, narrowing what the new ``es_commit_batch``
# returns as before, and the hosts of format 5 call ``es_append_many``, the same procedure with int8 hints. The next
# format drops ``es_append_batch``.
_MANY: LiteralString = _GROUP_PROCEDURE.replace("GROUP_PROCEDURE", "es_append_many").replace("HINT_TYPE", "int8")
_WIDE_HINTS: LiteralString = "DROP FUNCTION es_commit_batch;" + (
    _COMMIT_BATCH.replace("HINT_TYPE", "int8") + _MANY).replace("NOTIFIED_CHANNEL", "'eventstore_log'")

# Format 5: ``es_commit`` no longer locks the command's session rows (``FOR UPDATE``). Every write of
# ``es_sessions`` is ``es_commit``'s, made while its transaction holds the head row, so the head row alone
# serialises them: a command that holds it reads each session's version in a statement that began after the
# previous holder committed (READ COMMITTED), and nobody else can change it before this one commits. The lock
# wrote a WAL record per session and took about a sixth of a lone command's server time (docs/postgres.md).
# A command alone goes to ``es_append_alone``, which does not flush: the client sends it and the flush (``_FLUSH``)
# together, each in a transaction of its own (a pipeline), reads its answer while the server flushes, commits its
# replica, and only then waits for the flush (``PostgresLog.unflushed``): the replica's write lock, which a host's
# processes share, is not held through the flush, so their flushes overlap as the threads' of one group do.
# ``es_append_one`` stays as format 4 made it (it flushes) for the hosts of format 4 still running; the next format
# drops it.
_ALONE: LiteralString = _LONE_PROCEDURE.replace("LONE_PROCEDURE", "es_append_alone").replace("LONE_FLUSH", "")
_UNLOCKED_ALONE: LiteralString = _COMMIT_HEAD + _COMMIT_REST + _ALONE.replace("NOTIFIED_CHANNEL", "'eventstore_log'")

# Format 6: each schema's commits notify a channel of its own, which ``es_channel()`` names (drawn at random as the
# schema reaches format 6: a copy of a schema restored beside it is a log of its own too). Every log notified
# ``eventstore_log`` before, so the stores of every schema of a database heard each other's commits, and one that
# heard a head past its own log's caught up for it, a round trip, before each read and command. The procedures that
# hosts of format 5 call (``es_append_alone``, ``es_append_many``) are replaced in place, their signatures kept: a
# host of format 5 still running goes on committing (the hosts of format 6 hear its commits), but it listens where
# nothing is notified any more, so it reads other hosts' commits from its watcher's look, up to a second late, until
# it restarts. Format 4's leftovers, ``es_append_one`` and ``es_append_batch``, are dropped, as format 5 announced.
_OWN_CHANNEL: LiteralString = """
DROP PROCEDURE es_append_one;
DROP PROCEDURE es_append_batch;
DO $$ BEGIN
    EXECUTE format('CREATE FUNCTION es_channel() RETURNS text IMMUTABLE PARALLEL SAFE LANGUAGE sql RETURN %L',
                   'eventstore_log_' || replace(gen_random_uuid()::text, '-', ''));
END $$;
""" + (_MANY + _ALONE).replace("CREATE PROCEDURE", "CREATE OR REPLACE PROCEDURE").replace(
    "NOTIFIED_CHANNEL", "es_channel()")

#: format → the SQL that takes a schema of that format to the next one.
UPGRADES: dict[int, LiteralString] = {
    1: _APPEND, 2: _APPEND_BATCH, 3: _APPEND_ONE, 4: _WIDE_HINTS + _UNLOCKED_ALONE, 5: _OWN_CHANNEL}
