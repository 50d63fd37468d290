"""Helpers of the reliability suites (test_crash, test_concurrency, test_resources, test_garbage).

Two halves:

* the harness side (imported by the tests): ``Worker`` starts one of the roles
  below as a separate Python process and collects what it reports, and the
  ``check_*`` functions compare a reopened store with those reports;
* the worker side (``python tests/_reliability.py ROLE JSON``): the roles
  themselves. A worker reports on stdout, one JSON array per line, each line
  written with a single ``os.write``: a write of less than ``PIPE_BUF`` bytes to
  a pipe is atomic, so a SIGKILL never leaves half a report behind.

A message written by a worker reads ``wid|seq|j|n|padding``: worker ``wid``'s
``seq``-th call, message ``j`` of the ``n`` that call wrote. The harness parses
the log back into calls with it.

Nothing here imports pytest: workers import this module too.
"""

from __future__ import annotations

import hashlib
import json
import os
import random
import shutil
import signal
import subprocess
import sys
import threading
import time
from collections import defaultdict
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
REPO = HERE.parent

# -- message texts ---------------------------------------------------------------------


def text(wid: str, seq: int, j: int, n: int, pad: int = 0) -> str:
    return f"{wid}|{seq}|{j}|{n}|" + "x" * pad


def parse(content: str) -> tuple[str, int, int, int] | None:
    parts = content.split("|")
    if len(parts) != 5:
        return None
    wid, seq, j, n, _ = parts
    try:
        return wid, int(seq), int(j), int(n)
    except ValueError:
        return None


def emit(*fields: Any) -> None:
    line = (json.dumps(fields) + "\n").encode()
    assert len(line) < 4096, "a report line must stay under PIPE_BUF to be atomic"
    os.write(1, line)


# -- harness side ----------------------------------------------------------------------


class Worker:
    """One worker process and the lines it reported."""

    counter = 0

    def __init__(self, role: str, args: dict[str, Any], log_dir: Path) -> None:
        Worker.counter += 1
        self.role = role
        self.args = args
        log_dir.mkdir(parents=True, exist_ok=True)
        self.stderr_path = log_dir / f"{role}-{Worker.counter}.stderr"
        environment = dict(os.environ)
        environment["PYTHONPATH"] = os.pathsep.join(
            [str(REPO), str(HERE)] + ([environment["PYTHONPATH"]] if environment.get("PYTHONPATH") else []))
        with open(self.stderr_path, "wb") as stderr:
            self.process = subprocess.Popen(
                [sys.executable, str(HERE / "_reliability.py"), role, json.dumps(args)],
                stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=stderr, env=environment)
        self.records: list[list[Any]] = []
        self._changed = threading.Condition()
        self._eof = False
        self._reader = threading.Thread(target=self._read, daemon=True)
        self._reader.start()
        self.killed = False

    def _read(self) -> None:
        assert self.process.stdout is not None
        for raw in self.process.stdout:
            if not raw.endswith(b"\n"):
                break  # cannot happen: every line is one atomic write
            record = json.loads(raw)
            with self._changed:
                self.records.append(record)
                self._changed.notify_all()
        with self._changed:
            self._eof = True
            self._changed.notify_all()

    @property
    def pid(self) -> int:
        return self.process.pid

    def wait_for(self, predicate: Callable[[list[Any]], bool], timeout: float, start: int = 0) -> bool:
        """Wait until a record from index ``start`` on satisfies ``predicate``; False on timeout or exit."""
        deadline = time.monotonic() + timeout
        with self._changed:
            while True:
                if any(predicate(record) for record in self.records[start:]):
                    return True
                remaining = deadline - time.monotonic()
                if self._eof or remaining <= 0:
                    return False
                self._changed.wait(remaining)

    def wait_ready(self, timeout: float = 60) -> bool:
        return self.wait_for(lambda record: record[0] == "ready", timeout)

    def kill(self) -> int:
        """SIGKILL the worker and collect everything it reported; return its exit status."""
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGKILL)
            self.killed = True
        status = self.process.wait(60)
        self._reader.join(60)
        return status

    def finish(self, timeout: float = 120) -> int:
        """Wait for the worker to exit on its own."""
        try:
            status = self.process.wait(timeout)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait(10)
            raise AssertionError(f"{self.role} worker did not finish in {timeout}s:\n{self.stderr()}") from None
        self._reader.join(60)
        return status

    def last(self) -> list[Any] | None:
        with self._changed:
            return self.records[-1] if self.records else None

    def of_kind(self, kind: str) -> list[list[Any]]:
        with self._changed:
            return [record for record in self.records if record[0] == kind]

    def stderr(self) -> str:
        return self.stderr_path.read_text(errors="replace")[-4000:]

    def check_died_as_expected(self, status: int) -> None:
        """A killed worker must have died of the SIGKILL, not of an error of its own before it."""
        if status == -signal.SIGKILL or (status == 0 and self.of_kind("done")):
            return
        raise AssertionError(f"{self.role} worker {self.args.get('wid')} exited with {status} before it was "
                             f"killed:\n{self.stderr()}")


class Calls:
    """What workers acknowledged: per worker id, the calls they saw return."""

    def __init__(self) -> None:
        self.acked: dict[str, dict[int, tuple[str, int, int]]] = defaultdict(dict)  # wid -> seq -> (key, version, n)

    def add(self, records: Iterable[list[Any]]) -> None:
        for record in records:
            if record[0] == "ack":
                _, wid, seq, key, version, n = record
                self.acked[wid][seq] = (key, version, n)

    def count(self) -> int:
        return sum(len(calls) for calls in self.acked.values())

    def messages(self) -> int:
        return sum(n for calls in self.acked.values() for _, _, n in calls.values())


def check_log(store: Any, calls: Calls, other_events: int = 0) -> dict[str, int]:
    """Every acknowledged call is in the log, every call in the log is whole, positions are gap-free.

    ``other_events``: events in the log that no worker wrote (seeding), which must be message appends
    whose text does not parse as a worker's.
    Returns figures: events, calls found, calls found that no worker acknowledged.
    """
    from eventstore.events import MessageAppended

    events = list(store.events())
    positions = [event.position for event in events]
    assert positions == list(range(1, len(events) + 1)), "positions are not 1..N without gaps"
    versions: dict[str, int] = defaultdict(int)
    for event in events:
        versions[event.session_key] += 1
        assert event.version == versions[event.session_key], (
            f"position {event.position}: session {event.session_key!r} version {event.version}, "
            f"expected {versions[event.session_key]}")
    found: dict[tuple[str, int], list[tuple[int, int, int, str, int]]] = defaultdict(list)
    foreign = 0
    for event in events:
        assert isinstance(event.event, MessageAppended), f"unexpected event {event!r}"
        parsed = parse(event.event.message.content)
        if parsed is None:
            foreign += 1
            continue
        wid, seq, j, n = parsed
        found[(wid, seq)].append((j, n, event.position, event.session_key, event.version))
    assert foreign == other_events, f"{foreign} events were not written by a worker, {other_events} expected"
    for (wid, seq), parts in found.items():
        parts.sort(key=lambda part: part[2])
        n = parts[0][1]
        assert [part[0] for part in parts] == list(range(n)), (
            f"call {wid}/{seq} is half-written: messages {[part[0] for part in parts]} of {n}")
        assert [part[2] for part in parts] == list(range(parts[0][2], parts[0][2] + n)), (
            f"call {wid}/{seq} is not contiguous in the log")
        assert len({part[3] for part in parts}) == 1, f"call {wid}/{seq} spans sessions"
        assert [part[4] for part in parts] == list(range(parts[0][4], parts[0][4] + n))
    unacknowledged = 0
    for wid, acked in calls.acked.items():
        last_version: dict[str, int] = {}
        for seq in sorted(acked):
            key, version, n = acked[seq]
            # One caller's calls to one session keep their order.
            assert version > last_version.get(key, 0), f"worker {wid}: call {seq} got version {version} of {key!r}"
            last_version[key] = version
        for seq, (key, version, n) in acked.items():
            parts = found.get((wid, seq), [])
            assert parts, f"acknowledged call {wid}/{seq} ({n} messages to {key!r}, version {version}) is lost"
            assert (parts[0][3], parts[-1][4], len(parts)) == (key, version, n), (
                f"call {wid}/{seq}: acknowledged as {(key, version, n)}, stored as "
                f"{(parts[0][3], parts[-1][4], len(parts))}")
    seqs_by_worker: dict[str, set[int]] = defaultdict(set)
    for wid, seq in found:
        seqs_by_worker[wid].add(seq)
    for wid, seqs in seqs_by_worker.items():
        acked = calls.acked.get(wid, {})
        extra = seqs - set(acked)
        # A worker runs one call at a time: at most its call in flight when killed is in
        # the log without an acknowledgement, and it is the one after its last acknowledged call.
        assert extra <= {max(acked, default=-1) + 1}, f"worker {wid}: unacknowledged calls {sorted(extra)} in the log"
        unacknowledged += len(extra)
    return {"events": len(events), "calls": len(found), "unacknowledged": unacknowledged}


# -- the command mix: every kind of write, checked against a plain model ----------------
#
# A commander worker owns its sessions (``wid-a``, ``wid-b`` and the forks it makes), so its calls alone decide
# them: before each call it reports the call (``intent``), after it returns ``did``. The harness replays the
# intents on a ``Model``; the store must hold exactly the model after the acknowledged calls, or after those and
# the one call in flight when the worker died: never a part of a call.

#: A message as a report carries it: role, content, payload (or None).
Message = tuple[str, str, "dict[str, Any] | None"]


class Model:
    """The plain in-memory model of a commander's sessions: per key, its version and its messages."""

    def __init__(self) -> None:
        self.versions: dict[str, int] = {}
        self.messages: dict[str, list[Message]] = {}

    def copy(self) -> Model:
        other = Model()
        other.versions = dict(self.versions)
        other.messages = {key: list(messages) for key, messages in self.messages.items()}
        return other

    def live(self, key: str) -> list[Message] | None:
        return self.messages.get(key)

    def _record(self, key: str, events: int, messages: list[Message]) -> None:
        self.versions[key] = self.versions.get(key, 0) + events
        self.messages[key] = messages

    def apply(self, command: dict[str, Any]) -> object:
        """Apply one command; return what the store's call answers (a version, or the popped message)."""
        op, key = command["op"], command["key"]
        current = self.messages.get(key, [])
        if op == "append_many":
            added = [_message_of(raw) for raw in command["messages"]]
            self._record(key, len(added), current + added)
        elif op == "pop_last":
            if not current:
                return None
            self._record(key, 1, current[:-1])
            return current[-1]
        elif op == "replace":
            kept = [current[index] for index in command["keep"]]
            self._record(key, 1, kept + [_message_of(raw) for raw in command["messages"]])
        elif op == "fork":
            self._record(key, 1, list(self.messages[command["source"]]))
        elif op == "transaction":
            return [self.apply(part) for part in command["parts"]]
        else:
            raise ValueError(op)
        return self.versions[key]


def _message_of(raw: list[Any]) -> Message:
    return raw[0], raw[1], raw[2]


def _new_messages(rng: random.Random, wid: str, seq: int, part: int, count: int, pad: int) -> list[list[Any]]:
    """Messages of a call; about half carry a payload (a lone surrogate included, which only payloads keep)."""
    messages = []
    for j in range(count):
        content = text(wid, seq, j, count, rng.randint(0, pad)) + f"#{part}"
        payload = ({"wid": wid, "seq": seq, "j": j, "values": [1, 2.5, None, True, "\ud800", {"nested": [part]}]}
                   if rng.random() < 0.5 else None)
        messages.append([rng.choice(["user", "assistant", "tool"]), content, payload])
    return messages


def next_command(rng: random.Random, model: Model, wid: str, seq: int, pad: int, part: int = 0,
                 in_transaction: bool = False) -> dict[str, Any]:
    """A random command on the worker's sessions, valid in the state ``model`` describes."""
    keys = [f"{wid}-a", f"{wid}-b", *sorted(key for key in model.messages if "-f" in key)[-1:]]  # one fork
    key = rng.choice(keys)
    kinds = ["append_many", "append_many", "pop_last", "replace", "fork", "transaction"]
    kind = rng.choice(kinds[:-1] if in_transaction else kinds)
    if kind == "append_many":
        return {"op": kind, "key": key, "messages": _new_messages(rng, wid, seq, part, rng.randint(1, 4), pad)}
    if kind == "pop_last":
        return {"op": kind, "key": key}
    if kind == "replace":
        current = model.live(key) or []
        keep = sorted(rng.sample(range(len(current)), min(len(current), rng.randint(0, 3))))
        return {"op": kind, "key": key, "keep": keep,
                "messages": _new_messages(rng, wid, seq, part, rng.randint(1, 3), pad)}
    if kind == "fork":
        sources = [source for source in keys if model.live(source)]
        if not sources:
            return next_command(rng, model, wid, seq, pad, part, in_transaction)
        return {"op": kind, "key": f"{wid}-f{seq}.{part}", "source": rng.choice(sources)}
    parts: list[dict[str, Any]] = []
    scratch = model.copy()
    for index in range(rng.randint(2, 3)):
        parts.append(next_command(rng, scratch, wid, seq, pad, index + 1, in_transaction=True))
        scratch.apply(parts[-1])
    return {"op": kind, "key": key, "parts": parts}


def run_command(target: Any, command: dict[str, Any], model: Model) -> object:
    """Run a command on a store, or queue it on a ``transaction()``; return the call's answer. ``model`` is the
    sessions as the calls before left them (the messages a replacement keeps come from it); it is advanced."""
    from eventstore import ChatMessage

    def messages(raws: Iterable[Message | list[Any]]) -> list[Any]:
        return [ChatMessage(role, content, payload=payload) for role, content, payload in raws]

    op, key = command["op"], command["key"]
    if op == "transaction":
        with target.transaction() as tx:
            pending: list[Any] = [run_command(tx, part, model) for part in command["parts"]]
        return [answer.result for answer in pending]
    current = model.live(key) or []
    model.apply(command)
    if op == "append_many":
        return target.append_many(key, messages(command["messages"]))
    if op == "pop_last":
        return target.pop_last(key)
    if op == "replace":
        kept = [current[index] for index in command["keep"]]
        return target.replace_messages(key, messages([*kept, *command["messages"]]))
    return target.fork(command["source"], key)


def answer_of(answer: object) -> object:
    """A call's answer as the model gives it."""
    from eventstore import ChatMessage

    if isinstance(answer, list):
        return [answer_of(item) for item in answer]
    if isinstance(answer, ChatMessage):
        return answer.role, answer.content, answer.payload
    return answer


class Commands:
    """What commander workers reported: per worker, the commands by seq, and the seqs acknowledged."""

    def __init__(self) -> None:
        self.intents: dict[str, dict[int, dict[str, Any]]] = defaultdict(dict)
        self.acked: dict[str, set[int]] = defaultdict(set)

    def add(self, records: Iterable[list[Any]]) -> None:
        for record in records:
            if record[0] == "intent":
                self.intents[record[1]][record[2]] = record[3]
            elif record[0] == "did":
                self.acked[record[1]].add(record[2])

    def count(self) -> int:
        return sum(len(seqs) for seqs in self.acked.values())


def stored_sessions(store: Any) -> tuple[dict[str, int], dict[str, list[Message]]]:
    """Each session's version (from the log, whose positions must run 1..N) and the live sessions' messages."""
    versions: dict[str, int] = defaultdict(int)
    for expected, event in enumerate(store.events(), start=1):
        assert event.position == expected, f"position {event.position} where {expected} was due"
        versions[event.session_key] += 1
        assert event.version == versions[event.session_key], f"{event.session_key!r}: version gap at {event.version}"
    messages = {key: [(m.role, m.content, m.payload) for m in store.load(key)] for key in store.list_sessions()}
    return dict(versions), messages


def check_commands(store: Any, commands: Commands) -> dict[str, int]:
    """Each commander's sessions are its model after its acknowledged calls, or after those and the call in
    flight when it died; figures: calls found committed without an acknowledgement."""
    versions, messages = stored_sessions(store)
    unacknowledged = 0
    for wid, intents in commands.intents.items():
        acked = commands.acked.get(wid, set())
        done = len(acked)
        assert acked == set(range(done)), f"worker {wid}: acknowledged calls {sorted(acked)} are not 0..{done - 1}"
        assert set(intents) <= set(range(done + 1)), f"worker {wid}: reported calls {sorted(intents)}"
        model = Model()
        for seq in range(done):
            model.apply(intents[seq])
        candidates = [model]
        if done in intents:
            candidates.append(model.copy())
            candidates[-1].apply(intents[done])
        seen = None
        for index, candidate in enumerate(candidates):
            keys = set(candidate.versions) | {key for key in versions if key.startswith(f"{wid}-")}
            mine = ({key: versions.get(key, 0) for key in keys},
                    {key: messages[key] for key in keys if key in messages})
            wanted = ({key: candidate.versions.get(key, 0) for key in keys}, candidate.messages)
            if mine == wanted:
                unacknowledged += index
                break
            seen = mine
        else:
            raise AssertionError(f"worker {wid}: the store holds neither the model after its {done} acknowledged "
                                 f"calls nor after the one in flight ({intents.get(done)}):\nstored {seen}\n"
                                 f"model {candidates[0].versions} {candidates[0].messages}")
    return {"unacknowledged": unacknowledged}


def public_state(store: Any) -> dict[str, Any]:
    """Everything the read models answer, through the public API."""
    keys = sorted(store.list_sessions())
    return {
        "metadata": store.list_sessions_with_metadata(),
        "running": store.list_running_sessions(),
        "sessions": {key: (store.load_with_timestamps(key), store.get_session_metadata(key),
                           store.get_session_name(key), store.get_session_state(key)) for key in keys},
    }


def check_projections(store_path: Path, scratch: Path) -> None:
    """``verify`` is green, and a copy whose read models were rebuilt from the log answers the same."""
    from eventstore import SessionStore

    with SessionStore(store_path, durable=False) as store:
        report = store.verify()
        assert report.ok, f"verify found problems: {report.problems[:10]}"
        before = public_state(store)
    shutil.rmtree(scratch, ignore_errors=True)
    scratch.mkdir(parents=True)
    shutil.copy2(store_path / "data.mdb", scratch / "data.mdb")
    with SessionStore(scratch, durable=False) as copy:
        copy.rebuild_projections()
        assert copy.verify().ok
        assert public_state(copy) == before, "read models differ from ones rebuilt from the log"
    shutil.rmtree(scratch, ignore_errors=True)


def run_threads(run: Callable[[int], object], count: int) -> None:
    """``run(0)`` to ``run(count - 1)``, each on a thread of its own, all at once; returns when every one ended."""
    threads = [threading.Thread(target=run, args=(index,)) for index in range(count)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()


def digest(store: Any) -> str:
    """SHA-256 over every entry of every named database: equal digests mean nothing was written."""
    environment = store._environment
    sha = hashlib.sha256()
    with environment._env.begin() as txn:
        names = [bytes(name) for name, _ in txn.cursor()]
        for name in names:
            sha.update(b"db:" + name)
            database = environment._env.open_db(name, txn=txn, create=False)
            for key, value in txn.cursor(db=database):
                sha.update(len(key).to_bytes(4, "big") + bytes(key) + len(value).to_bytes(8, "big") + bytes(value))
    return sha.hexdigest()


# -- worker side -----------------------------------------------------------------------


def _open(args: dict[str, Any]) -> Any:
    if args.get("initial_map"):
        from eventstore.storage import lmdb as _environment

        _environment._INITIAL_MAP_SIZE = args["initial_map"]
    from eventstore import SessionStore

    options = {"durable": args.get("durable", False), "snapshot_every": args.get("snapshot_every", 1000)}
    if args.get("max_size"):
        options["max_size"] = args["max_size"]
    return SessionStore(args["path"], **options)


def _one_call(store: Any, rng: random.Random, wid: str, seq: int, keys: list[str], batch_max: int, pad: int) -> None:
    from eventstore import ChatMessage

    key = rng.choice(keys)
    n = 1 if rng.random() < 0.5 else rng.randint(2, batch_max)
    size = rng.randint(0, pad)
    messages = [ChatMessage("user", text(wid, seq, j, n, size)) for j in range(n)]
    version = store.append(key, messages[0]) if n == 1 and rng.random() < 0.7 else store.append_many(key, messages)
    emit("ack", wid, seq, key, version, n)


def role_writer(args: dict[str, Any]) -> None:
    """Append single messages and batches until killed (or ``ops`` calls, or ``seconds``); with ``threads``,
    that many threads do so at once (their commits grouped), each reporting as a worker of its own."""
    store = _open(args)
    emit("ready", os.getpid())
    deadline = time.monotonic() + args.get("seconds", 120)
    done: list[int] = []

    def write(wid: str, rng: random.Random) -> None:
        keys = [*args["keys"], f"own-{wid}"]
        seq = 0
        while time.monotonic() < deadline and seq < args.get("ops", 1 << 60):
            _one_call(store, rng, wid, seq, keys, args.get("batch_max", 8), args.get("pad", 64))
            seq += 1
            if args.get("pause"):
                time.sleep(rng.uniform(0, args["pause"]))
        done.append(seq)

    threads = args.get("threads", 1)
    if threads == 1:
        write(args["wid"], random.Random(args["seed"]))
    else:
        writers = [threading.Thread(target=write, args=(f"{args['wid']}.{index}",
                                                        random.Random(f"{args['seed']}-{index}")))
                   for index in range(threads)]
        for writer in writers:
            writer.start()
        for writer in writers:
            writer.join()
    store.close()
    emit("done", sum(done))


def role_commander(args: dict[str, Any]) -> None:
    """Run every kind of command (appends with payloads, ``pop_last``, ``replace_messages``, ``fork``, a
    ``transaction()`` over several sessions) on this worker's own sessions until killed; each call's answer
    must be the model's."""
    store = _open(args)
    emit("ready", os.getpid())
    rng, wid, model = random.Random(args["seed"]), args["wid"], Model()
    deadline = time.monotonic() + args.get("seconds", 120)
    seq = 0
    while time.monotonic() < deadline:
        command = next_command(rng, model, wid, seq, args.get("pad", 40))
        emit("intent", wid, seq, command)
        answer = answer_of(run_command(store, command, model.copy()))
        expected = model.apply(command)
        if answer != expected:
            sys.stderr.write(f"call {seq} {command}: the store answered {answer!r}, the model {expected!r}\n")
            sys.exit(1)
        emit("did", wid, seq)
        seq += 1
        if args.get("pause"):
            time.sleep(rng.uniform(0, args["pause"]))
    store.close()
    emit("done", seq)


def role_maintainer(args: dict[str, Any]) -> None:
    """Write a little, then run ``op`` (compact, rebuild or vacuum), over and over until killed."""
    rng = random.Random(args["seed"])
    store = _open(args)
    emit("ready", os.getpid())
    wid, op = args["wid"], args["op"]
    deadline = time.monotonic() + args.get("seconds", 120)
    seq = 0
    while time.monotonic() < deadline:
        _one_call(store, rng, wid, seq, list(args["keys"]), 4, 16)
        seq += 1
        emit("start", op, seq, time.time())
        if op == "compact":
            for key in args["keys"]:
                store.compact(key)
        elif op == "rebuild":
            store.rebuild_projections()
        elif op == "vacuum":
            store.vacuum()
        else:
            raise ValueError(op)
        emit("end", op, seq, time.time())
    store.close()
    emit("done", seq)


def role_threads(args: dict[str, Any]) -> None:
    """Several threads, over two store objects on one path, append to private and shared sessions."""
    from eventstore import SessionStore

    path = args["path"]
    # The same store twice in one process, the second time spelled differently: one shared environment.
    stores = [SessionStore(path, durable=False),
              SessionStore(os.path.join(path, "..", os.path.basename(path)), durable=False)]
    emit("ready", os.getpid())
    errors: list[str] = []

    def run(index: int) -> None:
        wid = f"{args['wid']}.{index}"
        rng = random.Random(f"{args['seed']}-{index}")
        try:
            for seq in range(args["ops"]):
                _one_call(stores[index % 2], rng, wid, seq, [f"own-{wid}", "shared-1", "shared-2"], 5, 32)
        except BaseException as exc:  # reported, then the process fails
            errors.append(f"{wid}: {exc!r}")

    run_threads(run, args["threads"])
    for store in stores:
        store.close()
    if errors:
        sys.stderr.write("\n".join(errors))
        sys.exit(1)
    emit("done")


def consistency_problems(store: Any, previous: dict[str, int]) -> list[str]:
    """Checks of one reader pass through the public API; ``previous`` carries counts between passes.

    * metadata count read before ``load`` <= messages loaded <= count read after (counts never decrease);
    * within one session, each writer's messages appear in its call order and every call is whole;
    * append times never decrease along a session.
    """
    problems = []
    before = {m.key: m.message_count for m in store.list_sessions_with_metadata()}
    loaded = {key: store.load_with_timestamps(key) for key in before}
    after = {m.key: m.message_count for m in store.list_sessions_with_metadata()}
    for key, messages in loaded.items():
        if not before[key] <= len(messages) <= after.get(key, 1 << 60):
            problems.append(f"{key}: {len(messages)} messages loaded between counts {before[key]} and {after.get(key)}")
        if before[key] < previous.get(key, 0):
            problems.append(f"{key}: the count went back from {previous[key]} to {before[key]}")
        previous[key] = after.get(key, before[key])
        times = [m.created_at for m in messages]
        if times != sorted(times):
            problems.append(f"{key}: append times go backwards")
        last_seq: dict[str, tuple[int, int, int]] = {}
        for entry in messages:
            parsed = parse(entry.message.content)
            if parsed is None:
                continue
            wid, seq, j, n = parsed
            expected = (seq, j - 1, n) if j else None
            prior = last_seq.get(wid)
            if j == 0:
                if prior is not None and (prior[1] != prior[2] - 1 or prior[0] >= seq):
                    problems.append(f"{key}: {wid}/{seq} follows {wid}/{prior[0]} message {prior[1]}/{prior[2]}")
            elif prior != expected:
                problems.append(f"{key}: {wid}/{seq} message {j}/{n} follows {prior}")
            last_seq[wid] = (seq, j, n)
        for wid, (seq, j, n) in last_seq.items():
            if j != n - 1:
                problems.append(f"{key}: call {wid}/{seq} is half visible ({j + 1} of {n})")
    return problems


def snapshot_problems(store: Any) -> list[str]:
    """Checks inside ONE read transaction (store internals): the catalog, the message lists, the
    log's stream versions and the read models' checkpoints all describe the same moment."""
    problems = []
    with store._environment.read() as txn:
        head_position = store._log.head(txn)[0]
        inline = {model.name for model in store._read_models}  # deferred ones may lag by design
        for name, (_, position) in store._checkpoints.all(txn).items():
            if name in inline and position != head_position:
                problems.append(f"checkpoint {name} at {position}, log head at {head_position}")
        for stream_id, head in store._catalog.heads(txn):
            rows = store._messages.entries(txn, stream_id)
            if len(rows) != head.message_count:
                problems.append(f"{head.key}: {len(rows)} messages stored, {head.message_count} counted")
            version = store._log.stream_version(txn, stream_id)
            if version != head.version:
                problems.append(f"{head.key}: catalog at version {head.version}, log at {version}")
    return problems


def role_reader(args: dict[str, Any]) -> None:
    """Check consistency over and over until the stop file appears; report the figures."""
    store = _open(args)
    emit("ready", os.getpid())
    stop = Path(args["stop"])
    deadline = time.monotonic() + args.get("seconds", 120)
    previous: dict[str, int] = {}
    passes = 0
    problems: list[str] = []
    while not stop.exists() and time.monotonic() < deadline:
        problems += consistency_problems(store, previous)
        problems += snapshot_problems(store)
        passes += 1
    store.close()
    emit("checked", passes, problems[:10], len(problems))
    emit("done")


def role_fork_exit(args: dict[str, Any]) -> None:
    """Fork while a read transaction is open (in another thread, or with ``inside_read`` in the forking
    thread itself: from a ``verify`` progress callback); the child tries the parent's store, closes it
    and exits normally (unwinding its stack, atexit handlers, finalizers). Report what the child saw
    and whether the parent's reader slot survived."""
    from eventstore import ChatMessage, EventStoreError, StoreUsedAfterFork

    store = _open(args)
    store.append("parent", ChatMessage.user("before fork"))
    result: list[Any] = []

    def readers() -> str:
        return str(store._environment._env.readers())

    def fork_and_watch() -> None:
        before = readers()
        read_end, write_end = os.pipe()
        pid = os.fork()
        if pid == 0:
            os.close(read_end)
            outcome = []
            for name, call in (("load", lambda: store.load("parent")),
                               ("append", lambda: store.append("child", ChatMessage.user("from child"))),
                               ("close", store.close)):
                try:
                    call()
                    outcome.append([name, "ok"])
                except StoreUsedAfterFork:
                    outcome.append([name, "StoreUsedAfterFork"])
                except EventStoreError as exc:
                    outcome.append([name, f"{type(exc).__name__}: {exc}"])
            os.write(write_end, json.dumps(outcome).encode())
            os.close(write_end)
            sys.exit(0)  # a normal exit
        os.close(write_end)
        with os.fdopen(read_end) as reader:
            child = json.loads(reader.read() or "[]")
        _, status = os.waitpid(pid, 0)
        result.extend([child, os.waitstatus_to_exitcode(status), before == readers(), before, readers()])

    if args["inside_read"]:
        store.verify(progress=lambda done, total: None if result else fork_and_watch())
    else:
        holding, release = threading.Event(), threading.Event()

        def hold() -> None:
            with store._environment.read():
                holding.set()
                release.wait(60)

        holder = threading.Thread(target=hold)
        holder.start()
        holding.wait(60)
        fork_and_watch()
        release.set()
        holder.join()
    store.append("parent", ChatMessage.user("after fork"))
    emit("result", *result[:3], [m.content for m in store.load("parent")], store.verify().ok)
    sys.stderr.write(f"readers before the child's exit:\n{result[3]}\nafter:\n{result[4]}\n")
    # Nobody may vacuum while this process still has the store open, child's close() or not.
    emit("users_lock_held", _vacuum_refused(args["path"]))
    store.close()
    emit("done")


def _vacuum_refused(path: str) -> bool:
    script = ("import sys\nfrom eventstore import SessionStore, StoreBusy\n"
              "with SessionStore(sys.argv[1], durable=False) as store:\n"
              "    try:\n        store.vacuum()\n    except StoreBusy:\n        sys.exit(7)\n")
    return subprocess.run([sys.executable, "-c", script, path], timeout=60).returncode == 7


def role_killed_readers(args: dict[str, Any]) -> None:
    """Fork ``count`` children that each open the store, start a read and die of SIGKILL inside it.

    This process never opens the store itself: each child's open is its first on the path."""
    from eventstore import SessionStore

    died, failed = 0, 0
    for _ in range(args["count"]):
        pid = os.fork()
        if pid == 0:
            try:
                store = SessionStore(args["path"], durable=False)
                store.load("a")
                with store._environment.read():
                    os.kill(os.getpid(), signal.SIGKILL)
            except BaseException as exc:
                sys.stderr.write(f"{type(exc).__name__}: {exc}\n")
            finally:
                os._exit(3)
        _, status = os.waitpid(pid, 0)
        if os.WIFSIGNALED(status) and os.WTERMSIG(status) == signal.SIGKILL:
            died += 1
        else:
            failed += 1
    emit("killed", died, failed)
    emit("done")


def role_lost_reply(args: dict[str, Any]) -> None:
    """Make one call with an idempotency key, then die before telling anyone (a lost reply)."""
    from eventstore import ChatMessage

    store = _open(args)
    store.append(args["key"], ChatMessage.user(args["content"]), idempotency_key=args["idempotency_key"])
    os.kill(os.getpid(), signal.SIGKILL)


def role_cas(args: dict[str, Any]) -> None:
    """Compare-and-set appends: read the version, append expecting it, retry on WrongExpectedVersion."""
    from eventstore import ChatMessage, WrongExpectedVersion

    store = _open(args)
    emit("ready", os.getpid())
    conflicts = 0
    for seq in range(args["ops"]):
        while True:
            version = store.session_at(args["key"]).version
            try:
                new = store.append(args["key"], ChatMessage.user(text(args["wid"], seq, 0, 1)),
                                   expected_version=version)
            except WrongExpectedVersion:
                conflicts += 1
                continue
            emit("ack", args["wid"], seq, args["key"], new, 1)
            break
    store.close()
    emit("conflicts", conflicts)
    emit("done")


ROLES = {
    "cas": role_cas,
    "commander": role_commander,
    "writer": role_writer,
    "maintainer": role_maintainer,
    "threads": role_threads,
    "reader": role_reader,
    "fork_exit": role_fork_exit,
    "killed_readers": role_killed_readers,
    "lost_reply": role_lost_reply,
}

if __name__ == "__main__":
    ROLES[sys.argv[1]](json.loads(sys.argv[2]))
