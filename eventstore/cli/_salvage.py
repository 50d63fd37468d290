"""The ``salvage`` command: copy the readable events of a damaged store into an events file.

What lives here and why: a store whose data file fails its checks is refused at
open, so ``export`` cannot read it. ``salvage`` reads the file itself, without LMDB
(``eventstore.services.salvage``), and writes the longest gap-free run of
events from position 1 as a whole-log events file, which ``import events`` turns
into a new store that verifies.
"""

from __future__ import annotations

from pathlib import Path

import click

from .. import interchange
from .._errors import StoreCorrupted
from .._files import atomic_file
from ..services.salvage import salvage as read_salvage
from ._context import Env, pass_env
from ._output import Output, counted, output_options

__all__ = ["COMMANDS"]


@click.command()
@click.option("--out", "out_path", type=click.Path(path_type=Path), metavar="FILE", required=True,
              help="The events file to write.")
@click.option("--force", is_flag=True, help="Replace an existing regular file (never a symbolic link).")
@output_options
@pass_env
def salvage(env: Env, out_path: Path, force: bool, as_json: bool) -> None:
    """Copy the events a damaged store still holds into an events file.

    Reads data.mdb with plain reads (never through LMDB, so damage cannot crash
    it), skips every damaged page, and writes the events from position 1 up to
    the first one that cannot be read, as a whole-log events file. When damage
    is met it also reads every page of the file, for records on pages no tree
    reaches any more (a file cut short), kept where the hash chain links.
    Events read after the first gap are counted, with the runs of positions
    read (listed with --json), but not written: a log with a gap cannot be
    replicated. The store itself is not changed.

    \b
    Example:
        eventstore salvage --out rescued.events.jsonl
        eventstore --store new-store import events rescued.events.jsonl && eventstore --store new-store verify
    """
    data_file = env.store_path / "data.mdb"
    if not data_file.is_file():
        raise click.ClickException(f"no store at {env.store_path}: {data_file} is not a file")
    try:
        found = read_salvage(data_file)
    except StoreCorrupted as exc:  # the one-line error of other commands would point back to this one
        raise click.ClickException(str(exc)) from None
    with atomic_file(out_path, replace=force) as stream:
        interchange.write_events(found.prefix, stream, interchange.ExportHeader(True))
    out = Output(as_json)
    if as_json:
        out.json({"out": str(out_path), "events": len(found.prefix), "first_missing": found.first_missing,
                  "later": list(found.later), "runs": [list(run) for run in found.runs],
                  "problems": list(found.problems)})
        return
    if found.first_missing is None:
        every = "all " if len(found.prefix) > 1 else ""
        out.line(f"Wrote {every}{counted(len(found.prefix), 'event')} to {out_path}; no damage was met.")
    else:
        runs = ", ".join(f"{first}-{last}" for first, last in found.runs) or "none"
        later = counted(len(found.later), "later event")
        out.line(f"Wrote {counted(len(found.prefix), 'event')} to {out_path}; position {found.first_missing} cannot be "
                 f"read, and {later} {'was' if len(found.later) == 1 else 'were'} read but not written (positions "
                 f"read, in runs whose hash chain links: {runs}; --json lists them).")


COMMANDS = [salvage]
