"""A draw source that misbehaves on purpose, over raw sockets, for the fetcher's fault tests.

Usage::

    with HostileSource("trickle", interval=0.2) as source:
        fetcher.fetch(source.url, range(30))
        source.connections  # TCP connections accepted so far
        source.active       # connections open right now

or ``source = HostileSource("gzip-bomb").start()`` ... ``source.stop()``. It listens on
127.0.0.1 on a free port (or ``port``), answers every request path the same way, and runs
one thread per connection. :meth:`HostileSource.stop` shuts every connection still open, so
a client stuck reading from it is freed too.

Modes (:data:`MODES`):

``normal``
    ``{"flips": "HTTH"}`` (or ``flips``, a string) with a Content-Length, keep-alive.
``trickle``
    Headers at once, then ``{"flips": "H`` and one more ``H`` every ``interval`` seconds,
    for ever: each read is quick, the answer never ends.
``slow-headers``
    The status line, then one byte of a header every ``interval`` seconds, for ever.
``endless``
    A chunked body (``{"flips": "HHH...``) sent as fast as the client reads it, for ever.
``gzip-bomb``
    ``Content-Encoding: gzip``: about 1 MB on the wire inflating to a 1 GiB draw
    (``{"flips": "HHH...H"}``, valid JSON). Built once per process, in about a second.
``oversized``
    A valid draw of ``flips`` flips (an int; 10,000,000 by default, ten times the default
    ``EMCOINS_MAX_FLIPS``), without a Content-Length unless ``declare_length``.
``nested``
    ``depth`` (100,000 by default) ``[`` characters: JSON nested deeper than any parser's
    stack.
``stalling``
    Headers, then ``{"flips": "HHH...`` of ``flips`` flips (an int) at once, then nothing
    more until the client closes or the source stops. The answer is built at ``start``,
    once, so that a test measuring its own memory does not count it per connection.
"""

from __future__ import annotations

import functools
import select
import socket
import struct
import threading
import zlib
from typing import Any

MODES = (
    "normal", "trickle", "slow-headers", "endless", "gzip-bomb", "oversized", "nested",
    "stalling",
)
_BLOCK = 1024 * 1024
_PREFIX = b'{"flips": "'
_SUFFIX = b'"}'


@functools.cache
def gzip_bomb(inflated: int = 1024**3) -> bytes:
    """A gzip member of ``{"flips": "HH...H"}``, ``inflated`` bytes once inflated.

    Every 1 MiB block of ``H`` ends with a full flush, which resets the compressor, so all
    of them compress to the same bytes: one block is compressed and the result repeated.
    """
    blocks, rest = divmod(inflated - len(_PREFIX) - len(_SUFFIX), _BLOCK)
    block = b"H" * _BLOCK

    def deflate(data: bytes) -> bytes:
        compressor = zlib.compressobj(9, zlib.DEFLATED, -15)
        return compressor.compress(data) + compressor.flush(zlib.Z_FULL_FLUSH)

    same = deflate(block)
    crc = zlib.crc32(_PREFIX)
    for _ in range(blocks):
        crc = zlib.crc32(block, crc)
    tail = b"H" * rest + _SUFFIX
    crc = zlib.crc32(tail, crc)
    last = zlib.compressobj(9, zlib.DEFLATED, -15)
    body = b"".join(
        [deflate(_PREFIX), same * blocks, last.compress(tail), last.flush(zlib.Z_FINISH)]
    )
    header = b"\x1f\x8b\x08\x00\x00\x00\x00\x00\x02\xff"
    return header + body + struct.pack("<II", crc & 0xFFFFFFFF, inflated & 0xFFFFFFFF)


class HostileSource:
    """An HTTP server on 127.0.0.1 answering every GET in one misbehaving ``mode``."""

    def __init__(
        self,
        mode: str = "normal",
        *,
        interval: float = 1.0,
        flips: Any = None,
        depth: int = 100_000,
        declare_length: bool = False,
        port: int = 0,
        path: str = "/draw",
    ):
        if mode not in MODES:
            raise ValueError(f"mode {mode!r} is not one of {', '.join(MODES)}")
        self.mode = mode
        self.interval = interval
        self.flips = flips
        self.depth = depth
        self.declare_length = declare_length
        self._stalled = b""  # the stalling answer, built at start
        self.path = path
        self._port = port
        self._listener: socket.socket | None = None
        self._stopping = threading.Event()
        self._lock = threading.Lock()
        self._open: set[socket.socket] = set()
        self._threads: list[threading.Thread] = []
        self.connections = 0
        self.requests = 0
        self.bytes_sent = 0

    # --- lifecycle -------------------------------------------------------------------

    def start(self) -> HostileSource:
        """Listen and serve in the background; returns ``self``."""
        if self.mode == "gzip-bomb":
            gzip_bomb()  # built before the first client waits for it
        if self.mode == "stalling":
            self._stalled = _PREFIX + b"H" * int(self.flips)
        listener = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        listener.bind(("127.0.0.1", self._port))
        listener.listen(128)
        listener.settimeout(0.1)
        self._listener = listener
        self._spawn(self._accept_loop)
        return self

    def stop(self) -> None:
        """Stop accepting, shut every open connection, and wait for the threads."""
        self._stopping.set()
        if self._listener is not None:
            self._listener.close()
        with self._lock:
            conns = list(self._open)
        for conn in conns:
            try:
                conn.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass
        for thread in self._threads:
            thread.join(timeout=5)

    def __enter__(self) -> HostileSource:
        return self.start()

    def __exit__(self, *exc_info: object) -> None:
        self.stop()

    @property
    def port(self) -> int:
        """The port it listens on."""
        assert self._listener is not None, "start() the source first"
        return self._listener.getsockname()[1]

    @property
    def url(self) -> str:
        """The URL to fetch draws from."""
        return f"http://127.0.0.1:{self.port}{self.path}"

    @property
    def active(self) -> int:
        """Connections open right now (the client has not closed them)."""
        with self._lock:
            return len(self._open)

    # --- serving ---------------------------------------------------------------------

    def _spawn(self, target, *args) -> None:
        thread = threading.Thread(target=target, args=args, daemon=True)
        self._threads.append(thread)
        thread.start()

    def _accept_loop(self) -> None:
        while not self._stopping.is_set():
            try:
                conn, _ = self._listener.accept()
            except TimeoutError:
                continue
            except OSError:
                return  # closed by stop()
            conn.settimeout(None)
            with self._lock:
                self.connections += 1
                self._open.add(conn)
            self._spawn(self._serve, conn)

    def _serve(self, conn: socket.socket) -> None:
        try:
            while self._read_request(conn):
                with self._lock:
                    self.requests += 1
                if not getattr(self, "_answer_" + self.mode.replace("-", "_"))(conn):
                    break
        except OSError:
            pass  # the client went away
        finally:
            with self._lock:
                self._open.discard(conn)
            conn.close()

    def _read_request(self, conn: socket.socket) -> bool:
        """Read one request's head; False if the client closed the connection."""
        data = b""
        while b"\r\n\r\n" not in data:
            chunk = conn.recv(4096)
            if not chunk or self._stopping.is_set():
                return False
            data += chunk
            if len(data) > 65536:
                return False
        return True

    def _send(self, conn: socket.socket, data: bytes) -> None:
        conn.sendall(data)
        self.bytes_sent += len(data)

    def _wait(self, conn: socket.socket) -> bool:
        """Sleep ``interval``; False as soon as the client closes or the source stops."""
        readable, _, _ = select.select([conn], [], [], self.interval)
        if self._stopping.is_set():
            return False
        return not (readable and conn.recv(4096) == b"")

    def _head(self, conn: socket.socket, *lines: str) -> None:
        head = "HTTP/1.1 200 OK\r\nContent-Type: application/json\r\n"
        self._send(conn, (head + "".join(f"{line}\r\n" for line in lines) + "\r\n").encode())

    # Each answer returns True to keep the connection for another request.

    def _answer_normal(self, conn: socket.socket) -> bool:
        flips = self.flips if self.flips is not None else "HTTH"
        body = b'{"flips": "' + flips.encode() + b'"}'
        self._head(conn, f"Content-Length: {len(body)}")
        self._send(conn, body)
        return True

    def _answer_trickle(self, conn: socket.socket) -> bool:
        self._head(conn, "Connection: close")
        self._send(conn, _PREFIX)
        while self._wait(conn):
            self._send(conn, b"H")
        return False

    def _answer_slow_headers(self, conn: socket.socket) -> bool:
        self._send(conn, b"HTTP/1.1 200 OK\r\nX-Slow: ")
        while self._wait(conn):
            self._send(conn, b"a")
        return False

    def _answer_endless(self, conn: socket.socket) -> bool:
        self._head(conn, "Transfer-Encoding: chunked")
        block = b"H" * 65536
        self._send(conn, b"%x\r\n%s\r\n" % (len(_PREFIX), _PREFIX))
        frame = b"%x\r\n%s\r\n" % (len(block), block)
        while not self._stopping.is_set():
            self._send(conn, frame)
        return False

    def _answer_gzip_bomb(self, conn: socket.socket) -> bool:
        bomb = gzip_bomb()
        self._head(conn, "Content-Encoding: gzip", f"Content-Length: {len(bomb)}")
        self._send(conn, bomb)
        return True

    def _answer_oversized(self, conn: socket.socket) -> bool:
        flips = 10_000_000 if self.flips is None else int(self.flips)
        length = len(_PREFIX) + flips + len(_SUFFIX)
        framing = f"Content-Length: {length}" if self.declare_length else "Connection: close"
        self._head(conn, framing)
        self._send(conn, _PREFIX)
        block = b"HT" * 32768
        full, rest = divmod(flips, len(block))
        for _ in range(full):
            if self._stopping.is_set():
                return False
            self._send(conn, block)
        self._send(conn, block[:rest] + _SUFFIX)
        return self.declare_length

    def _answer_stalling(self, conn: socket.socket) -> bool:
        self._head(conn, "Connection: close")
        self._send(conn, self._stalled)
        while self._wait(conn):
            pass
        return False

    def _answer_nested(self, conn: socket.socket) -> bool:
        body = b"[" * self.depth
        self._head(conn, f"Content-Length: {len(body)}")
        self._send(conn, body)
        return True
