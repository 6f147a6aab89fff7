"""Completion callbacks end to end: the real stack POSTs finished jobs to a real receiver.

One stack for the module, with a secret, callbacks allowed to 127.0.0.1 and a schedule of
three 0.2 s pauses with 1 s attempts, so the whole retry story takes seconds.
"""

from __future__ import annotations

import base64
import http.server
import threading
import time
from collections.abc import Callable, Iterator
from datetime import datetime

import pytest
import requests
from standardwebhooks import Webhook

from api import create_app
from localstack.stack import Stack, StackConfig
from tests.integration.helpers import submit, wait_for

pytestmark = pytest.mark.integration

SECRET = "whsec_" + base64.b64encode(b"integration secret of 32 bytes!!").decode()
PAUSE = 0.2
TIMEOUT = 1.0
# The io worker polls for new callbacks every 0.5 s; the rest is process and Redis overhead.
POLL_SLACK = 0.5 + 0.5
# A retry is polled for when it is due, not at the next regular poll.
RETRY_SLACK = 0.5
# Arrivals are timed at the receiver: a late arrival (a busy machine) shortens the next gap.
JITTER = 0.15
JOB = {"draws": ["HHHHHHHHHT"] * 10 + ["TTTTTTTTTH"] * 10, "methods": ["em"], "seed": 3}


class Receiver:
    """Answers the n-th POST to a path with ``script[path](n)``; records each one's arrival
    time, headers and body. A script returning None answers nothing until closed."""

    def __init__(self) -> None:
        self.scripts: dict[str, Callable[[int], int | None]] = {}
        self.seen: dict[str, list[tuple[float, dict[str, str], bytes]]] = {}
        self.closing = threading.Event()
        lock = threading.Lock()
        receiver = self

        class Handler(http.server.BaseHTTPRequestHandler):
            def do_POST(self):  # noqa: N802 - the http.server API
                body = self.rfile.read(int(self.headers["Content-Length"]))
                with lock:
                    seen = receiver.seen.setdefault(self.path, [])
                    seen.append((time.time(), dict(self.headers), body))
                    status = receiver.scripts[self.path](len(seen))
                if status is None:
                    receiver.closing.wait(30)
                    return
                self.send_response(status)
                self.send_header("Content-Length", "0")
                self.end_headers()

            def log_message(self, *args):
                pass

        self.server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def hook(self, path: str, script: Callable[[int], int | None]) -> str:
        """The URL of ``path``, answered by ``script``."""
        self.scripts[path] = script
        return f"http://127.0.0.1:{self.server.server_port}{path}"

    def close(self) -> None:
        self.closing.set()
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture(scope="module")
def hooked_stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stack]:
    """The stack with callbacks on: a secret, 127.0.0.1 allowed, a schedule of seconds."""
    config = StackConfig(
        api_port=0,
        drawsource_port=0,
        api_workers=1,
        cpu_concurrency=1,
        io_concurrency=4,
        start_drawsource=False,
        env={
            "EMCOINS_WEBHOOK_SECRET": SECRET,
            "EMCOINS_CALLBACK_ALLOWLIST": "http://127.0.0.1:*",
            "EMCOINS_WEBHOOK_RETRY_SECONDS": ",".join([str(PAUSE)] * 3),
            "EMCOINS_WEBHOOK_TIMEOUT": str(TIMEOUT),
            "EMCOINS_LOG_FORMAT": "text",
        },
        log_dir=tmp_path_factory.mktemp("webhook-stack-logs"),
    )
    with Stack(config) as running:
        yield running


@pytest.fixture(scope="module")
def receiver() -> Iterator[Receiver]:
    server = Receiver()
    yield server
    server.close()


def settled(api_url: str, job_id: str, *, timeout: float = 20.0) -> dict:
    """Poll the job until its callback is delivered or failed."""
    deadline = time.monotonic() + timeout
    while True:
        job = requests.get(f"{api_url}/jobs/{job_id}", timeout=5).json()
        if job["callback"]["state"] != "pending":
            return job
        assert time.monotonic() < deadline, job
        time.sleep(0.05)


def finished_epoch(job: dict) -> float:
    return datetime.fromisoformat(job["finished_at"].replace("Z", "+00:00")).timestamp()


def verified(headers: dict[str, str], body: bytes) -> dict:
    """The body, if its signature verifies with the standardwebhooks package."""
    return Webhook(SECRET).verify(body, headers)


def test_delivered_on_the_first_try(hooked_stack, receiver):
    url = receiver.hook("/ok", lambda n: 200)
    job = submit(hooked_stack.api_url, {**JOB, "callback": {"url": url}})
    done = wait_for(hooked_stack.api_url, job)
    assert done["status"] == "succeeded"
    final = settled(hooked_stack.api_url, job["id"])
    assert final["callback"] == {"url": url, "state": "delivered", "attempts": 1,
                                 "last_status": 200}
    [(arrived, headers, body)] = receiver.seen["/ok"]
    assert headers["webhook-id"] == f"msg_{job['id']}"
    assert headers["Content-Type"] == "application/json"
    sent = verified(headers, body)
    # The body is the job as GET /jobs/<id> shows it; only the callback's own state has
    # moved on since (it was sent while the attempt was in flight).
    assert sent["callback"] == {"url": url, "state": "pending", "attempts": 1,
                                "last_status": None}
    assert {**sent, "callback": None} == {**final, "callback": None}
    latency = arrived - finished_epoch(final)
    print(f"\ncallback latency, job end -> receiver: {latency * 1000:.0f} ms")
    assert 0 <= latency < POLL_SLACK + 0.5


def test_5xx_is_retried_with_the_same_webhook_id(hooked_stack, receiver):
    url = receiver.hook("/flaky", lambda n: 500 if n <= 2 else 200)
    job = submit(hooked_stack.api_url, {**JOB, "callback": {"url": url}})
    final = settled(hooked_stack.api_url, job["id"])
    assert final["callback"] == {"url": url, "state": "delivered", "attempts": 3,
                                 "last_status": 200}
    seen = receiver.seen["/flaky"]
    assert len(seen) == 3
    assert {headers["webhook-id"] for _, headers, _ in seen} == {f"msg_{job['id']}"}
    bodies = [verified(headers, body) for _, headers, body in seen]
    assert [b["callback"]["attempts"] for b in bodies] == [1, 2, 3]
    assert [b["callback"]["last_status"] for b in bodies] == [None, 500, 500]
    gaps = [later[0] - earlier[0] for earlier, later in zip(seen, seen[1:], strict=False)]
    print(f"\nretry gaps after HTTP 500 (pause {PAUSE} s): "
          + ", ".join(f"{g * 1000:.0f} ms" for g in gaps))
    assert all(PAUSE - JITTER <= gap < PAUSE + RETRY_SLACK for gap in gaps), gaps
    assert sum(gaps) >= 2 * PAUSE - JITTER


def test_a_4xx_stops_after_one_attempt(hooked_stack, receiver):
    url = receiver.hook("/gone", lambda n: 400)
    job = submit(hooked_stack.api_url, {**JOB, "callback": {"url": url}})
    final = settled(hooked_stack.api_url, job["id"])
    assert final["callback"] == {"url": url, "state": "failed", "attempts": 1,
                                 "last_status": 400}
    time.sleep(3 * PAUSE + POLL_SLACK)
    assert len(receiver.seen["/gone"]) == 1


def test_a_receiver_that_never_answers_fails_after_the_schedule(hooked_stack, receiver):
    url = receiver.hook("/silent", lambda n: None)
    job = submit(hooked_stack.api_url, {**JOB, "callback": {"url": url}})
    done = wait_for(hooked_stack.api_url, job)
    final = settled(hooked_stack.api_url, job["id"], timeout=30)
    assert final["callback"] == {"url": url, "state": "failed", "attempts": 4,
                                 "last_status": None}
    seen = receiver.seen["/silent"]
    assert len(seen) == 4
    assert {headers["webhook-id"] for _, headers, _ in seen} == {f"msg_{job['id']}"}
    gaps = [later[0] - earlier[0] for earlier, later in zip(seen, seen[1:], strict=False)]
    print(f"\nretry gaps with no answer (timeout {TIMEOUT} s, pause {PAUSE} s): "
          + ", ".join(f"{g * 1000:.0f} ms" for g in gaps)
          + f"; job end -> failed in {time.time() - finished_epoch(done):.2f} s")
    # Each attempt ends at its deadline, then the pause: never sooner, never much later.
    assert all(TIMEOUT + PAUSE - JITTER <= gap < TIMEOUT + PAUSE + RETRY_SLACK
               for gap in gaps), gaps
    assert sum(gaps) >= 3 * (TIMEOUT + PAUSE) - JITTER


def test_a_callback_off_the_allowlist_is_422_at_callback_url(hooked_stack):
    response = requests.post(
        f"{hooked_stack.api_url}/jobs",
        json={**JOB, "callback": {"url": "http://192.0.2.7:8080/hook"}},
        timeout=10,
    )
    assert response.status_code == 422, response.text
    details = response.json()["error"]["details"]
    assert "EMCOINS_CALLBACK_ALLOWLIST" in details["callback.url"], details


def test_a_callback_off_link_local_is_refused_even_with_a_wildcard(redis_client):
    client = create_app({
        "webhook_secret": SECRET, "callback_allowlist": ("http://169.254.169.254:*",),
    }).test_client()
    response = client.post(
        "/jobs", json={**JOB, "callback": {"url": "http://169.254.169.254/latest/meta-data/"}}
    )
    assert response.status_code == 422
    assert "link-local" in response.get_json()["error"]["details"]["callback.url"]


def test_a_callback_without_a_secret_is_422_at_callback(redis_client):
    client = create_app({
        "webhook_secret": "", "callback_allowlist": ("http://127.0.0.1:*",),
    }).test_client()
    response = client.post("/jobs", json={**JOB, "callback": {"url": "http://127.0.0.1:9/h"}})
    assert response.status_code == 422
    details = response.get_json()["error"]["details"]
    assert "EMCOINS_WEBHOOK_SECRET" in details["callback"], details
    assert redis_client.keys("emcoins:job:*") == []
