"""``eventstore.zeroclaw`` is a package of one module a job; what it offers stays what the single module offered.

The command line, the docs and users import these names from ``eventstore.zeroclaw`` itself; the relaxed mypy run
on the tests checks that each is re-exported explicitly, this run that each imports.
"""

from __future__ import annotations

import inspect

import eventstore.zeroclaw as zeroclaw
from eventstore.zeroclaw import (
    BAD_KEY,
    BLANK,
    INVALID_UTF8,
    KEY_FIELD,
    MANIFEST_FORMAT,
    MANIFEST_NAME,
    MAX_FILE_BYTES,
    MAX_LINE_BYTES,
    MAX_NAME_BYTES,
    NOT_A_MESSAGE,
    NOT_JSON,
    TOO_LONG,
    JsonlExport,
    NotAWorkspace,
    Progress,
    RefusedSource,
    SkippedLine,
    SourceBatch,
    SourceResult,
    TimedEvents,
    WorkspaceImport,
    export_jsonl,
    import_workspace,
    jsonl_bytes,
    parse_message,
    parse_time,
    plan_file_names,
    read_jsonl,
    read_sqlite,
    read_workspace,
    recordable_time,
    sanitize_key,
    sessions_dir,
)

#: ``__all__`` of the module before it became a package, in its order.
PUBLISHED = ["MANIFEST_NAME", "MAX_FILE_BYTES", "MAX_LINE_BYTES", "MAX_NAME_BYTES", "JsonlExport", "NotAWorkspace",
             "RefusedSource", "SkippedLine", "SourceBatch", "SourceResult", "WorkspaceImport", "sessions_dir",
             "sanitize_key", "read_jsonl", "read_sqlite", "read_workspace", "import_workspace", "jsonl_bytes",
             "plan_file_names", "export_jsonl"]


def test_all_is_what_the_module_published() -> None:
    assert PUBLISHED == zeroclaw.__all__
    star: dict[str, object] = {}
    exec("from eventstore.zeroclaw import *", star)
    assert set(PUBLISHED) == set(star) - {"__builtins__"}


def test_every_public_name_of_the_module_still_imports_from_it() -> None:
    imported = [BAD_KEY, BLANK, INVALID_UTF8, KEY_FIELD, MANIFEST_FORMAT, MANIFEST_NAME, MAX_FILE_BYTES,
                MAX_LINE_BYTES, MAX_NAME_BYTES, NOT_A_MESSAGE, NOT_JSON, TOO_LONG, JsonlExport, NotAWorkspace,
                Progress, RefusedSource, SkippedLine, SourceBatch, SourceResult, TimedEvents, WorkspaceImport,
                export_jsonl, import_workspace, jsonl_bytes, parse_message, parse_time, plan_file_names, read_jsonl,
                read_sqlite, read_workspace, recordable_time, sanitize_key, sessions_dir]
    assert all(value is not None for value in imported)
    # The values a user may have stored or compared against are the same as before.
    assert (MAX_FILE_BYTES, MAX_LINE_BYTES, MAX_NAME_BYTES) == (1 << 30, 16 << 20, 255)
    assert (MANIFEST_NAME, MANIFEST_FORMAT, KEY_FIELD) == ("eventstore-manifest.json", "eventstore.jsonl-export",
                                                           "session_key")
    assert (BLANK, NOT_JSON, NOT_A_MESSAGE, INVALID_UTF8, BAD_KEY, TOO_LONG) == (
        "blank", "not JSON", "not a message", "invalid UTF-8", "invalid session key", "longer than 16 MiB")


def test_the_package_defines_no_class_or_function_itself_each_is_one_of_its_modules() -> None:
    defined = [value for name in dir(zeroclaw) if not name.startswith("_")
               and (inspect.isclass(value := getattr(zeroclaw, name)) or inspect.isfunction(value))]
    assert {"SourceBatch", "read_jsonl", "read_sqlite", "import_workspace", "export_jsonl"} <= {
        value.__name__ for value in defined}
    for value in defined:
        module = value.__module__
        assert module.startswith("eventstore.zeroclaw._"), (value, module)
        assert getattr(__import__(module, fromlist=["_"]), value.__name__) is value
