"""Redaction that forgets: after ``redact`` and ``vacuum`` no byte sequence of the redacted text is left in any file
of the store's directory (the log, the snapshots, every read model, the term dictionary, free pages)."""

from __future__ import annotations

import io
import random
import shutil
import signal
import subprocess
import sys
from pathlib import Path

import pytest

import eventstore._log
from eventstore import REDACTED, ChatMessage, SessionQuery, SessionStore
from eventstore._compression import TRAINING_EVENTS, Dictionary, from_copy
from eventstore._stored_dictionary import _LEARNT, _SPAN
from eventstore.interchange import export_events
from eventstore.services.salvage import salvage
from eventstore.storage import MemoryStorage, WriteTransaction
from eventstore.storage import lmdb as lmdb_environment
from eventstore.storage.lmdb import Environment
from projections.search.tokenizer import token_spans

from conftest import FakeClock, lmdb_storage
from test_dictionary_damage import _damage

#: Words the redacted session shares with another one: they stay, and stay findable.
SHARED = ("harbour", "lantern")
#: The redacted session's messages: ASCII words in mixed case (stored as written in the log, folded in the
#: index), a one-character word (the shortest token the tokenizer keeps; four UTF-8 bytes), multi-byte words,
#: a word whose folded form differs (Crème: creme) and short words that only the whole-text search can look for.
SECRET_TEXTS = (
    "Meet me at the Harbour: passphrase Zanzibarquokka \U0001d537 Straße Crème 秘密鍵",
    "the lantern code is Vexillology and Quixotry",
    "typing",
)
UPDATED = "scratch that, it is Pumpernickel Obsequious"
#: Byte sequences of one to three bytes occur by chance in any binary file (hashes, ids, page headers),
#: so single tokens are looked for from four bytes on; shorter words are covered by the whole texts.
MIN_NEEDLE_BYTES = 4


def needles() -> set[bytes]:
    """Every sequence the redaction must remove: each message's whole text, and each of its tokens as
    written and as the index folds it (the UTF-8 of each)."""
    found: set[bytes] = set()
    for text in (*SECRET_TEXTS[:-1], UPDATED):
        found.add(text.encode())
        for start, end, term in token_spans(text):
            if term not in SHARED:
                found.update({text[start:end].encode(), term.encode()})
    return {needle for needle in found if len(needle) >= MIN_NEEDLE_BYTES}


def files_holding(directory: Path, needle: bytes) -> list[str]:
    """The files under ``directory`` whose raw bytes contain ``needle``."""
    return sorted(str(path.relative_to(directory)) for path in directory.rglob("*")
                  if path.is_file() and needle in path.read_bytes())


def leaks(directory: Path) -> dict[bytes, list[str]]:
    return {needle: files for needle in sorted(needles()) if (files := files_holding(directory, needle))}


def sessions(store: SessionStore, keyword: str) -> list[str]:
    return [metadata.key for metadata in store.search(SessionQuery(keyword))]


def write_history(store: SessionStore, clock: FakeClock) -> None:
    """The secret session (snapshots, an update, a restore, an idempotent append), sessions sharing two of its
    words, and filler."""
    store.append("other", ChatMessage.user("the harbour lantern is lit"))
    for text in SECRET_TEXTS:
        clock.advance(seconds=1)
        store.append("secret", ChatMessage.user(text), idempotency_key=f"append {text[:8]}")
    store.update_last("secret", ChatMessage.assistant(UPDATED))
    version = len(store.history("secret"))
    store.append("secret", ChatMessage.user("later"))
    store.restore("secret", version=version)
    store.compact("secret")
    for number in range(30):
        store.append(f"filler{number % 3}", ChatMessage.user(f"filler message {number} about the weather"))
    assert ["other", "secret"] == sorted(sessions(store, "harbour"))  # the index holds the words now


@pytest.fixture
def history(tmp_path: Path) -> Path:
    clock = FakeClock()
    with SessionStore(tmp_path, clock=clock, snapshot_every=3) as store:
        write_history(store, clock)
        assert store.stats().snapshots >= 2
    return tmp_path


class TestRedactedTextLeavesEveryFile:
    def test_the_needles_are_there_before_the_redaction(self, history: Path) -> None:
        """Every needle is in data.mdb before the redaction (so that its absence later means something)."""
        assert {needle: ["data.mdb"] for needle in sorted(needles())} == leaks(history)

    def test_a_popped_message_leaves_with_the_redaction(self, tmp_path: Path) -> None:
        """A message that ``pop_last`` removed with an idempotency key is not kept in the key's record."""
        with SessionStore(tmp_path) as store:
            store.append_many("secret", [ChatMessage.user("first"),
                                         ChatMessage.user(SECRET_TEXTS[0], {"note": SECRET_TEXTS[1]})])
            store.pop_last("secret", idempotency_key="pop")
            store.redact("secret", "user request")
            store.vacuum()
        assert {} == leaks(tmp_path)

    def test_redact_then_vacuum(self, history: Path) -> None:
        """After redact the index and every live record have forgotten the text, but freed pages may still
        hold it; after vacuum no file holds any of it, shared words are still found, and the store verifies."""
        with SessionStore(history) as store:
            store.redact("secret", "user request")
            assert ([], []) == (sessions(store, "zanzibarquokka"), sessions(store, "redacted"))
            store.catch_up()
        still_there = leaks(history)
        assert still_there and all(files == ["data.mdb"] for files in still_there.values())  # freed pages
        with SessionStore(history) as store:
            store.vacuum()
            assert {} == leaks(history)
            assert (["other"], ["other"]) == (sessions(store, "harbour"), sessions(store, "lantern"))
            assert ([], []) == (sessions(store, "zanzibarquokka"), store.search_messages(REDACTED))
            assert (True, []) == (store.verify().ok, store.verify().problems)


def test_vacuum_keeps_no_stale_bytes_of_live_pages(tmp_path: Path) -> None:
    """A value overwritten in one transaction by a shorter one leaves the old bytes in the unused tail of its
    live overflow pages, which LMDB's compacting copy carries over; vacuum writes only the live key-values."""
    environment = Environment.acquire(tmp_path)
    try:
        space = environment.space("test.values")
        stale, kept = b"a" * 9000 + b"StaleSecret" + b"b" * 300, b"c" * 9000

        def overwrite(txn: WriteTransaction) -> None:
            txn.put(space, b"key", stale)
            txn.put(space, b"key", kept)

        environment.write(overwrite)
        assert ["data.mdb"] == files_holding(tmp_path, b"StaleSecret")
        environment.vacuum(reopen=lambda: None)
        space = environment.space("test.values")
        with environment.read() as txn:
            assert (kept, []) == (txn.get(space, b"key"), files_holding(tmp_path, b"StaleSecret"))
    finally:
        environment.release()


def test_verify_reports_snapshot_blobs_no_snapshot_names(tmp_path: Path) -> None:
    """A snapshot blob that no snapshot names (message text nothing else would show) is reported, without its
    text; rebuilding the messages projection drops it (and takes the snapshot again, from the log)."""
    with SessionStore(tmp_path, snapshot_every=2) as store:
        store.append_many("k", [ChatMessage.user("one"), ChatMessage.user("two")])
        assert (1, True) == (store.stats().snapshots, store.verify().ok)
        stream_id = 1
        store._write(lambda txn: store._snapshots.put_blob(txn, stream_id, b"Leftover text"))
        problems = store.verify().problems
        assert 1 == len(problems) and problems[0].startswith("1 snapshot blobs belong to no snapshot"), problems
        assert "redacted" in problems[0] and "vacuum" in problems[0] and "Leftover" not in problems[0]
        store.rebuild_projections(["messages"])
        assert (1, True) == (store.stats().snapshots, store.verify().ok)


# -- what the compression dictionary learnt --------------------------------------------------------------------------

#: A long secret that many payloads of the dictionary's training sample hold, so that zstd keeps it word for word.
DICTIONARY_SECRET = "the vault passphrase is Zephyrwhistle Obstreperous Quagmirella Bezoarstone Marmaladeking"
#: Sessions of 20 messages each: 4,400 events, so the store trains its dictionary on the first 4,096.
SESSIONS = 220
#: Every this-many-th session holds the secret in every message (six of them, all among the first 4,096 events).
SECRET_EVERY = 40
SECRET_KEYS = [f"s{number}" for number in range(0, SESSIONS, SECRET_EVERY)]
OTHER_KEYS = [f"s{number}" for number in range(SESSIONS) if number % SECRET_EVERY]
_WORDS = [f"w{number}ord" for number in range(3000)]


def dictionary_needles() -> list[bytes]:
    return [DICTIONARY_SECRET.encode()] + [word.encode() for word in DICTIONARY_SECRET.split()
                                           if len(word) >= MIN_NEEDLE_BYTES]


def dictionary_leaks(directory: Path) -> dict[bytes, list[str]]:
    return {needle: files for needle in dictionary_needles() if (files := files_holding(directory, needle))}


def write_trained_history(store: SessionStore, first: int = 0) -> None:
    """``SESSIONS`` sessions from ``s{first}`` on; every ``SECRET_EVERY``-th holds the secret, the others
    random words."""
    rng = random.Random(first)
    for number in range(first, first + SESSIONS):
        texts = [f"{DICTIONARY_SECRET} ({index})" if number % SECRET_EVERY == 0 else
                 " ".join(rng.choice(_WORDS) for _ in range(16)) for index in range(20)]
        store.append_many(f"s{number}", [ChatMessage.user(text) for text in texts])


@pytest.fixture(scope="module")
def trained_template(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("trained") / "store"
    with SessionStore(path, durable=False) as store:
        write_trained_history(store)
    return path


@pytest.fixture
def trained(trained_template: Path, tmp_path: Path) -> Path:
    """A store whose dictionary was trained on payloads holding ``DICTIONARY_SECRET`` (a copy for the test)."""
    shutil.copytree(trained_template, tmp_path / "store")
    return tmp_path / "store"


def contents(store: SessionStore, *names: str) -> list[list[tuple[bytes, bytes]]]:
    """Every (key, value) of each named space, read beneath the store in one read transaction."""
    spaces = [store._environment.space(name) for name in names]
    with store._environment.read() as txn:
        return [list(txn.scan(space)) for space in spaces]


def stored_dictionary(store: SessionStore) -> Dictionary:
    with store._environment.read() as txn:
        found = store._log.dictionary.get(txn)
    assert found is not None, "the store has no dictionary"
    return found


def compressed(store: SessionStore) -> tuple[int, int]:
    """How many log records are in layout 2 and how many message chunks are compressed."""
    records, chunks = contents(store, "log.events", "messages.chunks")
    return sum(value[0] == 2 for _, value in records), sum(value[:1] == b"\x01" for _, value in chunks)


def redact_secrets(store: SessionStore) -> None:
    for key in SECRET_KEYS:
        store.redact(key, "user request")


class TestTheDictionaryForgetsRedactedText:
    """A compression dictionary keeps pieces of the payloads it was trained on: once one of those is redacted,
    ``vacuum`` replaces it with one trained on the current payloads and recompresses every frame with it."""

    def test_redact_then_vacuum_leaves_no_word_the_dictionary_learnt(self, trained: Path, tmp_path: Path) -> None:
        with SessionStore(trained) as store:
            before = {key: store.load(key) for key in OTHER_KEYS}
            learnt = stored_dictionary(store).data
            assert all(needle in learnt for needle in dictionary_needles()[1:])  # what the test is about
            redact_secrets(store)
            records, chunks = compressed(store)
            assert records > 0 and chunks > 0
            chain = [(event.position, event.hash, event.payload_digest) for event in store.events()]
            store.vacuum()
            assert {} == dictionary_leaks(trained)
            assert chain == [(event.position, event.hash, event.payload_digest) for event in store.events()]
            assert stored_dictionary(store).data != learnt
            assert (records, chunks) == compressed(store)  # the new dictionary compresses them all again
            assert before == {key: store.load(key) for key in OTHER_KEYS}
            word = before[OTHER_KEYS[0]][0].content.split()[0]
            assert OTHER_KEYS[0] in sessions(store, word)
            assert ([], (True, [])) == (sessions(store, "zephyrwhistle"), (store.verify().ok, store.verify().problems))
            assert all(event.redacted for event in store.history(SECRET_KEYS[0])[:20])
            exported = io.BytesIO()
            assert store.stats().last_position == export_events(store, exported)
            meta = dict(contents(store, "log.meta")[0])
            assert from_copy(meta[b"dictionary.copy"]) == meta[b"dictionary"]
        with SessionStore(trained, readonly=True) as store:
            assert before == {key: store.load(key) for key in OTHER_KEYS}
            events = [(event.position, event.hash) for event in store.events()]
        # salvage reads the dictionary (and its copy, the new one's) from the file alone
        assert events == [(event.position, event.hash) for event in salvage(trained / "data.mdb").prefix]

    def test_a_store_without_redactions_keeps_its_dictionary_and_frames(
            self, trained: Path, monkeypatch: pytest.MonkeyPatch) -> None:
        """Nothing redacted: vacuum pays no training nor recompression; every byte of the log and chunks stays."""
        with SessionStore(trained) as store:
            before = contents(store, "log.meta", "log.events", "messages.chunks")
            trainings: list[int] = []
            monkeypatch.setattr(eventstore._log, "train", lambda samples, dictionary_id=None: trainings.append(1))
            store.vacuum()
            assert [] == trainings
            assert before == contents(store, "log.meta", "log.events", "messages.chunks")

    def test_a_redaction_of_events_the_dictionary_did_not_learn_keeps_it(self, trained: Path) -> None:
        """The last session's events come after the 4,096 the dictionary was trained on."""
        with SessionStore(trained) as store:
            learnt = stored_dictionary(store).data
            assert store.history(OTHER_KEYS[-1])[0].position > TRAINING_EVENTS
            store.redact(OTHER_KEYS[-1], "user request")
            before = contents(store, "log.meta")
            store.vacuum()
            assert (before, learnt) == (contents(store, "log.meta"), stored_dictionary(store).data)

    def test_a_damaged_dictionary_that_learnt_nothing_redacted_does_not_stop_the_vacuum(self, trained: Path) -> None:
        """Vacuum copies the frames as they are: it reads the dictionary only to replace it."""
        for form in (b"dictionary", b"dictionary.copy"):
            _damage(trained, form, "changed")
        with SessionStore(trained) as store:
            problems = store.verify().problems
            store.vacuum()
            assert problems == store.verify().problems

    def test_a_retrained_dictionary(self, tmp_path: Path) -> None:
        """The first dictionary learnt 4,096 alike payloads (a poor one); the second, trained when the log
        doubled, learnt the secret: both are replaced by one."""
        with SessionStore(tmp_path, durable=False) as store:
            for number in range(TRAINING_EVENTS // 16):
                store.append_many(f"bot{number}", [ChatMessage.user("ok")] * 16)
            assert 1 == stored_dictionary(store).next_id
            write_trained_history(store, first=0)
            assert 2 == stored_dictionary(store).next_id and dictionary_leaks(tmp_path)
            before = {key: store.load(key) for key in OTHER_KEYS}
            redact_secrets(store)
            store.vacuum()
            assert ({}, 1) == (dictionary_leaks(tmp_path), stored_dictionary(store).next_id)
            assert before == {key: store.load(key) for key in OTHER_KEYS}
            assert store.verify().ok

    def test_an_older_stores_dictionary_is_replaced_after_any_redaction(self, trained: Path) -> None:
        """A dictionary an older version trained has no record of what it learnt from: any redacted record counts
        (and without one, it is kept)."""
        with SessionStore(trained) as store:
            learnt = stored_dictionary(store).data
            meta, forget = store._log._meta, _LEARNT
            store._write(lambda txn: txn.delete(meta, forget))
            store.vacuum()
            assert learnt == stored_dictionary(store).data
            redact_secrets(store)
            store.vacuum()
            assert ({}, True) == (dictionary_leaks(trained), store.verify().ok)

    @pytest.mark.parametrize("how", ["changed", "cut"])
    def test_a_damaged_record_of_what_it_learnt_counts_every_redaction(self, trained: Path, how: str) -> None:
        """A span changed (one that no longer covers the secret's positions) or a record cut short: ``verify``
        names it, a redaction still works, and the vacuum after it still forgets the secret (as for an older
        store's dictionary); a writable open drops the damaged record."""
        with SessionStore(trained) as store:
            with store._environment.read() as txn:
                raw = bytes(txn.get(store._log._meta, _LEARNT) or b"")
            spans = _SPAN.pack(TRAINING_EVENTS, TRAINING_EVENTS + 1)  # no secret after 4,096
            damaged = spans + raw[len(spans):] if how == "changed" else raw[:-3]
            meta, learnt = store._log._meta, _LEARNT
            store._write(lambda txn: txn.put(meta, learnt, damaged))
            report = store.verify()
            assert (False, frozenset({"dictionary"})) == (report.ok, report.damaged)
            assert "trained on is damaged" in report.problems[0]
            redact_secrets(store)
            store.vacuum()
            assert ({}, True) == (dictionary_leaks(trained), store.verify().ok)
        with SessionStore(trained) as store:
            reopened = store._log._meta
            store._write(lambda txn: txn.put(reopened, learnt, damaged))
            assert not store.verify().ok
        with SessionStore(trained) as store:  # a writable open repairs it
            assert store.verify().ok

    def test_when_the_current_payloads_train_no_dictionary_frames_are_stored_plain(
            self, trained: Path, monkeypatch: pytest.MonkeyPatch) -> None:
        with SessionStore(trained) as store:
            before = {key: store.load(key) for key in OTHER_KEYS}
            redact_secrets(store)
            monkeypatch.setattr(eventstore._log, "train", lambda samples, dictionary_id=None: None)
            store.vacuum()
            assert ({}, (0, 0)) == (dictionary_leaks(trained), compressed(store))
            with store._environment.read() as txn:
                assert store._log.dictionary.get(txn) is None
            assert before == {key: store.load(key) for key in OTHER_KEYS}
            store.append(OTHER_KEYS[0], ChatMessage.user("after"))
            assert (True, ChatMessage.user("after")) == (store.verify().ok, store.load(OTHER_KEYS[0])[-1])

    def test_in_memory(self) -> None:
        with SessionStore.on_storage(MemoryStorage()) as store:
            write_trained_history(store)
            before = {key: store.load(key) for key in OTHER_KEYS}
            learnt = stored_dictionary(store).data
            redact_secrets(store)
            store.vacuum()
            assert not any(needle in stored_dictionary(store).data for needle in dictionary_needles()[1:])
            assert (True, before) == (store.verify().ok, {key: store.load(key) for key in OTHER_KEYS})
            assert learnt != stored_dictionary(store).data

    def test_on_a_postgresql_replica(self, postgres_url: str, tmp_path: Path) -> None:
        """A host's replica compresses with a dictionary of its own, trained on what it replicated: the vacuum of
        the host's store replaces it too, also where the redaction arrived from another host."""
        with SessionStore(postgres_url, cache=tmp_path / "one") as writer, \
                SessionStore(postgres_url, cache=tmp_path / "two") as other:
            write_trained_history(writer)
            before = {key: other.load(key) for key in OTHER_KEYS}
            assert dictionary_leaks(tmp_path / "one") and dictionary_leaks(tmp_path / "two")
            redact_secrets(writer)
            writer.vacuum()
            assert {} == dictionary_leaks(tmp_path / "one")
            other.vacuum()  # catches up first: the redaction reaches the other host's replica
            assert {} == dictionary_leaks(tmp_path / "two")
            assert (True, before) == (other.verify().ok, {key: other.load(key) for key in OTHER_KEYS})


#: A process that vacuums the store at argv[1] and kills itself with SIGKILL at argv[2]: while it recompresses
#: the log's records, or once the new file has replaced the old one.
_CRASHING_VACUUM = """
import os, signal, sys
import eventstore._log as log
from eventstore import SessionStore

path, where = sys.argv[1], sys.argv[2]
if where == "recompressing":
    recompressed, done = log._recompressed, []

    def dying(*args):
        done.append(1)
        if len(done) == 2000:
            os.kill(os.getpid(), signal.SIGKILL)
        return recompressed(*args)

    log._recompressed = dying
store = SessionStore(path)
if where == "swapped":
    store._open_components = lambda: os.kill(os.getpid(), signal.SIGKILL)
store.vacuum()
"""


@pytest.mark.parametrize("where", ["recompressing", "swapped"])
def test_a_crash_during_the_vacuum_leaves_the_old_store_or_the_new_one(trained: Path, where: str) -> None:
    with SessionStore(trained) as store:
        redact_secrets(store)
        before = {key: store.load(key) for key in OTHER_KEYS}
    assert dictionary_leaks(trained)
    crashed = subprocess.run([sys.executable, "-c", _CRASHING_VACUUM, str(trained), where], capture_output=True,
                             text=True, timeout=300, check=False)
    assert -signal.SIGKILL == crashed.returncode, crashed.stderr
    old_file = any(needle in (trained / "data.mdb").read_bytes() for needle in dictionary_needles())
    assert (where == "recompressing") == old_file  # the old file whole, or the new one
    with SessionStore(trained) as store:
        assert (True, before) == (store.verify().ok, {key: store.load(key) for key in OTHER_KEYS})
        store.vacuum()
    assert {} == dictionary_leaks(trained)


def fill_with_two_vocabularies(store: SessionStore, filled: int) -> None:
    """Sessions of one vocabulary, which the dictionary learns, until the file holds ``filled`` bytes; then the
    ``TRAINING_EVENTS`` latest payloads of another, on which a dictionary trained again learns nothing of the first
    (so the first's frames, compressed again with it, grow)."""
    rng = random.Random(5)
    learnt, later = [f"alpha{number}word" for number in range(300)], [str(digit) for digit in range(10)]
    number = 0
    while number * 20 < TRAINING_EVENTS or store._environment.file_size() < filled:
        store.append_many(f"s{number}", [ChatMessage.user(" ".join(rng.choices(learnt, k=12))) for _ in range(20)])
        number += 1
    for _ in range(TRAINING_EVENTS // 20 + 5):
        store.append_many(f"s{number}", [ChatMessage.user(" ".join(rng.choices(later, k=12))) for _ in range(20)])
        number += 1


def test_a_vacuum_whose_new_dictionary_compresses_less_grows_the_copy_map(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """The frames compressed again with a dictionary that learnt other words take more room than the map the store
    had: the vacuum's copy gets a larger map instead of failing (which left the redacted text for good)."""
    monkeypatch.setattr(lmdb_environment, "_INITIAL_MAP_SIZE", 8 << 20)
    path = tmp_path / "store"
    with SessionStore(path, durable=False) as store:
        fill_with_two_vocabularies(store, (48 << 20) // 10)  # with the search index, what an 8 MB map holds
        store.vacuum()
        before = {key: store.load(key) for key in store.list_sessions() if key != "s3"}
        store.redact("s3", "gone")
        assert lmdb_storage(store)._env.info()["map_size"] == 8 << 20  # what the test is about: the map as it was
        _, after = store.vacuum()
        assert after > 8 << 20  # the frames compressed again took more than that map
        assert before == {key: store.load(key) for key in store.list_sessions() if key != "s3"}
        assert store.verify().ok
