"""``eventstore demo``: build a sample store of realistic conversations, then tour it step by step.

What lives here and why: the README's first command. It writes a few
conversations through the ordinary facade (appends, a streamed reply, a
retracted message, renames, state changes, tool calls packed into content, an
accidental clear and its restore, a deletion, a snapshot) on a clock that runs
from two days ago, so that history and point-in-time views have something to
show. Then it runs the ordinary commands (sessions, show, search, history,
show --as-of), printing each one first. Running it again reuses the sessions.
"""

from __future__ import annotations

import itertools
from datetime import UTC, datetime, timedelta
from typing import Any

import click

from .. import ChatMessage, SessionStore
from ..events import LastMessageRemoved
from ._context import Env, pass_env
from ._inspect import history, search, sessions, show
from ._output import Output, output_options, show_time

TRIP, TRIAGE, SQL, DRAFT = "demo:lisbon-trip", "demo:bug-triage", "demo:sql-help", "demo:old-draft"
#: The sessions a tour needs alive (the draft is deleted on purpose).
LIVE = (TRIP, TRIAGE, SQL)


class DemoClock:
    """A clock starting two days ago at 09:00 local time, moved on by each step of the demo."""

    def __init__(self) -> None:
        start = (datetime.now().astimezone() - timedelta(days=2)).replace(hour=9, minute=0, second=0, microsecond=0)
        self.now = start.astimezone(UTC)

    def __call__(self) -> datetime:
        return self.now

    def wait(self, seconds: float) -> None:
        self.now += timedelta(seconds=seconds)


def _trip(store: SessionStore, clock: DemoClock) -> None:
    key = TRIP

    def say(message: ChatMessage, pause: float) -> None:
        clock.wait(pause)
        store.append(key, message)

    say(ChatMessage.system("You are a friendly travel assistant. Be concise."), 0)
    say(ChatMessage.user("I have a long weekend in Lisbon in May. Which neighbourhood should I stay in?"), 5)
    # A streamed reply: appended, then completed in place.
    say(ChatMessage.assistant("Alfama for atmosphere, Príncipe Real for quiet"), 4)
    clock.wait(3)
    store.update_last(key, ChatMessage.assistant(
        "Alfama for atmosphere, Príncipe Real for quiet evenings, and Baixa if you want to walk everywhere."))
    clock.wait(40)
    store.set_session_name(key, "Lisbon weekend")
    say(ChatMessage.user("Is tram 28 worth it?"), 60)
    say(ChatMessage.assistant("Yes, if you ride it early (before 9) from Martim Moniz; later it is packed."), 6)
    say(ChatMessage.user("Actually, forget the trams: how expensive are taxis?"), 90)
    clock.wait(20)
    store.remove_last(key)  # the user took that question back
    say(ChatMessage.user("Which day trips can I do by train?"), 45)
    say(ChatMessage.assistant("Sintra (40 min from Rossio) for the palaces, and Cascais (35 min from Cais do "
                              "Sodré) for the coast. Both trains leave every 20 minutes."), 7)
    clock.wait(300)
    before_accident = store.session_version(key)
    store.clear_messages(key)  # an accident...
    clock.wait(120)
    store.restore(key, version=before_accident)  # ...undone
    clock.wait(5)
    store.compact(key)  # a snapshot at the current version


def _triage(store: SessionStore, clock: DemoClock) -> None:
    key = TRIAGE
    clock.wait(3600)
    store.set_session_state(key, "running", turn_id="turn-1")
    store.append(key, ChatMessage.user("The nightly export job failed. Can you check its logs?"))
    clock.wait(3)
    # Tool calls have no field of their own: they are JSON packed into the content.
    store.append(key, ChatMessage.assistant(
        '{"content":null,"tool_calls":[{"id":"call_1","name":"read_logs",'
        '"arguments":"{\\"job\\":\\"nightly-export\\",\\"lines\\":50}"}]}'))
    clock.wait(2)
    store.append(key, ChatMessage.tool('{"tool_call_id":"call_1","content":"ERROR disk quota exceeded on '
                                       '/var/exports (98% used)"}'))
    clock.wait(4)
    store.append(key, ChatMessage.assistant(
        "The export failed because /var/exports is full. Rotating exports older than 30 days frees about 40 GB."))
    store.set_session_state(key, "idle", turn_id="turn-1")
    clock.wait(30)
    store.set_session_name(key, "Nightly export failure")
    clock.wait(120)
    store.set_session_state(key, "running", turn_id="turn-2")
    store.append(key, ChatMessage.user("Please rotate the exports older than 30 days."))


def _sql(store: SessionStore, clock: DemoClock) -> None:
    key = SQL
    clock.wait(7200)
    store.append(key, ChatMessage.user("How do I find duplicate emails in a users table?"))
    clock.wait(5)
    store.append(key, ChatMessage.assistant("SELECT email FROM users WHERE COUNT(email) > 1;"))
    clock.wait(20)
    store.update_last(key, ChatMessage.assistant(
        "SELECT email, COUNT(*) FROM users GROUP BY email HAVING COUNT(*) > 1;  -- WHERE cannot hold aggregates"))
    store.set_session_name(key, "SQL: duplicate emails")
    clock.wait(600)
    store.set_session_name(key, "SQL duplicates")


def _draft(store: SessionStore, clock: DemoClock) -> None:
    key = DRAFT
    clock.wait(1800)
    store.append(key, ChatMessage.user("Draft a short toast for Sam's farewell."))
    clock.wait(6)
    store.append(key, ChatMessage.assistant("To Sam: for every bug you fixed and every friday you saved. Cheers!"))
    clock.wait(86400 // 2)
    store.delete_session(key, reason="no longer needed")


BUILDERS = ((TRIP, _trip), (TRIAGE, _triage), (SQL, _sql), (DRAFT, _draft))


def build(store: SessionStore, clock: DemoClock) -> tuple[list[str], list[str]]:
    """Write the demo sessions that the store does not have yet, and bring back a deleted one the tour needs:
    restored to its last live version, or written again when its content was redacted (a restore would bring
    back only "[redacted]"). Returns the keys written and the keys restored."""
    written, restored = [], []
    for key, builder in BUILDERS:
        history = store.history(key)
        if not history or (key in LIVE and not store.session_exists(key) and any(r.redacted for r in history)):
            builder(store, clock)
            written.append(key)
        elif key in LIVE and not store.session_exists(key):
            live = [r.version for r, view in store.replay(key) if view.exists]
            store.restore(key, version=live[-1])
            restored.append(key)
    return written, restored


def point_in_time(store: SessionStore) -> datetime:
    """A moment worth visiting: just before the trip's retracted question was removed."""
    events = store.history(TRIP)
    for earlier, recorded in itertools.pairwise(events):
        if isinstance(recorded.event, LastMessageRemoved):
            return earlier.recorded_at
    return events[len(events) // 2].recorded_at


@click.command()
@output_options
@click.pass_context
@pass_env
def demo(env: Env, ctx: click.Context, as_json: bool) -> None:
    """Create a sample store and take a guided tour.

    Writes four conversations (a streamed reply, a retracted message, renames,
    state changes, tool calls, an accidental clear and its restore, a deleted
    session, a snapshot) dated over the last two days, then shows the sessions,
    one conversation, a search, its history and a point-in-time view, printing
    each command first. Running it again reuses the sessions it made.

    \b
    Example:
        eventstore demo
        eventstore --store /tmp/demo-store demo
    """
    clock = DemoClock()
    with env.open(create=True, clock=clock) as store:
        written, restored = build(store, clock)
        moment = point_in_time(store).astimezone()
    as_of = moment.replace(tzinfo=None).isoformat(timespec="seconds")
    prefix = env.command()
    steps: list[tuple[str, str, Any, dict[str, Any]]] = [
        ("List the sessions, most recent activity first", "sessions", sessions, {}),
        ("Show one conversation", f"show {TRIP}", show, {"key": TRIP}),
        ("Search the messages for a word", "search sintra", search, {"words": ("sintra",)}),
        ("Read its history: every change is an event", f"history {TRIP}", history, {"key": TRIP}),
        ("Travel back in time: the conversation before a question was taken back",
         f"show {TRIP} --as-of {as_of}", show, {"key": TRIP, "as_of": as_of}),
    ]
    out = Output(as_json)
    if as_json:
        out.json({"store": str(env.store_path), "created": written, "restored": restored,
                  "sessions": list(dict(BUILDERS)),
                  "tour": [f"{prefix} {command}" for _, command, _, _ in steps]})
        return
    if written:
        out.line(f"Wrote the demo sessions {', '.join(written)} into the store at {env.store_path}.")
    if restored:
        out.line(f"Brought back the deleted demo sessions {', '.join(restored)} (restored to their last version).")
    if not written and not restored:
        out.line(f"The demo sessions are already in the store at {env.store_path}; touring them again.")
    for number, (title, command, target, arguments) in enumerate(steps, 1):
        out.line()
        out.line(f"Step {number} of {len(steps)}: {title}", style="bold magenta")
        out.line(f"$ {prefix} {command}", style="cyan")
        ctx.invoke(target, **arguments)
    out.line()
    out.line("Next, try:", style="bold")
    for command, why in ((f"replay {SQL}", "each event with what it changed"),
                         (f"history {DRAFT}", "a deleted session keeps its history"),
                         (f"restore {DRAFT} --version 2", "bring it back"),
                         ("sessions --running", "sessions in the middle of a turn"),
                         ("verify", "check the hash chain and the read models"),
                         ("export --all --out demo.events.jsonl", "a full backup")):
        out.line(f"  {prefix} {command:<40} # {why}")
    out.line(f"Times are shown in your local time zone; the tour's point in time is {show_time(moment)}.")


COMMANDS = [demo]
