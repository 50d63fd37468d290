"""ZeroClaw interchange: read a ZeroClaw workspace's sessions into import batches, write ZeroClaw JSONL.

What lives here and why: ``eventstore import zeroclaw`` and ``eventstore export
--format jsonl`` move history between ZeroClaw and this store. The parsing of
ZeroClaw's two session backends and the building of events live here, free of
click, so they are tested on their own and the command line stays thin.

ZeroClaw keeps sessions in ``WORKSPACE/sessions/``, as ``<key>.jsonl`` files
and a ``sessions.db`` SQLite database. Tool calls have no field of their own:
they are JSON documents packed into ``content``, which is kept exactly. Source
files are only ever read.

One module a job, each importing only those listed after it:

* ``_importing``: a workspace into a store, one transaction per source (``import_workspace``);
* ``_export``: sessions as JSONL files and their manifest (``export_jsonl``);
* ``_workspace``: where a workspace's sessions are, its sources read in order (``read_workspace``);
* ``_jsonl``, ``_sqlite``: one source of each kind read into a batch (and, for JSONL, messages as a file);
* ``_file_names``: an export's file names (``plan_file_names``), with ``_rust_alphanumeric``: the characters
  ZeroClaw keeps in them;
* ``_source``: a source file opened as input we do not control, and what reading it gives (``SourceBatch``).
"""

from __future__ import annotations

# ``import NAME as NAME``: a name outside ``__all__`` that this module has always offered, re-exported as such.
from ._export import MANIFEST_FORMAT as MANIFEST_FORMAT
from ._export import MANIFEST_NAME, JsonlExport, export_jsonl
from ._file_names import MAX_NAME_BYTES, plan_file_names, sanitize_key
from ._importing import ImportInterrupted as ImportInterrupted
from ._importing import WorkspaceImport, import_workspace
from ._jsonl import KEY_FIELD as KEY_FIELD
from ._jsonl import jsonl_bytes, read_jsonl
from ._jsonl import parse_message as parse_message
from ._source import BAD_KEY as BAD_KEY
from ._source import BLANK as BLANK
from ._source import INVALID_UTF8 as INVALID_UTF8
from ._source import (
    MAX_FILE_BYTES,
    MAX_LINE_BYTES,
    NotAWorkspace,
    RefusedSource,
    SkippedLine,
    SourceBatch,
    SourceResult,
)
from ._source import NOT_A_MESSAGE as NOT_A_MESSAGE
from ._source import NOT_JSON as NOT_JSON
from ._source import TOO_LONG as TOO_LONG
from ._source import Progress as Progress
from ._source import SourceBusy as SourceBusy
from ._source import TimedEvents as TimedEvents
from ._source import recordable_time as recordable_time
from ._sqlite import parse_time as parse_time
from ._sqlite import read_sqlite
from ._workspace import read_workspace, sessions_dir

__all__ = [
    "MANIFEST_NAME",
    "MAX_FILE_BYTES",
    "MAX_LINE_BYTES",
    "MAX_NAME_BYTES",
    "JsonlExport",
    "NotAWorkspace",
    "RefusedSource",
    "SkippedLine",
    "SourceBatch",
    "SourceResult",
    "WorkspaceImport",
    "sessions_dir",
    "sanitize_key",
    "read_jsonl",
    "read_sqlite",
    "read_workspace",
    "import_workspace",
    "jsonl_bytes",
    "plan_file_names",
    "export_jsonl",
]
