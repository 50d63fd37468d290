"""Commands that look into a store without changing it: sessions, show, history, replay, search, stats.

What lives here and why: reading commands, each a few lines over one facade
call, plus the words that describe an event (``history``) and what it changed
(``replay``). None of them creates a store where there is none.
"""

from __future__ import annotations

import itertools
from collections.abc import Iterable, Iterator, Sequence
from datetime import datetime
from typing import Any, assert_never

import attrs
import click
from rich.text import Text

from projections.session import EDIT_KINDS, IDLE, untouched_prefix

from .. import (
    ChatMessage,
    InvalidArgument,
    InvalidVersion,
    SearchHit,
    SessionMetadata,
    SessionQuery,
    SessionState,
    SessionStore,
    SessionView,
    StoreReadOnly,
)
from .._payload import payload_tree
from .._values import stored_payload_of
from ..events import (
    LastMessageRemoved,
    LastMessageReplaced,
    MessageAppended,
    MessagesCleared,
    MessagesReplaced,
    RecordedEvent,
    SessionDeleted,
    SessionEvent,
    SessionForked,
    SessionRedacted,
    SessionRenamed,
    SessionRestored,
    SessionStateChanged,
)
from ..interchange import event_to_dict
from ._context import (
    INDEX_CATCH_UP_FROM,
    Env,
    _quote,
    index_for_search,
    parse_time,
    pass_env,
    require_live,
    session_history,
    versions_of,
)
from ._output import (
    TABLE_ROWS,
    Output,
    counted,
    human_bytes,
    json_time,
    output_options,
    preview,
    print_columns,
    progress_bar,
    safe_text,
    show_time,
    terminal_safe,
)

# -- shared words ------------------------------------------------------------------------


def state_text(state: SessionState | None) -> str:
    if state is None:
        return "-"
    return state.state if state.turn_id is None else f"{state.state} ({state.turn_id})"


def state_json(state: SessionState | None) -> dict[str, Any] | None:
    if state is None:
        return None
    return {"state": state.state, "turn_id": state.turn_id, "turn_started_at": json_time(state.turn_started_at)}


def describe_event(event: SessionEvent) -> str:
    """One line saying what an event is."""
    match event:
        case MessageAppended():
            return f"{event.message.role}: {message_text(event.message)}"
        case LastMessageReplaced():
            return f"last message replaced by {event.message.role}: {message_text(event.message)}"
        case LastMessageRemoved():
            return "last message removed"
        case MessagesCleared():
            return f"{counted(event.count, 'message')} cleared"
        case MessagesReplaced():
            kept = sum(at is not None for at in event.appended)
            return f"messages replaced: {len(event.messages)} now, {kept} of them kept"
        case SessionRenamed():
            return "name cleared" if event.name is None else f"renamed to {event.name!r}"
        case SessionStateChanged():
            return f"state → {event.state}" + ("" if event.turn_id is None else f" (turn {event.turn_id})")
        case SessionDeleted():
            return "deleted" + ("" if event.reason is None else f" ({event.reason})")
        case SessionRestored():
            what = counted(len(event.messages), "message") if event.exists else "not existing"
            return f"restored to version {event.restored_version} ({what})"
        case SessionRedacted():
            return f"message content redacted: {event.reason}"
        case SessionForked():
            return (f"forked from {event.source_key!r} at its version {event.source_version} "
                    f"({counted(len(event.messages), 'message')}; event {event.source_hash[:12]})")
        case _:
            assert_never(event)


def payload_json(message: ChatMessage) -> Any:
    """The message's payload as JSON outputs show it: its stored form (always valid Unicode, so a string that
    is not comes as a tagged object: docs/events-format.md), ``None`` without one."""
    stored = stored_payload_of(message)
    return None if stored is None else payload_tree(stored)


def payload_text(message: ChatMessage) -> str:
    """The message's payload as one line of compact JSON (its stored form), ``""`` without one."""
    stored = stored_payload_of(message)
    return "" if stored is None else bytes(stored).decode()


def message_text(message: ChatMessage, width: int = 50) -> str:
    """A message's content, previewed, and its payload, if it has one."""
    payload = payload_text(message)
    return preview(message.content, width) + (f" {preview(payload, 40)}" if payload else "")


def _message_json(index: int, message: ChatMessage, created_at: datetime | None = None) -> dict[str, Any]:
    row: dict[str, Any] = {"index": index, "role": message.role, "content": message.content}
    if stored_payload_of(message) is not None:
        row["payload"] = payload_json(message)
    if created_at is not None:
        row["created_at"] = json_time(created_at)
    return row


def changes(before: SessionView, after: SessionView, event: SessionEvent) -> list[dict[str, Any]]:
    """What one event changed, from the session before it to the session after it."""
    found: list[dict[str, Any]] = []
    if after.exists and not before.exists:
        found.append({"kind": "created"})
    if before.exists and not after.exists:
        found.append({"kind": "deleted"})
    if isinstance(event, SessionRestored):
        found.append({"kind": "restored", "to_version": event.restored_version})
    if isinstance(event, SessionForked):
        found.append({"kind": "forked", "from": event.source_key, "version": event.source_version})
    if before.name != after.name:
        found.append({"kind": "renamed", "from": before.name, "to": after.name})
    # A session comes to life idle and leaves from any state: only a state beyond that is news when it flips.
    if before.state != after.state and not (before.exists != after.exists and IDLE in (before.state, after.state)):
        found.append({"kind": "state", "from": state_json(before.state), "to": state_json(after.state)})
    if isinstance(event, SessionRedacted):
        count = sum(a != b for a, b in zip(before.messages, after.messages, strict=False))
        found.append({"kind": "redacted", "messages": count, "reason": event.reason})
        return found
    # The messages before the first one this kind of event may edit are the same on both sides: comparing from
    # there costs an append one message, not the whole session, and keeps a replay linear in its length.
    start = untouched_prefix(before.message_count, [EDIT_KINDS[type(event)]])
    old, new = before.messages_from(start), after.messages_from(start)
    same = 0
    while same < min(len(old), len(new)) and old[same] == new[same]:
        same += 1
    common = start + same
    if isinstance(event, LastMessageReplaced) and len(old) == len(new) == same + 1:
        was = {key: value for key, value in _message_json(common, old[same]).items() if key != "index"}
        found.append({"kind": "message_replaced", **_message_json(common, new[same]), "was": was})
        return found
    found.extend({"kind": "message_removed", **_message_json(start + i, old[i])} for i in range(same, len(old)))
    found.extend({"kind": "message_added", **_message_json(start + i, new[i])} for i in range(same, len(new)))
    return found


def change_text(change: dict[str, Any]) -> Text:
    """One line saying what a change did (terminal-safe: it quotes roles, contents, names and reasons)."""
    kind = change["kind"]
    if kind in ("message_added", "message_removed"):
        sign = ("+ ", "green") if kind == "message_added" else ("- ", "red")
        return Text.assemble(sign, safe_text(f"#{change['index'] + 1} {change['role']}: "
                                             f"{preview(change['content'], 70)}"))
    if kind == "message_replaced":
        return Text.assemble(("~ ", "yellow"), safe_text(f"#{change['index'] + 1} {change['role']}: "
                                                         f"{preview(change['was']['content'], 30)} → "
                                                         f"{preview(change['content'], 40)}"))
    if kind == "renamed":
        return safe_text(f"  name: {change['from'] or '-'} → {change['to'] or '-'}")
    if kind == "state":
        def name(state: dict[str, Any] | None) -> str:
            return "-" if state is None else state["state"] + (f" ({state['turn_id']})" if state["turn_id"] else "")
        return safe_text(f"  state: {name(change['from'])} → {name(change['to'])}")
    if kind == "redacted":
        return safe_text(f"  {counted(change['messages'], 'message')} redacted ({change['reason']})")
    if kind == "restored":
        return Text(f"  restored to its state at version {change['to_version']}")
    if kind == "forked":
        return safe_text(f"  forked from {change['from']} at its version {change['version']}")
    return Text(f"  session {kind}")


def _metadata_row(store: SessionStore, metadata: SessionMetadata) -> dict[str, Any]:
    state = store.get_session_state(metadata.key)
    return {"key": metadata.key, "name": metadata.name, "messages": metadata.message_count,
            "state": state_json(state), "created_at": json_time(metadata.created_at),
            "last_activity": json_time(metadata.last_activity), "_state": state, "_meta": metadata}


def _public(row: dict[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in row.items() if not k.startswith("_")}


def _print_sessions(out: Output, rows: list[dict[str, Any]], *, turns: bool = False, empty: str) -> None:
    if out.as_json:
        out.json([_public(row) for row in rows])
        return
    _sessions_table(out, rows, turns=turns, empty=empty)


def _sessions_table(out: Output, rows: Iterable[dict[str, Any]], *, turns: bool = False, empty: str) -> int:
    columns = ["KEY", "NAME", "MESSAGES", "STATE", "CREATED", "LAST ACTIVITY"] + (["TURN STARTED"] if turns else [])
    return out.table(columns, ([row["key"], row["name"], row["messages"], state_text(row["_state"]),
                                show_time(row["_meta"].created_at), show_time(row["_meta"].last_activity)]
                               + ([show_time(row["_state"].turn_started_at if row["_state"] else None)] if turns
                                  else [])
                               for row in rows), empty=empty)


#: Sessions a table shows unless told otherwise, and how many a read of the store fetches at a time.
PAGE = 50
_BLOCK = 1000


@attrs.define
class _Walk:
    """The listing from ``cursor`` on, read a block at a time (each block one read of the store): the sessions,
    then the total the first block counted and the cursor after the last session shown (``None``: the end)."""

    store: SessionStore
    prefix: str | None
    cursor: str | None
    total: int = 0

    def sessions(self, wanted: int | None) -> Iterator[SessionMetadata]:
        """The next ``wanted`` sessions (all of them when ``None``)."""
        if wanted is None and self.cursor is None:
            # Every session, read at once: pages read one after another miss the sessions that change between
            # two reads (they move to the front, which the walk has passed), and ``--all`` promises every one.
            everything = self.store.list_sessions_with_metadata(self.prefix)
            self.total = len(everything)
            yield from everything
            return
        first = True
        while wanted is None or wanted > 0:
            try:
                page = self.store.list_sessions_page(_BLOCK if wanted is None else min(_BLOCK, wanted), self.cursor,
                                                     prefix=self.prefix)
            except InvalidArgument:
                if not first or self.cursor is None:  # only the first cursor is the user's
                    raise
                raise click.ClickException(f"--after: {preview(self.cursor)!r} is not a cursor a page of "
                                           "`eventstore sessions` printed") from None
            if first:
                self.total, first = page.total, False
            yield from page.sessions
            self.cursor = page.next_cursor
            if wanted is not None:
                wanted -= len(page.sessions)
            if self.cursor is None:
                return


def _summary(env: Env, walk: _Walk, shown: int, limit: int | None, as_json: bool) -> list[str]:
    """How many sessions were shown of how many, and the command that shows the next ones."""
    among = f" whose key starts with {walk.prefix!r}" if walk.prefix else ""
    lines = [f"{shown:,} of {walk.total:,} sessions{among}."]
    if walk.cursor is not None:
        options = "".join(f" {option}" for option in (
            "--json" if as_json else "", "" if limit is None else f"--limit {limit}",
            "" if walk.prefix is None else f"--prefix {_quote(walk.prefix)}") if option)
        lines.append(f"Next: {env.command('sessions')}{options} --after {walk.cursor}")
    return lines


# -- commands ------------------------------------------------------------------------------


@click.command()
@click.option("--limit", type=click.IntRange(min=1), metavar="N",
              help=f"Show at most N sessions ({PAGE} by default; with --json, every session unless given).")
@click.option("--all", "everything", is_flag=True,
              help="Show every session, read at once (past 1,000 sessions, printed as plain columns).")
@click.option("--after", metavar="CURSOR", help="Continue where an earlier listing ended (it prints the command).")
@click.option("--prefix", metavar="TEXT", help="Only the sessions whose key starts with TEXT.")
@click.option("--running", is_flag=True, help="Only sessions whose state is running, latest turn first.")
@click.option("--stuck", type=float, metavar="SECS",
              help="Only running sessions whose turn started more than SECS seconds ago, oldest first.")
@output_options
@pass_env
def sessions(env: Env, limit: int | None, everything: bool, after: str | None, prefix: str | None, running: bool,
             stuck: float | None, as_json: bool) -> None:
    """List the live sessions, most recent first, a page at a time.

    Shows each session's key, name, message count, run state, creation time and
    last activity (in your local time zone). The last line counts the sessions
    and, when more follow, gives the command that lists the next ones. With
    --json, one JSON object a line for every session (or --limit N of them; the
    next command then goes to stderr).

    \b
    Example:
        eventstore sessions
        eventstore sessions --limit 200 --prefix telegram_
        eventstore sessions --all --json > sessions.jsonl
        eventstore sessions --stuck 600 --json
    """
    if running and stuck is not None:
        raise click.ClickException("give --running or --stuck SECS, not both")
    if everything and limit is not None:
        raise click.ClickException("give --limit N or --all, not both")
    paging = [name for name, given in (("--limit", limit is not None), ("--all", everything),
                                        ("--after", after is not None), ("--prefix", prefix is not None)) if given]
    if (running or stuck is not None) and paging:
        raise click.ClickException(f"{paging[0]} lists the sessions by activity; not with --running or --stuck")
    if stuck is not None and not stuck >= 0:  # NaN too
        raise click.ClickException(f"--stuck: {stuck:g} is not a number of seconds (give 0 or more)")
    out = Output(as_json)
    with env.open() as store:
        if running or stuck is not None:
            if stuck is not None:
                found = store.list_stuck_sessions(stuck)
                empty = f"No session has been running for more than {stuck:g} s."
            else:
                found, empty = store.list_running_sessions(), "No running sessions."
            rows = [_metadata_row(store, metadata) for metadata in found]
            if as_json:
                out.json_lines(_public(row) for row in rows)
            else:
                _sessions_table(out, rows, turns=True, empty=empty)
            return
        walk = _Walk(store, prefix, after)
        wanted = None if everything or (as_json and limit is None) else limit or PAGE
        shown = 0
        if as_json:
            for metadata in walk.sessions(wanted):
                out.json_lines([_public(_metadata_row(store, metadata))])
                shown += 1
            if walk.cursor is not None:
                for line in _summary(env, walk, shown, limit, as_json):
                    click.echo(terminal_safe(line), err=True)
            return
        if wanted is not None and wanted <= TABLE_ROWS:
            shown = _sessions_table(out, [_metadata_row(store, metadata) for metadata in walk.sessions(wanted)],
                                    empty="")
        else:
            shown = print_columns(("KEY", "NAME", "MESSAGES", "STATE", "CREATED", "LAST ACTIVITY"),
                                  ((metadata.key, metadata.name, metadata.message_count,
                                    state_text(store.get_session_state(metadata.key)),
                                    show_time(metadata.created_at), show_time(metadata.last_activity))
                                   for metadata in walk.sessions(wanted)))
    if not walk.total:
        out.line("No sessions.")
        return
    if not shown:
        out.line("No sessions after that cursor.")
    for line in _summary(env, walk, shown, limit, as_json):
        out.line(line)


def _view_json(view: SessionView) -> dict[str, Any]:
    metadata = view.metadata
    return {"key": view.key, "version": view.version, "exists": view.exists, "name": view.name,
            "state": state_json(view.state),
            "created_at": json_time(metadata.created_at) if metadata else None,
            "last_activity": json_time(metadata.last_activity) if metadata else None,
            "message_count": len(view.timestamped),
            "messages": [_message_json(i, m.message, m.created_at) for i, m in enumerate(view.timestamped)]}


def show_view(out: Output, view: SessionView, when: str = "") -> None:
    """Print a session view: its head, then its messages."""
    if out.as_json:
        out.json(_view_json(view))
        return
    title = view.key + (f" — {view.name}" if view.name else "")
    out.line(title + when, style="bold")
    metadata = view.metadata
    out.fields([("version", view.version), ("state", state_text(view.state)),
                ("messages", len(view.timestamped)),
                ("created", show_time(metadata.created_at if metadata else None)),
                ("last activity", show_time(metadata.last_activity if metadata else None))])
    rows = view.timestamped
    # A payload column only where a message has one: sessions without payloads show as they always did.
    payloads = any(stored_payload_of(m.message) is not None for m in rows)
    out.table_or_columns(["#", "TIME", "ROLE", "CONTENT"] + (["PAYLOAD"] if payloads else []),
                         ([i + 1, show_time(m.created_at), m.message.role, m.message.content]
                          + ([payload_text(m.message)] if payloads else []) for i, m in enumerate(rows)),
                         len(rows), empty="(no messages)", bodies={"CONTENT", "PAYLOAD"})


@click.command()
@click.argument("key")
@click.option("--version", type=int, metavar="N", help="Show the session as it was after its N-th event.")
@click.option("--as-of", "as_of", metavar="TIME",
              help="Show the session as it was at TIME "
                   "(ISO 8601, a year down to a second, e.g. 2026-03 or 2026-03-01T14:05; without a zone, local time).")
@output_options
@pass_env
def show(env: Env, key: str, version: int | None, as_of: str | None, as_json: bool) -> None:
    """Show a session now, or at an earlier point.

    Prints its name, state, version and times, then every message (past 1,000
    messages, as plain columns printed as they come, each message on one line
    with its line breaks shown as \\n; --json gives the exact text).

    With --version N or --as-of TIME, the session as it was then (a time names
    the end of its last given unit: 2026-03 is the end of that month,
    2026-03-01T14:05 the end of that minute; a time in the hour the clocks go
    back is shown with its UTC offset, which --as-of reads).

    \b
    Example:
        eventstore show demo:lisbon-trip
        eventstore show demo:lisbon-trip --version 4
        eventstore show demo:lisbon-trip --as-of 2026-03-01T14:05
    """
    if version is not None and as_of is not None:
        raise click.ClickException("give --version N or --as-of TIME, not both")
    moment = None if as_of is None else parse_time(as_of)
    out = Output(as_json)
    with env.open() as store:
        if version is None and moment is None:
            require_live(env, store, key)
            view = store.session_at(key)
        else:
            session_history(env, store, key)  # the key had events: reads only their first page
            with versions_of(env, key):
                view = store.session_at(key, version=version, as_of=moment)
            if not view.exists:
                when = f"at version {version}" if version is not None else f"as of {show_time(moment)}"
                raise click.ClickException(f"session {key!r} did not exist {when} (it was not yet created, "
                                           f"or deleted); see `{env.key_command('history', key)}`")
    when = "" if version is None and moment is None else (
        f" (as of {show_time(moment)})" if moment is not None else f" (at version {version})")
    show_view(out, view, when)


@click.command()
@click.argument("key")
@output_options
@pass_env
def history(env: Env, key: str, as_json: bool) -> None:
    """List every event of a session.

    Oldest first, across deletions and reuse of the key.

    Each event shows its version, global position, time, type and what it
    says (past 1,000 events, as plain columns printed as they come). With
    --json, one event a line in the export format (times local).

    \b
    Example:
        eventstore history demo:lisbon-trip
        eventstore history demo:lisbon-trip --json | jq .type
    """
    out = Output(as_json)
    with env.open() as store:
        # Streamed: a page of events is printed before the next is read (``history | head`` answers at once).
        events = session_history(env, store, key)
        if as_json:
            out.json_lines({**event_to_dict(r), "recorded_at": json_time(r.recorded_at)} for r in events)
            return
        first = list(itertools.islice(events, TABLE_ROWS + 1))  # enough to choose a table or columns
        out.table_or_columns(["VERSION", "POSITION", "TIME", "EVENT", "WHAT"],
                             ([r.version, r.position, show_time(r.recorded_at), type(r.event).__name__,
                               describe_event(r.event) + (" [redacted]" if r.redacted else "")]
                              for r in itertools.chain(first, events)),
                             len(first), title=f"History of {key}")


def _replay_rows(store: SessionStore, key: str, before: SessionView, stop: int | None
                 ) -> Iterator[tuple[RecordedEvent, SessionView, list[dict[str, Any]]]]:
    for recorded, view in store.replay(key, from_version=before.version + 1, to_version=stop):
        yield recorded, view, changes(before, view, recorded.event)
        before = view


@click.command()
@click.argument("key")
@click.option("--from", "start", type=click.IntRange(min=1), default=1, show_default=True, metavar="N",
              help="Start at the session's N-th event.")
@click.option("--to", "stop", type=click.IntRange(min=1), metavar="N",
              help="Stop after the session's N-th event (not before --from).")
@output_options
@pass_env
def replay(env: Env, key: str, start: int, stop: int | None, as_json: bool) -> None:
    """Step through a session, showing what each event changed.

    For each event: messages added (+), removed (-) or replaced (~), renames,
    state moves, deletions, restores and redactions. With --json, one object a
    line with the changes and the session's size after the event.

    \b
    Example:
        eventstore replay demo:lisbon-trip
        eventstore replay demo:lisbon-trip --from 5 --to 8 --json
    """
    if stop is not None and stop < start:
        raise click.BadOptionUsage("stop", f"--to {stop} comes before --from {start}: give --to N of at least "
                                           f"{start}, or leave it out to replay to the last event")
    out = Output(as_json)
    with env.open() as store:
        session_history(env, store, key)
        try:
            before = store.session_at(key, version=start - 1)
        except InvalidVersion:
            before = None
        rows = _replay_rows(store, key, before, stop) if before is not None else iter(())
        first = next(rows, None)
        if first is None:  # --from past the last version
            raise click.ClickException(f"--from {start}: session {key!r} has versions 1 to "
                                       f"{store.session_version(key)}")
        steps = itertools.chain([first], rows)
        if as_json:
            out.json_lines({"version": r.version, "position": r.position, "recorded_at": json_time(r.recorded_at),
                            "type": type(r.event).__name__, "changes": found, "exists": view.exists,
                            "name": view.name, "messages": view.message_count}
                           for r, view, found in steps)
            return
        for recorded, view, found in steps:
            after = f"  → {counted(view.message_count, 'message')}" if view.exists else "  → (no session)"
            out.line(Text.assemble((f"v{recorded.version}", "bold cyan"), f"  {show_time(recorded.recorded_at)}  ",
                                   (type(recorded.event).__name__, "bold"), after))
            for change in found:
                out.line(Text("    ") + change_text(change))


def _hit_json(hit: SearchHit) -> dict[str, Any]:
    return {k: json_time(v) if isinstance(v, datetime) else v for k, v in attrs.asdict(hit).items()}


@click.command()
@click.argument("words", nargs=-1, required=True)
@click.option("--messages", "in_messages", is_flag=True,
              help="List the matching messages themselves instead of the sessions that contain them.")
@click.option("--limit", type=click.IntRange(min=1), metavar="N",
              help="At most N results (50 by default for sessions).")
@output_options
@pass_env
def search(env: Env, words: Sequence[str], in_messages: bool, limit: int | None, as_json: bool) -> None:
    """Find the sessions whose messages contain any of WORDS.

    Words are matched whole and case-insensitively; sessions come best match
    first (BM25 over their messages; equal scores, the most recent first). With
    --messages, the matching messages are listed one by one, best first. A
    search index more than 10,000 events behind the log (after a bulk write)
    is brought up to date first, with a bar, when the store may be written.

    \b
    Example:
        eventstore search lisbon tram
        eventstore search deploy --messages --json
    """
    keyword = " ".join(words)
    out = Output(as_json)

    def find(store: SessionStore) -> tuple[list[SearchHit], list[dict[str, Any]]]:
        if in_messages:
            return store.search_messages(keyword, limit), []
        return [], [_metadata_row(store, m) for m in store.search(SessionQuery(keyword, limit))]

    found = None
    try:
        with env.open() as store:
            if store.search_index_lag() <= INDEX_CATCH_UP_FROM or not env.writable():
                found = find(store)
    except StoreReadOnly:
        # The search index was built by an earlier version: a writable open rebuilds it (derived data only).
        if not env.writable():
            raise
        with progress_bar("Rebuilding the search index") as progress, \
                env.open(write=True, rebuild_progress=progress) as store:
            found = find(store)
    if found is None:  # far behind the log (a bulk import): caught up once, rather than folded at every search
        with env.open(write=True) as store:
            index_for_search(store)
            found = find(store)
    hits, rows = found
    if in_messages:
        if as_json:
            out.json([_hit_json(hit) for hit in hits])
        else:
            out.table(["KEY", "#", "ROLE", "MATCH", "SCORE"],
                      ([hit.session_key, hit.index + 1, hit.message.role, preview(hit.snippet, 70), f"{hit.score:.2f}"]
                       for hit in hits), empty=f"No message matches {keyword!r}.")
        return
    _print_sessions(out, rows, empty=f"No session matches {keyword!r}.")


@click.command()
@output_options
@pass_env
def stats(env: Env, as_json: bool) -> None:
    """Count what the store holds, and say where its bytes go.

    Also lists each read model's checkpoint (the log position it has applied), and per named database its
    entries, key and value bytes and pages (branch, leaf, overflow), with the file's free pages. That reads
    every key and value: a few seconds on a store of millions of events.

    \b
    Example:
        eventstore stats
        eventstore stats --json | jq .events
        eventstore stats --json | jq '.usage.spaces[] | {name, value_bytes}'
    """
    out = Output(as_json)
    with env.open() as store:
        found = store.stats(databases=True)
    data = attrs.asdict(found)
    if as_json:
        out.json(data)
        return
    usage = found.usage
    assert usage is not None
    page = usage.page_size
    out.fields([("store", store.path), ("events", found.events), ("sessions", found.sessions),
                ("deleted sessions", found.deleted_sessions), ("messages", found.messages),
                ("bytes", f"{found.bytes} ({human_bytes(found.bytes)})"), ("snapshots", found.snapshots),
                ("last position", found.last_position), ("import receipts", found.import_receipts),
                ("free pages", f"{usage.free_pages} of {usage.file_pages} ({human_bytes(usage.free_pages * page)})")])
    out.table(["READ MODEL", "CODE VERSION", "POSITION", "UP TO DATE"],
              ([name, checkpoint.code_version, checkpoint.position,
                "yes" if checkpoint.position == found.last_position else "no"]
               for name, checkpoint in sorted(found.checkpoints.items())),
              title="Projection checkpoints", empty="No projection checkpoints.")
    out.table(["DATABASE", "ENTRIES", "KEY BYTES", "VALUE BYTES", "BRANCH", "LEAF", "OVERFLOW", "PAGE BYTES"],
              ([space.name, space.entries, space.key_bytes, space.value_bytes, space.branch_pages,
                space.leaf_pages, space.overflow_pages, human_bytes(space.pages * page)]
               for space in sorted(usage.spaces, key=lambda space: (-space.pages, -space.value_bytes, space.name))),
              title="Where the bytes go", empty="No database.")


COMMANDS = [sessions, show, history, replay, search, stats]
