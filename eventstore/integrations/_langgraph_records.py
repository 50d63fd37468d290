"""One session's messages read as LangGraph's checkpoints and writes (``Records``; the pure part, no store).

A checkpoint reads the value of each channel at its version from the nearest
checkpoint on its own parent chain that holds it, never from another branch of the thread: a fork started
from an older checkpoint reuses version numbers that another branch has written already. A list stored as tails
is joined to its base here (``Records.items``). Records of a session's last messages alone (``Records.last``)
raise ``Unreached`` where a read needs a message before them.

The messages themselves (their keys, headers and payloads) are ``_langgraph_messages``; the values in them,
``_langgraph_blobs``.
"""

from __future__ import annotations

import itertools
from collections.abc import Iterable, Mapping, Sequence
from typing import Any, cast

import attrs
from langgraph.checkpoint.base import Checkpoint, CheckpointMetadata, CheckpointTuple, PendingWrite, writes_sort_key
from langgraph.checkpoint.serde.base import SerializerProtocol

from eventstore import ChatMessage, StoreCorrupted

from ._langgraph_blobs import EMPTY, Base, Items, Version, is_tail, read_bytes, value_of, whole_items
from ._langgraph_fingerprint import Encoded
from ._langgraph_messages import CHECKPOINT, WRITES, Header, Known, checkpoint_config, header, jsonable, payload_of
from ._langgraph_templates import MSGPACK, Templates

__all__ = ["PAYLOADS_KEPT", "HINTED_ANCESTORS", "Records", "Unreached"]

#: The most decoded payloads a session's records keep (a warm read decodes again none of those it needs).
PAYLOADS_KEPT = 64
#: How many ancestors a put walks to find where the values its checkpoint keeps come from (``Header.back``).
HINTED_ANCESTORS = 64
_NOWHERE = object()


class Unreached(Exception):
    """Records of a session's last messages only do not reach back to what a read needs: read further back."""


@attrs.frozen
class Records:
    """One session's messages read as checkpoints and writes.

    Attributes:
        messages: the session's messages, oldest first.
        headers: their headers (``None`` for a message that is not the saver's).
        positions: each checkpoint id and the position of its message (the latest, if put again).
        writes: each checkpoint id and the positions of the writes messages written at it, in order.
        whole: whether ``messages`` are the whole session, or only its last ones: then a read that needs a
            message before them raises ``Unreached``.
        newest: the greatest checkpoint id of ``positions`` (checkpoint ids sort by time).
    """

    messages: Sequence[ChatMessage]
    headers: Sequence[Header | None]
    positions: Mapping[str, int]
    writes: Mapping[str, Sequence[int]]
    whole: bool = True
    newest: str | None = None
    #: The lists ``items`` joined, by checkpoint and channel: bytes, which no caller can change.
    _joined: dict[tuple[str, str], Items] = attrs.field(factory=dict, eq=False, repr=False)
    #: The payloads read, by position: the saver's own (a caller gets copies of what they hold, never them).
    _payloads: dict[int, dict[str, Any]] = attrs.field(factory=dict, eq=False, repr=False)

    @classmethod
    def last(cls, messages: Sequence[ChatMessage]) -> Records:
        """The records of a session's last ``messages`` (not all of them)."""
        return attrs.evolve(cls.of(messages), whole=False)

    @classmethod
    def of(cls, messages: Sequence[ChatMessage], earlier: Records | None = None) -> Records:
        """The records of ``messages``; ``earlier``, records of the same session read before, saves reading the
        headers again when the session only grew since: its messages start with ``earlier``'s (mostly the same
        objects: a store hands back the messages it keeps decoded; equal ones make the same records, messages
        being immutable values). Compared as lists: identical items compare in C, without a call each."""
        count = 0 if earlier is None else len(earlier.messages)
        kept = earlier if earlier is not None and count <= len(messages) and \
            list(earlier.messages) == list(messages[:count]) else None
        start = 0 if kept is None else len(kept.messages)
        if kept is not None and start == len(messages):
            return kept
        headers = [*(() if kept is None else kept.headers),
                   *(header(message.role, message.content) for message in messages[start:])]
        positions: dict[str, int] = {} if kept is None else dict(kept.positions)
        writes: dict[str, Sequence[int]] = {} if kept is None else dict(kept.writes)
        joined = {} if kept is None else dict(kept._joined)
        newest = None if kept is None else kept.newest
        for position in range(start, len(headers)):
            head = headers[position]
            if head is None:
                continue
            if head.role == CHECKPOINT:
                if head.checkpoint_id in positions:  # put again: what was joined may have read the one replaced
                    joined = {}
                positions[head.checkpoint_id] = position
                newest = head.checkpoint_id if newest is None else max(newest, head.checkpoint_id)
            else:
                writes[head.checkpoint_id] = [*writes.get(head.checkpoint_id, ()), position]
        return cls(messages, headers, positions, writes, newest=newest, joined=joined,
                   payloads={} if kept is None else kept._payloads)  # the same message at each position

    def latest(self) -> str | None:
        """The id of the newest checkpoint (checkpoint ids sort by time).

        From a session's last messages: the last checkpoint message's ``latest`` names the newest its put knew
        of, which covers every checkpoint up to the last one it read (``seen``); the newest is that or one put
        after it. ``Unreached`` when the messages do not go back to ``seen``, or the header has no ``latest``.
        """
        if self.whole:
            return self.newest
        checkpoints = (head for head in reversed(self.headers) if head is not None and head.role == CHECKPOINT)
        last = next(checkpoints, None)
        if last is None or last.latest is None or last.seen is None:
            raise Unreached
        newest = last.latest
        for head in checkpoints:
            if head.checkpoint_id == last.seen:
                break
            newest = max(newest, head.checkpoint_id)
        else:
            raise Unreached
        if newest not in self.positions:  # put before these messages, or dropped by a rewrite since
            raise Unreached
        return newest

    def known(self, parent_id: str | None = None, kept: Mapping[str, Version] | None = None,
              bases: Mapping[str, Base] | None = None, early: Sequence[str] = ()) -> Known:
        """What a put after reading these (whole) records knows: ``Header.latest``, ``Header.seen`` and, given
        what the put's checkpoint reads from before it (``Header.back``): its parent, the channels it keeps at
        their parent's version (``kept``), the ``bases`` of the lists it stores as tails, the tokens of its
        ``early`` writes."""
        last = self._last_checkpoint()
        seen = None if last is None else self._checkpoint_at(last)
        return Known(self.latest(), seen, self._back(last, parent_id, kept or {}, bases or {}, early))

    def _back(self, last: int | None, parent_id: str | None, kept: Mapping[str, Version],
              bases: Mapping[str, Base], early: Sequence[str]) -> int | None:
        needed = [len(self.headers) if last is None else last]
        if parent_id is not None:
            suppliers = self._near_suppliers(parent_id, kept) if parent_id in self.positions else None
            if suppliers is None:
                return None
            # A kept value stored as a tail reads its parts, as a tail this put stores reads its base's.
            parts = [*(part for channel, supplier in suppliers.items() for part in self._parts(supplier, channel)
                       if is_tail(self.payload(supplier)["blobs"][channel])),
                     *suppliers.values(), *(part for base in bases.values() for part in base.items.suppliers)]
            needed += (self.positions[checkpoint_id] for checkpoint_id in (parent_id, *parts)
                       if checkpoint_id in self.positions)
        if early:
            tokens = set(early)
            needed += (position for positions in self.writes.values() for position in positions
                       if tokens.intersection(self._early(position)))
        return len(self.headers) - min(needed)

    def _last_checkpoint(self) -> int | None:
        """The position of the last checkpoint message."""
        return next((position for position in range(len(self.headers) - 1, -1, -1)
                     if (head := self.headers[position]) is not None and head.role == CHECKPOINT), None)

    def _checkpoint_at(self, position: int) -> str:
        head = self.headers[position]
        assert head is not None  # a position of the saver's message
        return head.checkpoint_id

    def _near_suppliers(self, checkpoint_id: str, versions: Mapping[str, Version]) -> dict[str, str] | None:
        """``suppliers``, walking at most ``HINTED_ANCESTORS`` of the chain (a put pays this walk); ``None`` when
        one lies further back, or nowhere on it."""
        wanted = dict(versions)
        found: dict[str, str] = {}
        if not wanted:
            return found
        for ancestor in itertools.islice(self.chain(checkpoint_id), HINTED_ANCESTORS):
            for channel, version in self._header(ancestor).stored.items():
                if wanted.get(channel, _NOWHERE) == version:
                    found[channel] = ancestor
                    del wanted[channel]
            if not wanted:
                return found
        return None

    def wanted(self) -> int | None:
        """How many of the session's last messages a read of the checkpoint of the last checkpoint message of
        these records needs, as its header says (``Header.back``), counted from these records' end."""
        last = self._last_checkpoint()
        head = None if last is None else self.headers[last]
        return None if head is None or head.back is None else len(self.headers) - cast(int, last) + head.back

    def _header(self, checkpoint_id: str) -> Header:
        head = self.headers[self.positions[checkpoint_id]]
        assert head is not None  # positions only name the saver's messages
        return head

    def run_id(self, checkpoint_id: str) -> str | None:
        """The run that made the checkpoint (from its header: no payload is decoded)."""
        return self._header(checkpoint_id).run_id

    def chain(self, checkpoint_id: str) -> Iterable[str]:
        """The checkpoint and its ancestors in this session, nearest first."""
        seen: set[str] = set()
        current: str | None = checkpoint_id
        while current is not None and current in self.positions and current not in seen:
            seen.add(current)
            yield current
            current = self._header(current).parent_id
        if current is not None and current not in self.positions and not self.whole:
            raise Unreached

    def suppliers(self, checkpoint_id: str, versions: Mapping[str, Version]) -> dict[str, str]:
        """For each channel of ``versions``, the checkpoint on the chain that holds its value at that version."""
        wanted = dict(versions)
        found: dict[str, str] = {}
        if not wanted:
            return found
        for ancestor in self.chain(checkpoint_id):
            for channel, version in self._header(ancestor).stored.items():
                if channel in wanted and wanted[channel] == version:
                    found[channel] = ancestor
                    del wanted[channel]
            if not wanted:  # before the chain goes on: a parent past the records' first message is not needed
                break
        return found

    def payload(self, checkpoint_id: str) -> dict[str, Any]:
        return self._payload_at(self.positions[checkpoint_id])

    def _payload_at(self, position: int) -> dict[str, Any]:
        found = self._payloads.get(position)
        if found is None:
            if len(self._payloads) >= PAYLOADS_KEPT:  # a list of a long thread reads them all: keep memory bounded
                self._payloads.clear()
            head = self.headers[position]
            assert head is not None  # a position of the saver's message
            found = self._payloads[position] = payload_of(self.messages[position], head)
        return found

    def metadata(self, checkpoint_id: str) -> dict[str, Any]:
        """The checkpoint's metadata (a copy)."""
        metadata: dict[str, Any] = jsonable(self.payload(checkpoint_id)["metadata"])
        return metadata

    def items(self, supplier: str, channel: str) -> Items | None:
        """The list that checkpoint ``supplier`` holds for ``channel`` (its tails joined to their base), or
        ``None`` if it holds no msgpack array there. Kept: a later call, or one on records of the same session
        grown since, joins only the tails added after it."""
        tails: list[tuple[int, bytes]] = []  # newest first
        used = [supplier]
        base = self._joined.get((supplier, channel))
        while base is None:
            blob = self.payload(used[-1])["blobs"][channel]
            if not is_tail(blob):
                base = whole_items(blob, used[-1])
                if base is None:
                    if tails:
                        raise StoreCorrupted(f"a LangGraph checkpoint's {channel!r:.60} extends a value that is no "
                                             f"list")
                    return None
                break
            base_version, count = blob[1], blob[2]
            if type(count) is not int or count < 0:
                raise StoreCorrupted(f"a LangGraph checkpoint's {channel!r:.60} adds {count!r:.20} items")
            tails.append((count, read_bytes(blob[3:])))
            parent_id = self._header(used[-1]).parent_id
            found = None if parent_id is None else self.suppliers(parent_id, {channel: base_version}).get(channel)
            if found is None or found in used:
                raise StoreCorrupted(f"a LangGraph checkpoint's {channel!r:.60} extends a value its chain lacks")
            used.append(found)
            base = self._joined.get((found, channel))
        if tails:
            count = base.count + sum(count for count, _ in tails)
            body = b"".join([base.body, *(tail for _, tail in reversed(tails))])
            if count > len(body):  # each msgpack item takes a byte at least; no array header could hold such a count
                raise StoreCorrupted(f"a LangGraph checkpoint's {channel!r:.60} counts {count} items in {len(body)} "
                                     "bytes")
            base = Items(count, body, base.depth + len(tails), (*base.suppliers, *used[:-1]))
        self._joined[(supplier, channel)] = base
        return base

    def bases(self, serde: SerializerProtocol, parent_id: str, channels: Iterable[str],
              encoded: Mapping[str, Encoded] | None = None) -> dict[str, Base]:
        """The values that ``channels`` had at checkpoint ``parent_id``, those that are lists, for a put after it;
        ``encoded``: the lists the saver last read or put in the session, kept with a base whose bytes they are."""
        if parent_id not in self.positions:
            return {}
        versions = value_of(serde, self.payload(parent_id)["checkpoint"])["channel_versions"]
        found: dict[str, Base] = {}
        for channel, supplier in self.suppliers(parent_id, {channel: versions[channel] for channel in channels
                                                             if channel in versions}).items():
            items = self.items(supplier, channel)
            if items is not None:
                known = (encoded or {}).get(channel)
                found[channel] = Base(versions[channel], items,
                                      known if known is not None and known.body == items.body else None)
        return found

    def _whole_blob(self, supplier: str, channel: str) -> list[Any]:
        """The blob of ``channel`` at ``supplier``, a tail joined to its base."""
        blob: list[Any] = self.payload(supplier)["blobs"][channel]
        return self._list(supplier, channel).blob() if is_tail(blob) else blob

    def _list(self, supplier: str, channel: str) -> Items:
        items = self.items(supplier, channel)
        assert items is not None  # a tail always reads as a list, or raised
        return items

    def checkpoint_tuple(self, serde: SerializerProtocol, checkpoint_id: str, thread_id: str,
                         namespace: str, templates: Templates | None = None) -> CheckpointTuple:
        """The checkpoint as ``get_tuple`` returns it: its channel values found along its chain, its writes
        (``templates``: the saver's, which its objects are copied from where they can be)."""
        return self.read(serde, checkpoint_id, thread_id, namespace, encoded=False, templates=templates)[0]

    def read(self, serde: SerializerProtocol, checkpoint_id: str, thread_id: str, namespace: str,
             encoded: bool = True, templates: Templates | None = None
             ) -> tuple[CheckpointTuple, dict[str, Encoded]]:
        """``checkpoint_tuple``, and, if ``encoded``, its list values with their bytes and fingerprints (for a put
        after it: ``Base.encoded``; a fingerprint costs about a third of serializing the list)."""
        payload = self.payload(checkpoint_id)
        body = value_of(serde, payload["checkpoint"])
        values: dict[str, Any] = {}
        lists: dict[str, Encoded] = {}
        for channel, supplier in self.suppliers(checkpoint_id, body["channel_versions"]).items():
            blob = self.payload(supplier)["blobs"][channel]
            items = self.items(supplier, channel) if is_tail(blob) or blob[0] == MSGPACK else None
            if items is not None:
                values[channel] = items.value(serde, templates)
                if encoded and type(values[channel]) is list:
                    lists[channel] = Encoded.taken(values[channel], items.body)
            elif blob[0] != EMPTY[0]:
                values[channel] = value_of(serde, blob, templates)
        parent_id = self._header(checkpoint_id).parent_id
        return CheckpointTuple(
            config=checkpoint_config(thread_id, namespace, checkpoint_id),
            checkpoint=cast(Checkpoint, {**body, "channel_values": values}),
            metadata=cast(CheckpointMetadata, self.metadata(checkpoint_id)),
            parent_config=None if parent_id is None else checkpoint_config(thread_id, namespace, parent_id),
            pending_writes=self.pending_writes(serde, checkpoint_id, templates),
        ), lists

    def pending_writes(self, serde: SerializerProtocol, checkpoint_id: str, templates: Templates | None = None
                       ) -> list[PendingWrite]:
        """The writes at the checkpoint: a write repeated by (task, index) counts once, the first time; a
        special channel's write (an error, an interrupt, ...) counts the last time. In LangGraph's order."""
        positions = self.writes.get(checkpoint_id, ())
        if not self.whole and not set(self._header(checkpoint_id).early).issubset(
                token for position in positions for token in self._early(position)):
            raise Unreached  # writes begun before the checkpoint's put landed before these messages
        chosen: dict[tuple[str, int], tuple[str, list[Any]]] = {}
        for position in positions:
            payload = self._payload_at(position)
            for row in payload["writes"]:
                if row[0] < 0 or (payload["task"], row[0]) not in chosen:
                    chosen[(payload["task"], row[0])] = (payload["path"], row)
        ordered = sorted(chosen.items(), key=lambda item: writes_sort_key(item[1][0], *item[0]))
        return [(task, row[1], value_of(serde, row[2:], templates)) for (task, _), (_, row) in ordered]

    def _early(self, position: int) -> tuple[str, ...]:
        head = self.headers[position]
        return () if head is None else head.early

    def without(self, serde: SerializerProtocol, dropped: set[str]) -> list[ChatMessage]:
        """The messages less the ``dropped`` checkpoints and their writes, every kept checkpoint reading as before.

        A kept checkpoint whose values came from a dropped ancestor gets them copied into its own message.
        """
        kept: list[ChatMessage] = []
        for position, (message, head) in enumerate(zip(self.messages, self.headers)):
            if head is not None and head.checkpoint_id in dropped:
                continue
            if head is None or head.role == WRITES or self.positions[head.checkpoint_id] != position:
                kept.append(message)
            else:
                kept.append(self._self_sufficient(serde, head, dropped))
        return kept

    def _self_sufficient(self, serde: SerializerProtocol, head: Header, dropped: set[str]) -> ChatMessage:
        checkpoint_id = head.checkpoint_id
        payload = self.payload(checkpoint_id)
        versions = value_of(serde, payload["checkpoint"])["channel_versions"]
        still_reached: set[str] = set()
        for ancestor in self.chain(checkpoint_id):
            if ancestor in dropped:
                break
            still_reached.add(ancestor)
        # A value read from a dropped ancestor (joined whole, if a tail), or its own tail whose base was there.
        moved = {channel: supplier for channel, supplier in self.suppliers(checkpoint_id, versions).items()
                 if supplier not in still_reached or (is_tail(payload["blobs"].get(channel, EMPTY))
                                                      and not still_reached.issuperset(self._parts(supplier, channel)))}
        if not moved:
            return self.messages[self.positions[checkpoint_id]]
        blobs = {**payload["blobs"], **{channel: self._whole_blob(supplier, channel)
                                         for channel, supplier in moved.items()}}
        stored = {**head.stored, **{channel: versions[channel] for channel in moved}}
        return ChatMessage(CHECKPOINT, attrs.evolve(head, stored=stored).content(), {**payload, "blobs": blobs})

    def _parts(self, supplier: str, channel: str) -> tuple[str, ...]:
        items = self.items(supplier, channel)
        return (supplier,) if items is None else items.suppliers
