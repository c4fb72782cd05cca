"""A TCP relay that can be cut and restored, or made to swallow a response: how the chaos soak
and the outage tests break a real connection without touching the server behind it.

``cut()`` closes every relayed connection (the client reads EOF mid-conversation, as when a
server dies) and stops listening (new connections are refused); ``restore()`` listens on the
same port again. ``swallow`` (given the first bytes a client sends) picks connections whose
request is forwarded but whose answer is dropped: the server finishes the work, the client
sees the connection close with no response; ``swallowed`` keeps each such request's first
bytes with the whole answer the client never got. Threads, one pair per connection: fine for the
tens of connections a test or the soak opens.
"""

from __future__ import annotations

import contextlib
import socket
import threading
from collections.abc import Callable


class TcpRelay:
    def __init__(
        self,
        upstream: tuple[str, int],
        *,
        port: int = 0,
        swallow: Callable[[bytes], bool] | None = None,
    ) -> None:
        self.upstream = upstream
        self.swallow = swallow
        self.swallowed: list[tuple[bytes, bytes]] = []  # (request's first bytes, answer)
        self._lock = threading.Lock()
        self._open: set[socket.socket] = set()
        self._listener: socket.socket | None = None
        self._closed = False
        self.port = port
        self._listen()

    @property
    def address(self) -> tuple[str, int]:
        return ("127.0.0.1", self.port)

    def _listen(self) -> None:
        listener = socket.socket()
        listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        listener.bind(("127.0.0.1", self.port))
        listener.listen(128)
        self.port = listener.getsockname()[1]
        self._listener = listener
        threading.Thread(target=self._accept, args=(listener,), daemon=True).start()

    def _accept(self, listener: socket.socket) -> None:
        while True:
            try:
                client, _ = listener.accept()
            except OSError:
                return  # cut() or close() shut the listener
            try:
                server = socket.create_connection(self.upstream, timeout=5)
            except OSError:
                client.close()  # nothing behind us: the client sees the connection drop
                continue
            server.settimeout(None)
            with self._lock:
                if self._listener is not listener:  # cut while connecting
                    client.close()
                    server.close()
                    return
                self._open.update((client, server))
            pair = _Pair(self, client, server)
            threading.Thread(target=pair.client_to_server, daemon=True).start()
            threading.Thread(target=pair.server_to_client, daemon=True).start()

    def _forget(self, *socks: socket.socket) -> None:
        with self._lock:
            for sock in socks:
                self._open.discard(sock)
                _close(sock)

    def cut(self) -> None:
        """Drop every relayed connection and refuse new ones until ``restore()``."""
        with self._lock:
            listener, self._listener = self._listener, None
            if listener is not None:
                _close(listener)
            for sock in self._open:
                _close(sock)
            self._open.clear()

    def restore(self) -> None:
        with self._lock:
            if self._listener is not None or self._closed:
                return
        self._listen()

    def close(self) -> None:
        self._closed = True
        self.cut()


class _Pair:
    """One relayed connection: two pumps, and whether its answer is to be swallowed."""

    def __init__(self, relay: TcpRelay, client: socket.socket, server: socket.socket) -> None:
        self.relay, self.client, self.server = relay, client, server
        self.swallowing = False
        self.request_head = b""
        self.decided = threading.Event()

    def client_to_server(self) -> None:
        first = True
        try:
            while chunk := self.client.recv(65536):
                if first:
                    first = False
                    swallow = self.relay.swallow
                    self.swallowing = bool(swallow and swallow(chunk))
                    self.request_head = chunk
                    self.decided.set()
                self.server.sendall(chunk)
            self.server.shutdown(socket.SHUT_WR)
        except OSError:
            pass
        finally:
            self.decided.set()
            if first:
                self.relay._forget(self.client, self.server)

    def server_to_client(self) -> None:
        answer = bytearray()
        try:
            while chunk := self.server.recv(65536):
                self.decided.wait(5)
                if self.swallowing:
                    answer += chunk
                else:
                    self.client.sendall(chunk)
            if self.swallowing:
                with self.relay._lock:
                    self.relay.swallowed.append((self.request_head, bytes(answer)))
        except OSError:
            pass
        finally:
            self.relay._forget(self.client, self.server)


def _close(sock: socket.socket) -> None:
    with contextlib.suppress(OSError):
        sock.shutdown(socket.SHUT_RDWR)
    sock.close()
