"""A connection whose server said goodbye before its socket's end arrived: closed, though libpq still reads it as open.

The server sends a fatal error on an idle connection as it closes it (a restart, a terminated backend), then the end
of the stream. Where a network delivers that end late, a pooled connection that has read the goodbye alone must still
be found closed before a call is sent on it, and a listening connection before its store trusts it.
"""

from __future__ import annotations

import socket
import threading
from collections.abc import Iterator
from pathlib import Path

import psycopg
import pytest
from _unix_proxy import UnixProxy

from eventstore import ChatMessage, SessionStore

from test_postgres_store import listening


class LateEnds(UnixProxy):
    """A proxy that passes everything on but the server's end of a connection: once the server closed one, the
    client's side stays open (the end withheld) until the client sends on it."""

    def __init__(self, server_directory: Path) -> None:
        self._ended = threading.Condition()
        self.ends_withheld = 0  # connections the server closed whose end the client has not been given
        super().__init__(server_directory)

    def wait_for_ends(self, count: int) -> None:
        with self._ended:
            assert self._ended.wait_for(lambda: self.ends_withheld >= count, timeout=10), self.ends_withheld

    def _connected(self, client: socket.socket, upstream: socket.socket) -> None:
        ended = threading.Event()
        threading.Thread(target=self._to_server, args=(client, upstream, ended), daemon=True).start()
        threading.Thread(target=self._to_client, args=(upstream, client, ended), daemon=True).start()

    def _to_server(self, client: socket.socket, upstream: socket.socket, ended: threading.Event) -> None:
        """The client's bytes to the server; once the server ended the connection, the client's next send ends the
        client's side too."""
        while True:
            try:
                data = client.recv(65536)
                if not data or ended.is_set():
                    break
                upstream.sendall(data)
            except OSError:
                break
        client.close()
        upstream.close()

    def _to_client(self, upstream: socket.socket, client: socket.socket, ended: threading.Event) -> None:
        """The server's bytes to the client, all but its end."""
        while True:
            try:
                data = upstream.recv(65536)
            except OSError:
                data = b""
            if not data:
                break
            try:
                client.sendall(data)
            except OSError:
                return
        ended.set()
        with self._ended:
            self.ends_withheld += 1
            self._ended.notify_all()


@pytest.fixture
def late_ends(postgres_server) -> Iterator[LateEnds]:
    proxy = LateEnds(postgres_server.directory)
    yield proxy
    proxy.close()


def terminate_backends(postgres_url: str, application: str) -> int:
    """Terminate the server's backends of the connections named ``application``; how many."""
    with psycopg.connect(postgres_url, autocommit=True) as connection:
        rows = connection.execute("SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE application_name = %s",
                                  (application,)).fetchall()
    return len(rows)


def test_a_pooled_connection_that_read_the_server_s_goodbye_before_its_end_is_not_handed_out(
        late_ends, postgres_url, tmp_path):
    """The command after it goes on a fresh connection rather than failing as unavailable; so does a read."""
    url = late_ends.url(postgres_url) + "&application_name=late_ends_pool"
    with SessionStore(url, cache=tmp_path / "host") as host:
        assert host.append("k", ChatMessage.user("before")) == 1
        listening(host)  # not killed in the middle of setting its listener up
        terminated = terminate_backends(postgres_url, "late_ends_pool")
        assert terminated >= 1
        late_ends.wait_for_ends(terminated)
        assert host.append("k", ChatMessage.user("after")) == 2
        assert host.load("k") == [ChatMessage.user("before"), ChatMessage.user("after")]


def test_a_listening_connection_that_read_the_server_s_goodbye_before_its_end_is_not_trusted(
        late_ends, postgres_url, tmp_path):
    """A host without a subscriber reads another host's commit at once: its listener, whose backend is gone, can
    bring no notification, so its read asks the server."""
    url = late_ends.url(postgres_url) + "&application_name=late_ends_listener"
    with SessionStore(url, cache=tmp_path / "one") as one, SessionStore(postgres_url, cache=tmp_path / "two") as two:
        one.append("k", ChatMessage.user("before"))
        listening(one)
        terminated = terminate_backends(postgres_url, "late_ends_listener")
        assert terminated >= 2  # its pooled connection and its listener
        late_ends.wait_for_ends(terminated)
        two.append("k", ChatMessage.assistant("after the goodbye"))
        assert [m.content for m in one.load("k")] == ["before", "after the goodbye"]
