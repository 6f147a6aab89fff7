"""Many open event streams read by one thread with a selector, for the benchmarks.

A thread per stream would cost the load generator more CPU than the server it measures.
Subclasses say what a chunk of a stream means (:meth:`received`, called holding the lock)
and what its end means (:meth:`ended`, called without it, so it may open a new stream).
"""

from __future__ import annotations

import selectors
import socket
import threading
import time
from typing import Any


class StreamReader:
    """Sockets opened with :meth:`connect`, read by one background thread until closed."""

    def __init__(self, host: str, port: int):
        self.host, self.port = host, port
        self.selector = selectors.DefaultSelector()
        self.lock = threading.Lock()
        self.running = True
        self.reader = threading.Thread(target=self._read, name="streams", daemon=True)
        self.reader.start()

    def connect(self, request: str, context: Any = None) -> socket.socket:
        """Open a connection, send ``request`` and hand the answer to the reader thread;
        :meth:`opened` gets ``context`` before the reader can see a byte."""
        sock = socket.create_connection((self.host, self.port), timeout=10)
        sock.sendall(request.encode())
        sock.setblocking(False)
        with self.lock:
            self.opened(sock, context)
            self.selector.register(sock, selectors.EVENT_READ)
        return sock

    def opened(self, sock: socket.socket, context: Any) -> None:
        """A stream was opened (called holding the lock)."""

    def received(self, sock: socket.socket, data: bytes) -> None:
        """Bytes arrived on a stream (called holding the lock)."""

    def ended(self, sock: socket.socket) -> None:
        """The server closed a stream (called without the lock; the socket is closed)."""

    def open_count(self) -> int:
        """Streams the server has not closed."""
        with self.lock:
            return len(self.selector.get_map())

    def _read(self) -> None:
        while self.running:
            if not self.open_count():
                time.sleep(0.01)
                continue
            for key, _ in self.selector.select(timeout=0.2):
                sock = key.fileobj
                try:
                    data = sock.recv(65536)
                except BlockingIOError:
                    continue
                except OSError:
                    data = b""
                with self.lock:
                    if data:
                        self.received(sock, data)
                        continue
                    self.selector.unregister(sock)
                sock.close()
                self.ended(sock)

    def close(self) -> None:
        """Stop the reader and close every stream still open."""
        self.running = False
        self.reader.join()
        for key in list(self.selector.get_map().values()):
            key.fileobj.close()
        self.selector.close()
