"""Commands that move history in and out: ``import zeroclaw``, ``import events`` and ``export``.

What lives here and why: argument checking and reporting only. Reading
ZeroClaw's files and building events is ``eventstore.zeroclaw``; the events
file format is ``eventstore.interchange``; both are click-free and tested on
their own.
"""

from __future__ import annotations

import contextlib
import functools
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import click

from .. import SessionStore, interchange, zeroclaw
from .._files import atomic_file
from ._context import Env, index_for_search, pass_env, require_live
from ._output import Output, closed_output, counted, output_not_written, output_options, progress_bar

_STATUS_TEXT = {
    "imported": "imported",
    "unchanged": "unchanged since its import; nothing added",
    "changed": "changed since it was imported; not merged",
    "empty": "no valid message; nothing imported",
    "unreadable": "not readable",
    "refused": "not read",
    "failed": "not imported",
}
#: Statuses of a source from which nothing could be imported; when every source has one, the command fails.
_NOT_IMPORTED = frozenset({"unreadable", "refused", "failed"})


@click.group(name="import")
def import_() -> None:
    """Import sessions from ZeroClaw or an events file.

    \b
    Example:
        eventstore import zeroclaw ~/.zeroclaw/workspace
        eventstore import events backup.events.jsonl
    """


def _source_json(result: zeroclaw.SourceResult) -> dict[str, Any]:
    batch = result.batch
    return {
        "source": str(result.path), "kind": result.kind, "status": result.status, "detail": result.detail or None,
        "sessions": result.sessions, "messages": result.messages, "events": result.events,
        "existing_keys": list(result.existing_keys),
        "empty_sessions": list(batch.empty_sessions) if batch else [],
        "skipped": batch.skipped_by_reason() if batch else {},
        "skipped_lines": [{"line": s.line, "reason": s.reason} | ({"detail": s.detail} if s.detail else {})
                          for s in batch.skipped] if batch else [],
        "bad_times": batch.bad_times if batch else 0,
    }


@import_.command(name="zeroclaw")
@click.argument("workspace", type=click.Path(path_type=Path))
@click.option("--verbose", "-v", is_flag=True,
              help="List every skipped line (or database row) with its number (a bad session key with the key, "
                   "escaped, and why).")
@output_options
@pass_env
def import_zeroclaw(env: Env, workspace: Path, verbose: bool, as_json: bool) -> None:
    """Import a ZeroClaw workspace's sessions.

    Reads WORKSPACE/sessions/*.jsonl and WORKSPACE/sessions/sessions.db. Keeps
    names, states and the original times from sessions.db (JSONL files have no
    times: their messages get the file's modification time). Each source file is
    imported in one transaction with a receipt (name, size, SHA-256), so importing
    again adds nothing; a file changed since its import is reported, not merged; a
    session key the store already has is reported, not merged. Blank, non-JSON, non-
    message and invalid UTF-8 lines are skipped and counted, and so are lines over
    16 MiB. A time in the future (past this machine's clock plus 5 minutes) is
    counted as a bad time, like one that does not parse: the time before it is
    used. An empty JSONL file, or a sessions.db metadata row with no message,
    is a session with no messages. Only regular files inside the workspace are
    read: a FIFO, a device, a symbolic link leading out of the workspace or a
    file over 1 GiB is reported and skipped, and the import goes on. The source
    files are only read; sessions.db is copied first, again if ZeroClaw
    checkpointed it during the copy. On a
    terminal a bar counts the sessions imported (sessions.db counts as one until
    it is read), and another the search index brought up to date at the end.
    Exits with status 1 when no source could be imported (each was unreadable,
    refused or failed); the store is created only once a source has sessions
    to import. Ctrl-C stops it with status 130, keeping the sources imported
    before it: the same command imports the rest.

    \b
    Example:
        eventstore import zeroclaw ~/.zeroclaw/workspace --verbose
    """
    zeroclaw.sessions_dir(workspace)  # a bad workspace is refused before any store is created
    out = Output(as_json)
    with contextlib.ExitStack() as stack:
        # Opened once a source has sessions to import: sources that are all unreadable create no store.
        open_store = functools.cache(lambda: stack.enter_context(env.open(create=True)))
        try:
            with progress_bar("Importing") as progress:
                result = zeroclaw.import_workspace(open_store, workspace, progress)
        except zeroclaw.ImportInterrupted as exc:
            raise KeyboardInterrupt(_interrupted(exc.done)) from None
        failed = _nothing_imported(result)
        if not failed:
            index_for_search(open_store())
    if as_json:
        out.json({"workspace": str(workspace), "sessions": result.sessions, "messages": result.messages,
                  "skipped_lines": result.skipped_lines, "sources": [_source_json(s) for s in result.sources]})
    else:
        _print_import(out, workspace, result, verbose)
    if failed:
        raise click.exceptions.Exit(1)


def _nothing_imported(result: zeroclaw.WorkspaceImport) -> bool:
    """Whether no source could be imported: each was unreadable, refused or failed (the command fails)."""
    return bool(result.sources) and all(s.status in _NOT_IMPORTED for s in result.sources)


def _interrupted(done: zeroclaw.WorkspaceImport) -> str:
    """What an import stopped by Ctrl-C had done, in one line: each source before it was committed whole."""
    names = [s.path.name for s in done.sources if s.status == "imported"]
    shown = ", ".join(names[:3]) + (f" and {len(names) - 3} more" if len(names) > 3 else "")
    return (f"{f'imported {shown}' if names else 'no source was imported'} before it; "
            "running the same command again imports the rest")


def _source_text(source: zeroclaw.SourceResult) -> str:
    """The RESULT column: the source's detail, or what its status means."""
    if source.status == "imported" and not source.sessions and source.existing_keys:
        return "nothing new: every session is already in the store"
    return source.detail or _STATUS_TEXT[source.status]


def _print_import(out: Output, workspace: Path, result: zeroclaw.WorkspaceImport, verbose: bool) -> None:
    rows = []
    for source in result.sources:
        batch = source.batch
        skipped = ", ".join(f"{n} {why}" for why, n in batch.skipped_by_reason().items()) if batch else ""
        rows.append([source.path.name, source.sessions, source.messages, skipped or "-", _source_text(source)])
    out.table(["SOURCE", "SESSIONS", "MESSAGES", "SKIPPED", "RESULT"], rows,
              title=f"Import from {workspace}")
    for source in result.sources:
        for key in source.existing_keys:
            out.line(f"{source.path.name}: session {key!r} is already in the store; not merged.")
        if source.batch is not None:
            if source.batch.bad_times:
                out.line(f"{source.path.name}: {source.batch.bad_times} timestamps did not parse, were before "
                         "1970 or were in the future; the time before each (or 1970-01-01) was used.")
            if verbose:
                unit = "row" if source.kind == "sqlite" else "line"
                for line in source.batch.skipped:
                    where = f"{source.path.name} {unit} {line.line}" if line.line else source.path.name
                    out.line(f"{where}: {line.reason}" + (f": {line.detail}" if line.detail else ""))
    out.line(f"Imported {counted(result.sessions, 'session')} with {counted(result.messages, 'message')}; "
             f"skipped {counted(result.skipped_lines, 'line')}." + ("" if verbose or not result.skipped_lines
                                                          else " (--verbose lists them)"))
    if _nothing_imported(result):
        out.line("No source could be imported (see RESULT above).")


@import_.command(name="events")
@click.argument("file", type=click.Path(exists=True, dir_okay=False, path_type=Path))
@output_options
@pass_env
def import_events(env: Env, file: Path, as_json: bool) -> None:
    """Import an events file made by export.

    The file is what `eventstore export --format events` writes.

    Every line is checked before anything is written (digests, hashes,
    versions, redactions, the trailer line that ends the file); a file that
    does not check out is refused, naming its line (nothing is written, and
    no store is created where there was none), and what could not be
    checked is reported. A whole-log export (--all) is replicated exactly
    (positions, versions, times, ids and hashes) into an empty store, or into
    the store it was imported into before (then nothing is added). An export
    of some sessions is imported as new events with their original times;
    keys already in the store are reported, not merged. The search index is
    brought up to date at the end (a bar shows it on a terminal).

    \b
    Example:
        eventstore import events backup.events.jsonl
        EVENTSTORE_PATH=./copy eventstore import events backup.events.jsonl
    """
    out = Output(as_json)
    if not env.holds_store():
        interchange.check_events_file(file)  # a file that does not check out leaves no new, empty store behind
    with env.open(create=True) as store:
        try:
            with progress_bar("Importing") as progress:
                result = interchange.import_events(store, file, progress)
        except KeyboardInterrupt:
            # A file of some sessions is one transaction; a whole log's batches already in are checked and kept.
            raise KeyboardInterrupt("running the same command again imports the rest") from None
        index_for_search(store)
    skipped = list(result.outcome.skipped) if result.outcome is not None else []
    if as_json:
        out.json({"file": str(file), "mode": result.mode, "events": result.events,
                  "already_present": result.already_present, "existing_keys": skipped,
                  "warnings": list(result.warnings)})
        return
    for warning in result.warnings:
        out.line(f"warning: {warning}.")
    how = ("replicated exactly" if result.mode == "replicate"
           else f"imported with {'its' if result.events == 1 else 'their'} original times")
    present = result.already_present
    out.line(f"{counted(result.events, 'event')} {how}" + (f"; {present} {'was' if present == 1 else 'were'} already "
                                                           "in the store." if present else "."))
    for key in skipped:
        out.line(f"session {key!r} is already in the store; not merged.")


@click.command()
@click.argument("keys", nargs=-1)
@click.option("--all", "all_sessions", is_flag=True,
              help="Everything: the whole log (events) or every live session (jsonl).")
@click.option("--format", "fmt", type=click.Choice(["events", "jsonl"]), default="events", show_default=True,
              help="events: the full event log as JSON Lines (positions, versions, times, hashes); "
                   "jsonl: ZeroClaw session files, current messages.")
@click.option("--out", "out_path", type=click.Path(path_type=Path), metavar="PATH",
              help="events: the file to write (default: standard output); jsonl: the directory to write into.")
@click.option("--force", is_flag=True, help="Replace existing regular files (never a symbolic link).")
@output_options
@pass_env
def export(env: Env, keys: Sequence[str], all_sessions: bool, fmt: str, out_path: Path | None, force: bool,
           as_json: bool) -> None:
    """Export the event log, or ZeroClaw JSONL files.

    --format events writes the events of the whole log (--all) or of the named
    sessions' histories, one JSON object a line; `eventstore import events`
    reads it back into a store that verifies and answers identically.
    --format jsonl writes <key>.jsonl (ZeroClaw's file name rules, current
    messages) into the --out directory, so you can always go back to ZeroClaw;
    a name that is too long or that two keys share up to case gets a hashed
    name, and eventstore-manifest.json lists every key's file. Each file is
    written to a temporary file and renamed into place: a symbolic link at a
    target is never followed, and a failed export leaves no partial file (the
    temporary file of one killed midway, .eventstore-*.tmp, is removed by the
    next export into that directory).
    ZeroClaw's lines have no field for a message's payload (a tool call): it
    is left out, and the messages that had one are counted.

    \b
    Example:
        eventstore export --all --out backup.events.jsonl
        eventstore export --all --format jsonl --out ~/.zeroclaw/workspace/sessions
    """
    if bool(keys) == all_sessions:
        raise click.ClickException("name the sessions to export, or pass --all (one of them)")
    if fmt == "jsonl" and out_path is None:
        raise click.ClickException("--format jsonl writes one file per session: give --out DIRECTORY")
    if fmt == "events" and out_path is None and sys.stdout is None:
        raise closed_output("; give --out PATH to write the export to a file")
    out = Output(as_json)
    with env.open() as store:
        if fmt == "jsonl" and out_path is not None:  # (jsonl without --out was refused above)
            for key in keys:
                require_live(env, store, key)
            chosen = list(keys) if keys else store.list_sessions()
            with progress_bar("Exporting") as progress:
                result = zeroclaw.export_jsonl(store, chosen, out_path, overwrite=force, progress=progress)
            if as_json:
                out.json({"format": "jsonl", "out": str(out_path),
                          "files": {k: str(p) for k, p in result.written.items()},
                          "not_written": result.not_written, "payloads_left_out": result.payloads_left_out,
                          "manifest": None if result.manifest is None else str(result.manifest)})
            else:
                out.line(f"Wrote {len(result.written)} session files into {out_path}.")
                for key, count in result.payloads_left_out.items():
                    out.line(f"{key!r}: {counted(count, 'message')} with a payload (a tool call, a framework's "
                             "item) written without it: ZeroClaw's files have no field for one (--format events "
                             "keeps it).")
                for key, why in result.not_written.items():
                    out.line(f"not written: {key!r}: {why}")
            if result.not_written:
                raise click.exceptions.Exit(1)
            return
        total = store.stats().events if all_sessions else 0
        if out_path is None:
            _export_to_standard_output(store, None if all_sessions else list(keys))
            return
        with atomic_file(out_path, replace=force) as stream, progress_bar("Exporting") as progress:
            count = interchange.export_events(store, stream, None if all_sessions else list(keys), progress, total)
    if as_json:
        out.json({"format": "events", "out": str(out_path), "events": count, "whole_log": all_sessions})
    else:
        out.line(f"Wrote {counted(count, 'event')} to {out_path}.")


def _export_to_standard_output(store: SessionStore, keys: list[str] | None) -> None:
    """Write the events file to standard output. A write that fails (a full device, a reader that left) cannot
    be taken back, so the error says that what was written is incomplete: the trailer line is missing."""
    try:
        sys.stdout.flush()
        interchange.export_events(store, sys.stdout.buffer, keys)
        sys.stdout.buffer.flush()
    except OSError as exc:
        raise output_not_written(exc, "the export", "; what was written is incomplete (it has no trailer line, so "
                                 "`eventstore import events` refuses it)") from None


COMMANDS = [import_, export]
