"""Commands that repair, recover or tidy a store: restore, fork, delete, compact, redact, vacuum, verify, rebuild.

What lives here and why: the commands that write (or, for ``verify``, judge)
the store. Each refuses a path that holds no store, names the session it acts
on, and asks before doing what cannot be undone (``restore``, ``redact``)
unless given ``--yes``.
"""

from __future__ import annotations

import click

from .. import SessionView, StoreCorrupted, VerifyReport
from ..events import SessionForked
from ._context import Env, not_live, parse_time, pass_env, require_live, session_history, versions_of
from ._output import Output, confirm, counted, human_bytes, output_options, progress_bar, show_time, spinner


def _summary(view: SessionView) -> str:
    if not view.exists:
        return "no session"
    name = f", named {view.name!r}" if view.name else ""
    return f"{counted(len(view.timestamped), 'message')}{name}"


@click.command()
@click.argument("key")
@click.option("--version", type=int, metavar="N", help="Bring back the session as it was after its N-th event.")
@click.option("--as-of", "as_of", metavar="TIME",
              help="Bring back the session as it was at TIME "
                   "(ISO 8601, a year down to a second, e.g. 2026-03 or 2026-03-01T14:05; without a zone, local time).")
@click.option("--yes", "-y", is_flag=True, help="Do not ask for confirmation.")
@output_options
@pass_env
def restore(env: Env, key: str, version: int | None, as_of: str | None, yes: bool, as_json: bool) -> None:
    """Bring a session back to an earlier version or time.

    Appends one event that brings back the messages, name, state and
    existence of that moment (a deleted session comes back); nothing is
    deleted, so a restore can itself be undone. Asks first unless --yes.

    \b
    Example:
        eventstore restore demo:lisbon-trip --version 9
        eventstore restore demo:lisbon-trip --as-of 2026-03-01T14:05 --yes
    """
    if (version is None) == (as_of is None):
        raise click.ClickException("give --version N or --as-of TIME (one of them)")
    moment = None if as_of is None else parse_time(as_of)
    out = Output(as_json)
    with env.open(write=True) as store:
        session_history(env, store, key)
        current = store.session_at(key)
        with versions_of(env, key):
            target = store.session_at(key, version=version, as_of=moment)
        when = f"version {target.version}" + (f" (as of {show_time(moment)})" if moment is not None else "")
        if not yes:
            confirm(f"Restore {key!r} (now version {current.version}: {_summary(current)}) to "
                    f"{when}: {_summary(target)}?")
        before = current.version
        after = store.restore(key, version=version, as_of=moment)
    changed = after != before
    if as_json:
        out.json({"key": key, "restored_to": target.version, "changed": changed, "version": after,
                  "exists": target.exists, "messages": len(target.timestamped)})
    elif not changed:
        out.line(f"Nothing to do: {key} is already as it was at {when}.")
    else:
        out.line(f"Restored {key} to {when}: {_summary(target)}. It is now at version {after}; "
                 f"`{env.restore_command(key, before)}` undoes this.")


@click.command()
@click.argument("source")
@click.argument("new_key", metavar="NEW")
@click.option("--version", type=int, metavar="N", help="Fork SOURCE as it was after its N-th event.")
@click.option("--as-of", "as_of", metavar="TIME",
              help="Fork SOURCE as it was at TIME "
                   "(ISO 8601, a year down to a second, e.g. 2026-03 or 2026-03-01T14:05; without a zone, local time).")
@output_options
@pass_env
def fork(env: Env, source: str, new_key: str, version: int | None, as_of: str | None, as_json: bool) -> None:
    """Start a new session as a copy of another, now or as it was.

    NEW begins with one event naming SOURCE, its version and that event's
    hash, holding SOURCE's messages and name as they were then. SOURCE's
    history is not copied, and later changes to SOURCE do not reach NEW.
    NEW must not be a live session.

    \b
    Example:
        eventstore fork demo:lisbon-trip demo:lisbon-trip-b
        eventstore fork demo:lisbon-trip demo:lisbon-trip-b --version 4
    """
    if version is not None and as_of is not None:
        raise click.ClickException("give --version N or --as-of TIME, not both")
    moment = None if as_of is None else parse_time(as_of)
    out = Output(as_json)
    with env.open(write=True) as store:
        session_history(env, store, source)
        with versions_of(env, source):
            forked = store.fork(source, new_key, version=version, as_of=moment)
        # The fork's own event and the session after it; reads from the key's nearest snapshot, not its history.
        recorded, view = next(store.replay(new_key, from_version=forked, to_version=forked))
        started = recorded.event
    source_version = started.source_version if isinstance(started, SessionForked) else None
    if as_json:
        out.json({"key": new_key, "source": source, "source_version": source_version, "version": forked,
                  "messages": len(view.timestamped)})
    else:
        out.line(f"Forked {source} at its version {source_version} into {new_key}: {_summary(view)}.")


@click.command()
@click.argument("key")
@click.option("--reason", metavar="TEXT", help="Why the session is deleted (kept in its history).")
@output_options
@pass_env
def delete(env: Env, key: str, reason: str | None, as_json: bool) -> None:
    """Delete a session (restore brings it back).

    The deletion is an event: the session's history stays, and restore
    brings back any earlier state.

    \b
    Example:
        eventstore delete demo:old-draft --reason "cleanup"
    """
    out = Output(as_json)
    with env.open(write=True) as store:
        require_live(env, store, key)
        # In a transaction for its version: the session's, read afterwards, may be a later write's.
        with store.transaction() as tx:
            deletion = tx.delete_session(key, reason=reason)
        if not deletion.result:  # another writer deleted it since the check
            raise not_live(env, store, key)
        version = deletion.version
    if as_json:
        out.json({"key": key, "deleted": True, "version": version})
    else:
        out.line(f"Deleted {key} (version {version}). Its history stays; "
                 f"`{env.restore_command(key, version - 1)}` brings it back.")


@click.command()
@click.argument("key", required=False)
@click.option("--all", "all_sessions", is_flag=True, help="Snapshot every live session.")
@output_options
@pass_env
def compact(env: Env, key: str | None, all_sessions: bool, as_json: bool) -> None:
    """Snapshot sessions so that long reads fold fewer events.

    Takes a snapshot of KEY (or of every live session with --all) at its current
    version. No event is deleted: a snapshot is derived data that makes point-in-
    time reads, replay and restore of long sessions cheaper.

    \b
    Example:
        eventstore compact demo:lisbon-trip
        eventstore compact --all
    """
    if (key is None) == (not all_sessions):
        raise click.ClickException("give a session KEY or --all (one of them)")
    out = Output(as_json)
    with env.open(write=True) as store:
        if key is not None:
            session_history(env, store, key)
            keys = [key]
        else:
            keys = store.list_sessions()
        taken = []
        with progress_bar("Snapshotting") as progress:
            for done, each in enumerate(keys, 1):
                if store.compact(each):
                    taken.append(each)
                progress(done, len(keys))
    if as_json:
        out.json({"sessions": len(keys), "snapshots_taken": len(taken), "keys": taken})
    elif key is not None:
        out.line(f"Took a snapshot of {key} at its current version." if taken
                 else f"{key} already has a snapshot at its current version.")
    else:
        out.line(f"Took {counted(len(taken), 'snapshot')} of {counted(len(keys), 'session')} "
                 f"({len(keys) - len(taken)} already had one at their current version).")


def repairs(env: Env, damaged: frozenset[str]) -> list[str]:
    """The commands that repair what ``verify`` found (``VerifyReport.damaged``) in ``env``'s store, each in a
    sentence."""
    if damaged & {"file", "log"}:
        where = "the event log" if "log" in damaged else "the data file"
        salvage = env.command("salvage", "--out", "FILE")
        return [f"{where} is damaged, which no rebuild repairs: `{salvage}` copies out the events still readable, "
                "and `import events FILE` into a new store rebuilds everything else"]
    models = sorted(damaged - {"dictionary"})
    dictionary = "damaged copy of the compression dictionary from the intact one"
    if not models:
        return [f"`{env.command('rebuild')}` (as any writable open) rewrites the {dictionary}"] if damaged else []
    only = " ".join(f"--only {name}" for name in models)
    also = f" (and rewrites the {dictionary})" if "dictionary" in damaged else ""
    return [f"the log is sound: `{env.command('rebuild', only)}` rebuilds the damaged read model"
            f"{'s' if len(models) > 1 else ''} from it{also}"]


@click.command()
@output_options
@pass_env
def verify(env: Env, as_json: bool) -> None:
    """Check the hash chain, snapshots and read models.

    Walks the whole log, checks every hash link, and compares every snapshot and
    read model with a fresh fold of the log. Exits with status 0 when the store is
    sound, 1 when it is damaged (the problems are listed, one a line, and then the
    command that repairs them: salvage for a damaged log or data file, rebuild
    for a damaged read model).

    \b
    Example:
        eventstore verify && echo sound
    """
    out = Output(as_json)
    try:
        store = env.open()
    except StoreCorrupted as exc:
        # Damage that would crash the process is refused at open: that is this command's report.
        report = VerifyReport(False, 0, [str(exc)], frozenset({"file"}))
    else:
        with store, progress_bar("Verifying") as progress:
            report = store.verify(progress=progress)
    advice = repairs(env, report.damaged)
    if as_json:
        out.json({"ok": report.ok, "events_checked": report.events_checked, "problems": list(report.problems),
                  "damaged": sorted(report.damaged), "repairs": advice})
    elif report.ok:
        out.line(f"OK: {counted(report.events_checked, 'event')} checked; the hash chain, snapshots and read models "
                 "agree.")
    else:
        for problem in report.problems:
            out.line(f"problem: {problem}")
        found = len(report.problems)
        out.line(f"DAMAGED: {counted(found, 'problem')} found in {counted(report.events_checked, 'event')} "
                 f"checked; {'; '.join(advice)}.")
    if not report.ok:
        raise click.exceptions.Exit(1)


@click.command()
@click.option("--only", "names", multiple=True, type=click.Choice(["catalog", "messages", "search"]),
              help="Rebuild this read model only (repeat for several); all of them by default.")
@output_options
@pass_env
def rebuild(env: Env, names: tuple[str, ...], as_json: bool) -> None:
    """Rebuild the read models from the event log.

    Drops the session list, the message lists and the search index (or those
    named with --only) and folds them again from the log. Rebuilding the
    message lists drops the snapshots (copies of them) too, and takes them
    again from the log. Run it when verify reports a damaged read model or snapshot;
    like every writable open, it also rewrites a damaged copy of the
    compression dictionary from the intact one.

    \b
    Example:
        eventstore rebuild && eventstore verify
        eventstore rebuild --only search
    """
    out = Output(as_json)
    with env.open(write=True) as store:
        with progress_bar("Rebuilding the read models") as progress:
            store.rebuild_projections(names or None, progress=progress)
        events = store.stats().events
    if as_json:
        out.json({"rebuilt": True, "events": events})
    else:
        out.line(f"Rebuilt the read models from {counted(events, 'event')}.")


@click.command()
@click.argument("key")
@click.option("--reason", required=True, metavar="TEXT", help="Why the content is redacted (kept in the history).")
@click.option("--yes", "-y", is_flag=True, help="Do not ask for confirmation.")
@output_options
@pass_env
def redact(env: Env, key: str, reason: str, yes: bool, as_json: bool) -> None:
    """Make a session's message content unrecoverable.

    Each event keeps its place, type and hash (so verify still passes); roles,
    times and names stay. Run vacuum afterwards to remove the old bytes from
    the file. This cannot be undone: asks first unless --yes.

    \b
    Example:
        eventstore redact demo:bug-triage --reason "contained an API key" --yes
    """
    out = Output(as_json)
    with env.open(write=True) as store:
        session_history(env, store, key)
        if not yes:
            confirm(f"Redact every message of {key!r}? Their content cannot be recovered.")
        changed = store.redact(key, reason)
    if as_json:
        out.json({"key": key, "events_redacted": changed, "reason": reason})
    else:
        out.line(f"Redacted {counted(changed, 'event')} of {key}. Run `{env.command('vacuum')}` to remove the old "
                 "bytes from the file.")


@click.command()
@output_options
@pass_env
def vacuum(env: Env, as_json: bool) -> None:
    """Rewrite the store's file compactly.

    Drops freed pages, and with them the old bytes of redacted content. Needs the
    store to itself: close other programs using it first.

    \b
    Example:
        eventstore vacuum
    """
    out = Output(as_json)
    with env.open(write=True) as store, spinner("Vacuuming"):
        before, after = store.vacuum()
    if as_json:
        out.json({"bytes_before": before, "bytes_after": after})
    else:
        out.line(f"Vacuumed the store: {human_bytes(before)} → {human_bytes(after)}.")


COMMANDS = [restore, fork, delete, compact, verify, rebuild, redact, vacuum]
