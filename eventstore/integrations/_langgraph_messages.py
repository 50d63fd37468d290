"""The saver's messages: which session holds them, and what they hold (the pure part, no store).

One session per thread and checkpoint namespace, keyed ``langgraph/<thread id>/<namespace>`` (both parts
percent-encoded, so the key splits back). Each ``put`` appends one message of role ``checkpoint`` and each
``put_writes`` one of role ``writes``. A message's content is a short JSON header with what finding things
needs (the checkpoint's id, its parent, the channel versions whose values it holds, its run), so a lookup
decodes only the payloads it returns; the payload holds the rest:

* ``checkpoint``: ``{"checkpoint": blob, "metadata": {...}, "blobs": {channel: blob}}``: the checkpoint less
  its channel values, the metadata as JSON (as LangGraph's SQL savers keep it), and the values of the
  channels that changed in this checkpoint (its ``new_versions``);
* ``writes``: ``{"task": id, "path": task path, "writes": [[idx, channel, *blob], ...]}``.

A blob is a value as ``_langgraph_blobs`` keeps it; ``_langgraph_records`` reads a session's messages back as
checkpoints and writes, each payload checked to have the shape given here (``payload_of``).
"""

from __future__ import annotations

import functools
import json
from collections.abc import Mapping, Sequence
from typing import Any
from urllib.parse import quote, unquote

import attrs
from langchain_core.runnables import RunnableConfig
from langgraph.checkpoint.base import WRITES_IDX_MAP, ChannelVersions, Checkpoint, CheckpointMetadata
from langgraph.checkpoint.serde.base import SerializerProtocol

from eventstore import REDACTED, ChatMessage, StoreCorrupted

from ._langgraph_blobs import EMPTY, Base, Version, blob_of, list_blob
from ._langgraph_fingerprint import Encoded

__all__ = ["KEY_PREFIX", "CHECKPOINT", "WRITES", "Header", "Known", "session_key", "thread_prefix", "key_parts",
           "checkpoint_config", "header", "jsonable", "list_channels", "checkpoint_message", "writes_message",
           "payload_of"]

#: Every session of the saver has a key starting with this.
KEY_PREFIX = "langgraph/"
#: The roles of the saver's messages; a message of another role in its sessions is not its own and is skipped.
CHECKPOINT, WRITES = "checkpoint", "writes"


@functools.lru_cache(maxsize=1 << 12)
def session_key(thread_id: str, namespace: str) -> str:
    """The key of the session that holds the checkpoints of ``thread_id`` in ``namespace``."""
    return f"{thread_prefix(thread_id)}{_encoded(namespace)}"


def thread_prefix(thread_id: str) -> str:
    """The start of the keys of every namespace of ``thread_id`` (and of no other thread)."""
    return f"{KEY_PREFIX}{_encoded(thread_id)}/"


def key_parts(key: str) -> tuple[str, str]:
    """The thread id and namespace that ``session_key`` made ``key`` of."""
    thread, namespace = key[len(KEY_PREFIX):].split("/")
    return unquote(thread, errors="surrogatepass"), unquote(namespace, errors="surrogatepass")


def _encoded(text: str) -> str:
    return quote(text, safe="", errors="surrogatepass")


def checkpoint_config(thread_id: str, namespace: str, checkpoint_id: str) -> RunnableConfig:
    return {"configurable": {"thread_id": thread_id, "checkpoint_ns": namespace, "checkpoint_id": checkpoint_id}}


@attrs.frozen
class Header:
    """A message's content read: which checkpoint it belongs to, and for a checkpoint what finding values needs.

    Attributes:
        role: ``CHECKPOINT`` or ``WRITES``.
        checkpoint_id: the checkpoint's id (for writes: the checkpoint they were written at).
        parent_id: the id of the checkpoint it was put after (checkpoints only).
        stored: the channels whose values the message holds, and their versions (checkpoints only).
        run_id: the run that made the checkpoint, from its metadata.
        latest: the newest checkpoint id its put knew of, its own included (``None`` in threads stored before).
        seen: the id of the last checkpoint message its put read (``None``: it read none).
        early: for writes begun before their checkpoint's put, a token naming them; for a checkpoint, the tokens
            of the writes at it begun before its put. A read from the session's end needs them, wherever they
            landed.
        back: how many messages before its own a read of the checkpoint needs (its channels' values along its
            parent chain, a list's tails back to their base, ``seen``, its early writes), counted as if it were
            put right after the messages its put read (``None`` in threads stored before, and when its put did
            not know). A hint only: a read from the session's end reads that many at once rather than doubling
            its count until it has them, and still checks that it has them.
    """

    role: str
    checkpoint_id: str
    parent_id: str | None = None
    stored: Mapping[str, Version] = attrs.field(factory=dict)
    run_id: str | None = None
    latest: str | None = None
    seen: str | None = None
    early: tuple[str, ...] = ()
    back: int | None = None

    def content(self) -> str:
        """The message content this header is read from."""
        if self.role == WRITES:
            return _content({"checkpoint": self.checkpoint_id, "early": list(self.early) or None})
        return _content({"checkpoint": self.checkpoint_id, "parent": self.parent_id, "stored": dict(self.stored),
                         "run": self.run_id, "latest": self.latest, "seen": self.seen,
                         "early": list(self.early) or None, "back": self.back})


@functools.lru_cache(maxsize=1 << 14)
def header(role: str, content: str) -> Header | None:
    """The header of a message (cached: the store hands back the same content strings while a session is cached);
    ``None`` for a message that is not the saver's, or whose checkpoint a redaction removed (the whole thread's: a
    redaction covers a session), so a redacted thread reads as empty and can start again."""
    if role not in (CHECKPOINT, WRITES) or content == REDACTED:
        return None
    try:
        fields = json.loads(content)
        if type(fields["checkpoint"]) is not str:  # ids are compared and sorted: one of another type fails there
            raise TypeError("a checkpoint id that is not text")
        if not all(type(fields.get(name)) in (str, type(None)) for name in ("parent", "run", "latest", "seen")) \
                or type(fields.get("stored", {})) is not dict or type(fields.get("early", [])) is not list:
            raise TypeError("a field of another type than the saver writes")
        back = fields.get("back")
        return Header(role, fields["checkpoint"], fields.get("parent"), fields.get("stored", {}), fields.get("run"),
                      fields.get("latest"), fields.get("seen"), tuple(fields.get("early", ())),
                      back if type(back) is int and back >= 0 else None)  # a hint: a damaged one is none
    except (ValueError, TypeError, KeyError) as exc:
        raise StoreCorrupted(f"a LangGraph {role} message has a damaged header: {exc}") from None


def _content(fields: Mapping[str, Any]) -> str:
    # ensure_ascii: a lone surrogate in a channel name is escaped, not rejected.
    return json.dumps({name: value for name, value in fields.items() if value is not None}, separators=(",", ":"))


def jsonable(value: Any) -> Any:
    """Metadata as JSON keeps it (a tuple becomes a list, as LangGraph's SQL savers store it)."""
    if isinstance(value, (tuple, list)):
        return [jsonable(item) for item in value]
    if isinstance(value, Mapping):
        return {name: jsonable(item) for name, item in value.items()}
    return value


def list_channels(checkpoint: Checkpoint, new_versions: ChannelVersions) -> list[str]:
    """The channels of ``new_versions`` whose new values are lists: those a put may store as tails."""
    values = checkpoint["channel_values"]
    return [channel for channel in new_versions if type(values.get(channel)) is list]


@attrs.frozen
class Known:
    """What a put knew of its thread when it read it: the newest checkpoint id, the last checkpoint message, and
    how many of the messages it read a read of its checkpoint needs (``Header.back``)."""

    latest: str | None
    seen: str | None
    back: int | None = None


def checkpoint_message(serde: SerializerProtocol, checkpoint: Checkpoint, metadata: CheckpointMetadata,
                       parent_id: str | None, new_versions: ChannelVersions,
                       bases: Mapping[str, Base] | None = None, known: Known = Known(None, None),
                       early: Sequence[str] = ()) -> tuple[ChatMessage, dict[str, Encoded]]:
    """The message that records ``put(config, checkpoint, metadata, new_versions)``, and its list values with
    their bytes (for the next put: ``Base.encoded``); a list channel with one of ``bases`` (its value at the
    parent, ``Records.bases``) is stored as the tail it adds, if it adds one.
    ``known`` (``Records.known``) and ``early`` (the tokens of writes at it begun before the put) let a read from
    the thread's end find its latest checkpoint and that checkpoint's writes without reading the thread whole."""
    values = checkpoint["channel_values"]
    body = {name: field for name, field in checkpoint.items() if name != "channel_values"}
    bases = bases or {}
    blobs: dict[str, list[Any]] = {}
    lists: dict[str, Encoded] = {}
    for channel in new_versions:
        if channel not in values:
            blobs[channel] = list(EMPTY)
        elif type(values[channel]) is list:
            blobs[channel], encoded = list_blob(serde, values[channel], bases.get(channel))
            if encoded is not None:
                lists[channel] = encoded
        else:
            blobs[channel] = blob_of(serde, values[channel])
    run_id = metadata.get("run_id")
    latest = checkpoint["id"] if known.latest is None else max(known.latest, checkpoint["id"])
    head = Header(CHECKPOINT, checkpoint["id"], parent_id, dict(new_versions),
                  run_id if isinstance(run_id, str) else None, latest, known.seen, tuple(early), known.back)
    payload = {"checkpoint": blob_of(serde, body), "metadata": jsonable(metadata), "blobs": blobs}
    return ChatMessage(CHECKPOINT, head.content(), payload), lists


def writes_message(serde: SerializerProtocol, checkpoint_id: str, writes: Sequence[tuple[str, Any]], task_id: str,
                   task_path: str, early: str | None = None) -> ChatMessage:
    """The message that records ``put_writes(config, writes, task_id, task_path)`` at ``checkpoint_id``;
    ``early``: the token of writes begun before the checkpoint's put (which then names it)."""
    rows = [[WRITES_IDX_MAP.get(channel, idx), channel, *blob_of(serde, value)]
            for idx, (channel, value) in enumerate(writes)]
    return ChatMessage(WRITES, Header(WRITES, checkpoint_id, early=() if early is None else (early,)).content(),
                       {"task": task_id, "path": task_path, "writes": rows})


def payload_of(message: ChatMessage, head: Header) -> dict[str, Any]:
    """The message's payload, checked to have the shape the saver gave it: a message changed through the store
    reads as damaged, not as a KeyError or a TypeError where a field is used."""
    payload = message.payload  # decoded afresh at each access: read it once
    if payload is None:
        raise StoreCorrupted(f"a LangGraph {message.role} message has no payload")
    if not _well_formed(payload, head):
        raise StoreCorrupted(f"a LangGraph {message.role} message has a damaged payload")
    return payload


def _is_blob(blob: Any) -> bool:
    return type(blob) is list and len(blob) >= 2 and type(blob[0]) is str


def _well_formed(payload: Any, head: Header) -> bool:
    if type(payload) is not dict:
        return False
    if head.role == WRITES:
        rows = payload.get("writes")
        return type(payload.get("task")) is str and type(payload.get("path")) is str and type(rows) is list and all(
            type(row) is list and len(row) > 2 and type(row[0]) is int and type(row[1]) is str
            and _is_blob(row[2:]) for row in rows)
    blobs = payload.get("blobs")
    return _is_blob(payload.get("checkpoint")) and type(payload.get("metadata")) is dict and type(blobs) is dict \
        and all(_is_blob(blobs.get(channel)) for channel in head.stored)
