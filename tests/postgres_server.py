"""A throwaway PostgreSQL server for the tests: a unix socket only, in a temporary directory.

The server refuses to run as root, so as root its commands run as the ``postgres`` user. ``fsync`` is off
(a killed client loses nothing: the OS keeps what was written), ``synchronous_commit`` stays on, so a test
that stops the server immediately keeps every acknowledged commit.

A server outlives the process that started it, so each one has a watchdog: a process of its own session (a signal
to the test run's process group does not reach it) that waits for the end of a pipe only the starting process
writes to. That end closes when the process ends, however it ends (a ``SIGKILL`` too), and the watchdog then stops
the server and removes its directory.
"""

from __future__ import annotations

import glob
import os
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

__all__ = ["PostgresServer"]

#: The watchdog: reads its end of the pipe until the other end closes, then runs the stop command it was given and
#: removes the server's directory. Whatever it does after that end closed must not fail the test run: it has none.
_WATCHDOG = """
import os, shutil, subprocess, sys
pipe, directory, *stop = sys.argv[1:]
while os.read(int(pipe), 4096):
    pass
subprocess.run(stop, capture_output=True, check=False)
shutil.rmtree(directory, ignore_errors=True)
"""


def _binary(name: str) -> str:
    found = sorted(glob.glob(f"/usr/lib/postgresql/*/bin/{name}"))
    if not found:
        raise RuntimeError(f"PostgreSQL's {name} is not installed (the Debian package `postgresql`)")
    return found[-1]


class PostgresServer:
    """``initdb`` in a fresh directory, then ``start``/``stop`` (immediate) as often as a test needs; ``remove``
    when done. If the process that made it ends first, its watchdog stops the server and removes the directory."""

    def __init__(self) -> None:
        self.directory = Path(tempfile.mkdtemp(prefix="eventstore-pg-"))
        self.data = self.directory / "data"
        self.url = f"postgresql://postgres@/postgres?host={self.directory}"
        as_postgres = os.geteuid() == 0
        if as_postgres:
            shutil.chown(self.directory, "postgres", "postgres")
        self._prefix = ["runuser", "-u", "postgres", "--"] if as_postgres else []
        self._watchdog = self._watch()
        self._run(_binary("initdb"), "--no-sync", "-A", "trust", "-U", "postgres", "-E", "UTF8", "-D", str(self.data))

    def _watch(self) -> tuple[subprocess.Popen[bytes], int]:
        """The watchdog and this process's end of its pipe (not inherited by the processes this one starts)."""
        watched, alive = os.pipe()
        try:
            stop = [*self._prefix, _binary("pg_ctl"), "stop", "-s", "-m", "immediate", "-D", str(self.data)]
            watchdog = subprocess.Popen([sys.executable, "-c", _WATCHDOG, str(watched), str(self.directory), *stop],
                                        pass_fds=(watched,), start_new_session=True, stdin=subprocess.DEVNULL)
        except BaseException:
            os.close(alive)
            raise
        finally:
            os.close(watched)
        return watchdog, alive

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
        """Stop the server if it runs and remove its directory: the watchdog's work, done now."""
        watchdog, alive = self._watchdog
        os.close(alive)
        watchdog.wait(timeout=60)
        shutil.rmtree(self.directory, ignore_errors=True)
