"""A fault-injecting TCP proxy: put it in front of S3 (or anything) and break the link on purpose.

Modes: `pass` forwards both ways; `down` accepts and resets every connection at once (the service refuses
connections); `drop_response` forwards the request but resets the connection instead of returning the
response (the write landed, its answer was lost). Used by the integration tests and bench/production.py.
"""

from __future__ import annotations

import socket
import struct
import threading


class FaultProxy:
    """127.0.0.1:<port> -> upstream (host, port); switch `mode` at any time, new connections follow it."""

    def __init__(self, upstream: tuple[str, int]) -> None:
        self.upstream = upstream
        self.mode = "pass"
        self.connections = 0
        self._server = socket.create_server(("127.0.0.1", 0))
        self.port = self._server.getsockname()[1]
        self._stop = threading.Event()
        threading.Thread(target=self._accept, name="fault-proxy", daemon=True).start()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def close(self) -> None:
        self._stop.set()
        self._server.close()

    def _accept(self) -> None:
        while not self._stop.is_set():
            try:
                client, _ = self._server.accept()
            except OSError:
                return  # closed
            self.connections += 1
            if self.mode == "down":
                _reset(client)
                continue
            threading.Thread(target=self._serve, args=(client,), daemon=True).start()

    def _serve(self, client: socket.socket) -> None:
        try:
            upstream = socket.create_connection(self.upstream, timeout=30)
        except OSError:
            _reset(client)
            return
        # The mode is read per request, not per connection: clients keep connections alive across a switch.
        drop_next = threading.Event()
        threading.Thread(target=self._requests, args=(client, upstream, drop_next), daemon=True).start()
        self._responses(upstream, client, drop_next)

    def _requests(self, client: socket.socket, upstream: socket.socket, drop_next: threading.Event) -> None:
        try:
            while chunk := client.recv(65536):
                if self.mode == "down":
                    break
                if self.mode == "drop_response" and chunk[:4] in (b"PUT ", b"POST"):
                    drop_next.set()  # a write: let it land, lose its answer
                upstream.sendall(chunk)
        except OSError:
            pass
        _reset(client)
        _close(upstream)

    def _responses(self, upstream: socket.socket, client: socket.socket, drop_next: threading.Event) -> None:
        try:
            while chunk := upstream.recv(65536):
                if drop_next.is_set():
                    # Interim "100 Continue" answers go through (S3 clients wait for one before sending a
                    # body; the server may send two in one read); the final answer, even when it arrives in
                    # the same read right behind them, is lost.
                    while chunk.startswith(b"HTTP/1.1 100") and b"\r\n\r\n" in chunk:
                        end = chunk.index(b"\r\n\r\n") + 4
                        client.sendall(chunk[:end])
                        chunk = chunk[end:]
                    if chunk.startswith(b"HTTP/1.1 100"):  # an interim answer cut short by the read
                        client.sendall(chunk)
                        continue
                    if chunk:
                        break
                    continue
                client.sendall(chunk)
        except OSError:
            pass
        _reset(client)
        _close(upstream)


def _close(sock: socket.socket) -> None:
    try:
        sock.shutdown(socket.SHUT_RDWR)
    except OSError:
        pass
    sock.close()


def _reset(sock: socket.socket) -> None:
    """Close with RST rather than FIN: the peer sees 'connection reset', as when a service goes away."""
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
        sock.shutdown(socket.SHUT_RDWR)  # wakes the other thread blocked reading this socket
    except OSError:
        pass
    sock.close()
