"""One callback POST against real sockets on 127.0.0.1: bounded, never redirected, never
sent to a link-local address; and the step that runs the loop only in io workers."""

from __future__ import annotations

import base64
import http.server
import socket
import threading
import time
from collections.abc import Callable, Iterator
from types import SimpleNamespace

import pytest
from standardwebhooks import Webhook

from shared.config import Settings
from shared.store import JobStore
from shared.webhooks import Deliveries
from tests.factories import result, spec
from workers.webhooks import DeliveryLoop, Refused, Unanswered, WebhookStep, post

ALLOW = ("http://127.0.0.1:*",)
HEADERS = {"webhook-id": "msg_j", "webhook-timestamp": "1", "webhook-signature": "v1,x"}


class Receiver:
    """A threaded HTTP server whose POST handler a test supplies; records each request."""

    def __init__(self, handle: Callable[[http.server.BaseHTTPRequestHandler], None]):
        self.requests: list[tuple[str, dict[str, str], bytes]] = []
        receiver = self

        class Handler(http.server.BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def do_POST(self):  # noqa: N802 - the http.server API
                body = self.rfile.read(int(self.headers["Content-Length"]))
                receiver.requests.append((self.path, dict(self.headers), body))
                handle(self)

            def log_message(self, *args):
                pass

        self.server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def url(self, path: str = "/hook") -> str:
        return f"http://127.0.0.1:{self.server.server_port}{path}"

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


def answer(status: int, headers: dict[str, str] | None = None, body: bytes = b""):
    def handle(handler: http.server.BaseHTTPRequestHandler) -> None:
        handler.send_response(status)
        for name, value in {"Content-Length": str(len(body)), **(headers or {})}.items():
            handler.send_header(name, value)
        handler.end_headers()
        handler.wfile.write(body)

    return handle


@pytest.fixture
def receiver() -> Iterator[Callable[..., Receiver]]:
    started: list[Receiver] = []

    def start(handle) -> Receiver:
        started.append(Receiver(handle))
        return started[-1]

    yield start
    for server in started:
        server.close()


class RawServer:
    """A listening socket whose connections ``serve(conn)`` handles, each in a thread."""

    def __init__(self, serve: Callable[[socket.socket], None]):
        self.stopped = threading.Event()
        self.listener = socket.create_server(("127.0.0.1", 0))
        self.port = self.listener.getsockname()[1]
        self.connections: list[socket.socket] = []

        def accept() -> None:
            while not self.stopped.is_set():
                try:
                    conn, _ = self.listener.accept()
                except OSError:
                    return
                self.connections.append(conn)
                threading.Thread(target=serve, args=(conn,), daemon=True).start()

        threading.Thread(target=accept, daemon=True).start()

    def close(self) -> None:
        self.stopped.set()
        self.listener.close()
        for conn in self.connections:
            conn.close()


@pytest.fixture
def raw_server() -> Iterator[Callable[..., RawServer]]:
    started: list[RawServer] = []

    def start(serve) -> RawServer:
        started.append(RawServer(serve))
        return started[-1]

    yield start
    for server in started:
        server.close()


def test_posts_the_body_and_headers_and_returns_the_status(receiver):
    hook = receiver(answer(200))
    body = b'{"id":"j"}'
    assert post(hook.url("/hook?x=1"), body, HEADERS, timeout=5, allowlist=ALLOW) == 200
    [(path, headers, sent)] = hook.requests
    assert (path, sent) == ("/hook?x=1", body)
    assert headers["webhook-id"] == "msg_j" and headers["webhook-signature"] == "v1,x"
    assert headers["Content-Type"] == "application/json"
    assert headers["Host"] == f"127.0.0.1:{hook.server.server_port}"


def test_redirects_are_not_followed(receiver):
    hook = receiver(answer(307, {"Location": "/elsewhere"}))
    assert post(hook.url(), b"{}", HEADERS, timeout=5, allowlist=ALLOW) == 307
    assert [path for path, _, _ in hook.requests] == ["/hook"]


def test_a_huge_answer_is_not_read(raw_server):
    def serve(conn: socket.socket) -> None:
        conn.recv(65536)
        conn.sendall(b"HTTP/1.1 200 OK\r\nContent-Length: 10000000000\r\n\r\n")
        try:
            while True:
                conn.sendall(b"x" * 65536)
        except OSError:
            pass

    server = raw_server(serve)
    started = time.monotonic()
    assert post(f"http://127.0.0.1:{server.port}/", b"{}", HEADERS, timeout=5,
                allowlist=ALLOW) == 200
    assert time.monotonic() - started < 1


@pytest.mark.parametrize("behaviour", ["silent", "trickle"])
def test_the_whole_exchange_is_bounded(raw_server, behaviour):
    stop = threading.Event()

    def serve(conn: socket.socket) -> None:
        conn.recv(65536)
        if behaviour == "trickle":
            # One byte of headers every 0.05 s: every read succeeds, the answer never ends.
            conn.sendall(b"HTTP/1.1 200 OK\r\n")
            while not stop.wait(0.05):
                try:
                    conn.sendall(b"X")
                except OSError:
                    return
        else:
            stop.wait(10)

    server = raw_server(serve)
    started = time.monotonic()
    with pytest.raises(Unanswered, match="within 0.6 s"):
        post(f"http://127.0.0.1:{server.port}/", b"{}", HEADERS, timeout=0.6, allowlist=ALLOW)
    took = time.monotonic() - started
    stop.set()
    assert 0.55 <= took < 0.9, took


def test_a_closed_port_is_unanswered():
    port = socket.create_server(("127.0.0.1", 0))
    free = port.getsockname()[1]
    port.close()
    with pytest.raises(Unanswered):
        post(f"http://127.0.0.1:{free}/", b"{}", HEADERS, timeout=2, allowlist=ALLOW)


def test_a_name_resolving_to_link_local_is_refused_without_connecting():
    def resolve(host, port, *args):
        assert host == "hooks.example"
        return [(socket.AF_INET, socket.SOCK_STREAM, 6, "", ("169.254.169.254", port))]

    with pytest.raises(Refused, match="169.254.169.254"):
        post("http://hooks.example/x", b"{}", HEADERS, timeout=1,
             allowlist=("http://hooks.example",), resolve=resolve)


def test_the_connection_goes_to_the_address_checked(receiver):
    hook = receiver(answer(204))
    calls = []

    def resolve(host, port, *args):
        calls.append(host)
        return socket.getaddrinfo("127.0.0.1", port, *args)

    url = f"http://hooks.example:{hook.server.server_port}/x"
    assert post(url, b"{}", HEADERS, timeout=5, allowlist=("http://hooks.example:*",),
                resolve=resolve) == 204
    assert calls == ["hooks.example"]  # resolved once, by the check
    assert hook.requests[0][1]["Host"] == f"hooks.example:{hook.server.server_port}"


def test_a_url_off_the_allowlist_is_refused(receiver):
    hook = receiver(answer(200))
    with pytest.raises(Refused, match="EMCOINS_CALLBACK_ALLOWLIST"):
        post(hook.url(), b"{}", HEADERS, timeout=5, allowlist=("http://127.0.0.1:1",))
    assert hook.requests == []


def _worker(queues: list[str] | None) -> SimpleNamespace:
    selected = None if queues is None else dict.fromkeys(queues)
    return SimpleNamespace(app=SimpleNamespace(amqp=SimpleNamespace(
        queues=SimpleNamespace(consume_from=selected)
    )))


@pytest.mark.parametrize(("queues", "secret", "runs"), [
    (["io"], "whsec_c2VjcmV0", True),
    (["io", "cpu"], "whsec_c2VjcmV0", True),
    (["cpu"], "whsec_c2VjcmV0", False),
    (["io"], "", False),
])
def test_the_loop_runs_only_in_io_workers_with_a_secret(monkeypatch, queues, secret, runs):
    monkeypatch.setattr("workers.webhooks.get_settings",
                        lambda: Settings(webhook_secret=secret))
    step = WebhookStep.__new__(WebhookStep)
    assert step.include_if(_worker(queues)) is runs


# --- The loop, on the session's Redis --------------------------------------------------------

SECRET = "whsec_" + base64.b64encode(b"loop test secret of 32 bytes!!!!").decode()


def loop_settings(**changes) -> Settings:
    return Settings(webhook_secret=SECRET, callback_allowlist=ALLOW, **changes)


def finished_jobs(client, url: str, count: int) -> list[str]:
    store = JobStore(client, ttl_seconds=600)
    ids = [f"job{i}" for i in range(count)]
    for job_id in ids:
        store.create(job_id, spec=spec(callback=url), draws_total=1, counts=[[1, 1, 1]])
        store.start_fitting(job_id, [[1, 1, 1]])
        store.succeed(job_id, result(1))
    return ids


def wait_until(condition: Callable[[], bool], timeout: float = 10) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline
        time.sleep(0.02)


def test_two_loops_deliver_each_callback_once(redis_client, receiver):
    hook = receiver(answer(200))
    ids = finished_jobs(redis_client, hook.url(), 40)
    loops = [DeliveryLoop(redis_client, loop_settings(), poll_seconds=0.05) for _ in range(2)]
    for loop in loops:
        loop.start()
    try:
        wait_until(lambda: len(hook.requests) >= len(ids))
        time.sleep(0.3)  # a second delivery of any would arrive by now
    finally:
        for loop in loops:
            loop.stop()
    sent = sorted(headers["webhook-id"] for _, headers, _ in hook.requests)
    assert sent == sorted(f"msg_{job_id}" for job_id in ids)
    for _, headers, body in hook.requests:
        Webhook(SECRET).verify(body, headers)
    store = JobStore(redis_client, ttl_seconds=600)
    assert {store.get(i).callback.state for i in ids} == {"delivered"}


def test_stop_waits_for_the_attempt_in_flight_within_its_deadline(redis_client, raw_server):
    arrived = threading.Event()

    def serve(conn: socket.socket) -> None:
        conn.recv(65536)
        arrived.set()
        arrived.wait(30)  # never answers

    server = raw_server(serve)
    [job_id] = finished_jobs(redis_client, f"http://127.0.0.1:{server.port}/", 1)
    loop = DeliveryLoop(redis_client, loop_settings(webhook_timeout=1.0), poll_seconds=0.05)
    loop.start()
    assert arrived.wait(5)
    started = time.monotonic()
    loop.stop()
    assert time.monotonic() - started < 1.5
    callback = JobStore(redis_client, ttl_seconds=600).get(job_id).callback
    # The timed-out attempt was recorded and the next one scheduled for another worker.
    assert (callback.state, callback.attempts, callback.last_status) == ("pending", 1, None)
    assert Deliveries(redis_client).due(1).next_in_ms is not None
