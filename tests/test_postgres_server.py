"""The tests' throwaway PostgreSQL server does not outlive the test run that started it, however that run ends."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
import time
from pathlib import Path

RUN = textwrap.dedent("""
    import sys, time
    from postgres_server import PostgresServer
    server = PostgresServer()
    server.start()
    print(server.directory, flush=True)
    time.sleep(600)
""")


def alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    return True


def test_the_server_of_a_killed_test_run_is_stopped_and_its_directory_removed():
    run = subprocess.Popen([sys.executable, "-c", RUN], stdout=subprocess.PIPE, text=True,
                           cwd=Path(__file__).parent)
    try:
        assert run.stdout is not None
        directory = Path(run.stdout.readline().strip())
        postmaster = int((directory / "data" / "postmaster.pid").read_text().split()[0])
        assert alive(postmaster)
    finally:
        run.kill()  # as a killed test run ends: nothing of it runs after
        run.wait()
    deadline = time.monotonic() + 60
    while (alive(postmaster) or directory.exists()) and time.monotonic() < deadline:
        time.sleep(0.05)
    assert not alive(postmaster)
    assert not directory.exists()
