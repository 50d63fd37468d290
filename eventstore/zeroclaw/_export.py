"""Exporting sessions as ZeroClaw JSONL files and the manifest that says which file holds which session
(``export_jsonl``)."""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path

import attrs
import orjson

from .._files import TargetExists, UnsafeTarget, atomic_write, check_target, open_directory
from .._store import SessionStore
from ._file_names import caseless, plan_file_names
from ._jsonl import jsonl_bytes
from ._source import Progress, RefusedSource, chunks

__all__ = ["MANIFEST_NAME", "MANIFEST_FORMAT", "JsonlExport", "export_jsonl"]

#: The file an export writes last into its directory: which file holds which session.
MANIFEST_NAME = "eventstore-manifest.json"
#: The ``format`` field of the manifest.
MANIFEST_FORMAT = "eventstore.jsonl-export"


@attrs.frozen
class JsonlExport:
    """What ``export_jsonl`` wrote: file per key, keys not written (with why), the manifest (if written), and per
    key written, how many of its messages have a payload its file leaves out (ZeroClaw's lines have no field
    for one)."""

    written: dict[str, Path]
    not_written: dict[str, str]
    manifest: Path | None = None
    payloads_left_out: dict[str, int] = attrs.field(factory=dict)


def _read_manifest(directory_fd: int, shown: Path, overwrite: bool) -> dict[str, str]:
    """The sessions an earlier export's manifest lists; ``{}`` if there is none.

    Raises:
        UnsafeTarget: the manifest's name is a symbolic link or not a regular file.
        TargetExists: a file of that name that is no manifest, unless ``overwrite``.
    """
    check_target(directory_fd, MANIFEST_NAME, shown, replace=True)
    try:
        fd = os.open(MANIFEST_NAME, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_CLOEXEC, dir_fd=directory_fd)
    except FileNotFoundError:
        return {}
    try:
        data = orjson.loads(b"".join(chunks(fd)))
    except (orjson.JSONDecodeError, RefusedSource):
        data = None
    finally:
        os.close(fd)
    sessions = data.get("sessions") if isinstance(data, dict) and data.get("format") == MANIFEST_FORMAT else None
    if isinstance(sessions, dict) and all(isinstance(v, str) for v in sessions.values()):
        return sessions
    if overwrite:
        return {}
    raise TargetExists(f"{shown} exists and is not an export manifest; pass --force to replace it")


def export_jsonl(store: SessionStore, keys: Sequence[str], directory: str | os.PathLike[str], *,
                 overwrite: bool = False, progress: Progress | None = None) -> JsonlExport:
    """Write each live session's current messages into ``directory`` as ZeroClaw JSONL files, then the manifest.

    File names come from ``plan_file_names``. Every file is written whole or
    not at all, never through a symbolic link (see ``eventstore._files``). A
    key that is not a live session, or whose file is a symbolic link, not a
    regular file, or exists (unless ``overwrite``) is reported in
    ``not_written``. A message's payload (a framework's item, a tool call) has
    no place in ZeroClaw's lines: the file holds its role and content, and
    ``payloads_left_out`` counts such messages per key (``export --format
    events`` keeps them). The manifest (``MANIFEST_NAME``: ``{"format",
    "version", "sessions": {key: file name}}``) is written last, keeping an
    earlier export's entries for other keys and other file names.

    Raises:
        UnsafeTarget: ``directory`` is not a directory, or the manifest's name is a link or not a regular file.
        TargetExists: a file named like the manifest that is not one (unless ``overwrite``).
        WriteFailed: a write failed (a full disk, say); the files written before it stay, complete, and no
            partial or temporary file is left.
    """
    keys = list(dict.fromkeys(keys))
    names = plan_file_names(keys)
    directory = Path(directory)
    written: dict[str, Path] = {}
    not_written: dict[str, str] = {}
    payloads_left_out: dict[str, int] = {}
    with open_directory(directory, create=True) as directory_fd:
        manifest = directory / MANIFEST_NAME
        earlier = _read_manifest(directory_fd, manifest, overwrite)
        for done, key in enumerate(keys, 1):
            name = names[key]
            if not store.session_exists(key):
                not_written[key] = "no such session"
            else:
                messages = store.load(key)
                try:
                    with atomic_write(directory_fd, name, directory / name, replace=overwrite) as stream:
                        stream.write(jsonl_bytes(messages, None if name == f"{key}.jsonl" else key))
                    written[key] = directory / name
                    if with_payload := sum(m.payload is not None for m in messages):
                        payloads_left_out[key] = with_payload
                except (UnsafeTarget, TargetExists) as exc:
                    not_written[key] = str(exc)
            if progress is not None:
                progress(done, len(keys))
        if not written:
            return JsonlExport(written, not_written)
        taken = {caseless(path.name) for path in written.values()}
        entries = {k: v for k, v in earlier.items() if k not in written and caseless(v) not in taken}
        entries.update((key, path.name) for key, path in written.items())
        with atomic_write(directory_fd, MANIFEST_NAME, manifest, replace=True) as stream:
            stream.write(orjson.dumps({"format": MANIFEST_FORMAT, "version": 1, "sessions": entries},
                                      option=orjson.OPT_INDENT_2 | orjson.OPT_SORT_KEYS) + b"\n")
    return JsonlExport(written, not_written, manifest, payloads_left_out)
