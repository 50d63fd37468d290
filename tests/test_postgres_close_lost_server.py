"""A store closes while its watcher waits on a listening connection whose server is lost without the connection's end
arriving (a network that dropped it: every byte either way gone, the socket still open). The close waited for the
watcher, which waited for an answer that would never come, until the kernel gave up on the connection (with a unix
socket: never)."""

from __future__ import annotations

import socket
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import psycopg
import pytest
from _unix_proxy import UnixProxy

from eventstore import ChatMessage, SessionStore
from eventstore.sharedlog.postgres_listener import LISTENER_RELEASE, Listener

from test_postgres_settled_reads import listener_of
from test_postgres_store import listening


class LosingProxy(UnixProxy):
    """A proxy that, once ``lose()`` is called, drops every byte either way and keeps every connection open."""

    def __init__(self, server_directory: Path) -> None:
        self._lost = threading.Event()
        super().__init__(server_directory)

    def lose(self) -> None:
        self._lost.set()

    def _connected(self, client: socket.socket, upstream: socket.socket) -> None:
        threading.Thread(target=self._pass, args=(client, upstream), daemon=True).start()
        threading.Thread(target=self._pass, args=(upstream, client), daemon=True).start()

    def _pass(self, source: socket.socket, target: socket.socket) -> None:
        while True:
            try:
                data = source.recv(65536)
                if not data:
                    return
                if not self._lost.is_set():
                    target.sendall(data)
            except OSError:
                return


@pytest.fixture
def losing_proxy(postgres_server) -> Iterator[LosingProxy]:
    proxy = LosingProxy(postgres_server.directory)
    yield proxy
    proxy.close()


def test_a_store_whose_listening_connection_lost_its_server_closes(losing_proxy, postgres_url, tmp_path, monkeypatch):
    host = SessionStore(losing_proxy.url(postgres_url), cache=tmp_path / "host")
    assert host.append("k", ChatMessage.user("before")) == 1
    listening(host)
    listener = listener_of(host)
    asked = threading.Event()
    head = Listener._head

    def asking(connection: psycopg.Connection[Any]) -> int:
        if connection is listener._connection:
            asked.set()
        return head(connection)

    losing_proxy.lose()
    monkeypatch.setattr(Listener, "_head", staticmethod(asking))
    with SessionStore(postgres_url, cache=tmp_path / "other") as other:
        other.append("k", ChatMessage.assistant("unheard"))  # its notification is lost: the watcher asks the head
    assert asked.wait(30), "the watcher never asked the lost server for the head"
    time.sleep(0.1)  # the question on its way: lost too
    closing = threading.Thread(target=host.close, daemon=True)
    started = time.monotonic()
    closing.start()
    closing.join(LISTENER_RELEASE + 10)
    assert not closing.is_alive(), "the close waits for the watcher, which waits for a lost server"
    assert time.monotonic() - started < LISTENER_RELEASE + 10
