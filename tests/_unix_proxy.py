"""A unix-socket proxy in front of the test PostgreSQL server, for tests of what a network does to connections: a
subclass says what passes between a client and the server (``_connected``)."""

from __future__ import annotations

import shutil
import socket
import tempfile
import threading
from pathlib import Path

_SOCKET = ".s.PGSQL.5432"


class UnixProxy:
    """Accepts the clients of ``url()`` and connects each to the server, in threads of its own."""

    def __init__(self, server_directory: Path) -> None:
        self.directory = Path(tempfile.mkdtemp(prefix="es-proxy-"))  # a short path: unix sockets allow ~100 bytes
        self._server = str(server_directory / _SOCKET)
        self._listener = socket.socket(socket.AF_UNIX)
        self._listener.bind(str(self.directory / _SOCKET))
        self._listener.listen()
        self._sockets: list[socket.socket] = [self._listener]
        threading.Thread(target=self._accept, daemon=True).start()

    def url(self, postgres_url: str) -> str:
        """``postgres_url`` (the test server, a schema of it) through this proxy."""
        return postgres_url.replace(f"host={Path(self._server).parent}", f"host={self.directory}")

    def close(self) -> None:
        for each in self._sockets:
            each.close()
        shutil.rmtree(self.directory, ignore_errors=True)

    def _accept(self) -> None:
        while True:
            try:
                client, _ = self._listener.accept()
            except OSError:
                return  # closed
            upstream = socket.socket(socket.AF_UNIX)
            upstream.connect(self._server)
            self._sockets += [client, upstream]
            self._connected(client, upstream)

    def _connected(self, client: socket.socket, upstream: socket.socket) -> None:
        """Start passing bytes between ``client`` and the server's ``upstream``."""
        raise NotImplementedError
