"""A throwaway PostgreSQL server for the tests: a unix socket only, in a temporary directory.

The server refuses to run as root, so as root its commands run as the ``postgres`` user. ``fsync`` is off
(a killed client loses nothing: the OS keeps what was written), ``synchronous_commit`` stays on, so a test
that stops the server immediately keeps every acknowledged commit.
"""

from __future__ import annotations

import glob
import os
import shutil
import subprocess
import tempfile
from pathlib import Path

__all__ = ["PostgresServer"]


def _binary(name: str) -> str:
    found = sorted(glob.glob(f"/usr/lib/postgresql/*/bin/{name}"))
    if not found:
        raise RuntimeError(f"PostgreSQL's {name} is not installed (the Debian package `postgresql`)")
    return found[-1]


class PostgresServer:
    """``initdb`` in a fresh directory, then ``start``/``stop`` (immediate) as often as a test needs."""

    def __init__(self) -> None:
        self.directory = Path(tempfile.mkdtemp(prefix="eventstore-pg-"))
        self.data = self.directory / "data"
        self.url = f"postgresql://postgres@/postgres?host={self.directory}"
        as_postgres = os.geteuid() == 0
        if as_postgres:
            shutil.chown(self.directory, "postgres", "postgres")
        self._prefix = ["runuser", "-u", "postgres", "--"] if as_postgres else []
        self._run(_binary("initdb"), "--no-sync", "-A", "trust", "-U", "postgres", "-E", "UTF8", "-D", str(self.data))

    def _run(self, *command: str) -> None:
        done = subprocess.run([*self._prefix, *command], capture_output=True, text=True, check=False)
        if done.returncode:
            raise RuntimeError(f"{' '.join(command)} failed: {done.stderr.strip() or done.stdout.strip()}")

    def start(self) -> None:
        options = f"-c listen_addresses='' -k {self.directory} -c fsync=off -c max_connections=200"
        self._run(_binary("pg_ctl"), "start", "-w", "-s", "-D", str(self.data), "-l", str(self.directory / "log"),
                  "-o", options)

    def running(self) -> bool:
        status = subprocess.run([*self._prefix, _binary("pg_ctl"), "status", "-D", str(self.data)],
                                capture_output=True, check=False)
        return status.returncode == 0

    def stop(self) -> None:
        self._run(_binary("pg_ctl"), "stop", "-s", "-m", "immediate", "-D", str(self.data))

    def remove(self) -> None:
        shutil.rmtree(self.directory, ignore_errors=True)
