"""A tiny real HTTP server for tests that need a draw source misbehaving in a precise way."""

from __future__ import annotations

import http.server
import json
import threading
from collections.abc import Callable
from typing import Any

Answer = tuple[int, bytes, dict[str, str]]


def draw(flips: Any, status: int = 200) -> Answer:
    """A JSON answer ``{"flips": flips}``."""
    return status, json.dumps({"flips": flips}).encode(), {"Content-Type": "application/json"}


def raw(body: bytes, status: int = 200, headers: dict[str, str] | None = None) -> Answer:
    """Any answer, byte for byte."""
    return status, body, headers or {}


class StubServer:
    """Answers the n-th GET (from 1) with ``answer(n, path)``; records every path asked."""

    def __init__(self, answer: Callable[[int, str], Answer]):
        self.answer = answer
        self.hits: list[str] = []
        lock = threading.Lock()
        stub = self

        class Handler(http.server.BaseHTTPRequestHandler):
            def do_GET(self):  # noqa: N802 - the http.server API
                with lock:
                    stub.hits.append(self.path)
                    status, body, headers = stub.answer(len(stub.hits), self.path)
                self.send_response(status)
                for name, value in {"Content-Length": str(len(body)), **headers}.items():
                    self.send_header(name, value)
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, *args):
                pass

        self._server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        threading.Thread(target=self._server.serve_forever, daemon=True).start()

    def url(self, path: str = "/draw") -> str:
        """The server's URL for ``path``."""
        return f"http://127.0.0.1:{self._server.server_port}{path}"

    def close(self) -> None:
        """Stop serving and free the port."""
        self._server.shutdown()
        self._server.server_close()


def scripted(*answers: Answer) -> Callable[[int, str], Answer]:
    """Answer from a list, in order, then repeat the last one."""
    return lambda n, path: answers[min(n, len(answers)) - 1]
