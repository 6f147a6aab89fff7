"""The HTTP client of the jobs API, used by the CLI, the local stack's demo and the tests.

Every failure becomes one :class:`ClientError`. :meth:`Client.follow` reads a job's
Server-Sent Events (``GET /jobs/<id>/events``) from the events service.
"""

from __future__ import annotations

import json
import re
import time
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import requests

from shared.status import FINAL_STATUSES

DEFAULT_URL = "http://127.0.0.1:8000"
# The local stack's event streams: followed when the API is the local stack's default one.
DEFAULT_EVENTS_URL = "http://127.0.0.1:8002"
# Seconds without a byte after which a stream counts as dropped: the server sends a
# keep-alive every 15 s of quiet, so this is two of them missed, and a margin.
STREAM_READ_TIMEOUT = 40.0
# The largest event taken from a stream (``done`` carries the whole job).
MAX_EVENT_BYTES = 16 * 1024 * 1024
# Reconnections in a row that bring no event before following gives up.
MAX_RECONNECTS = 5
# The statuses a job ends in, as the API's own enum defines them.
FINAL = frozenset(status.value for status in FINAL_STATUSES)


class ClientError(Exception):
    """Something the user should read as one line: an API error or an unreachable API."""


class EventsUnavailable(ClientError):
    """No event stream could be opened at the events URL; polling still works."""


@dataclass(frozen=True)
class StreamEvent:
    """One Server-Sent Event: its name, its data (decoded JSON) and its id, if it has one."""

    name: str
    data: Any
    id: str | None = None


_LINE_END = re.compile(rb"\r\n|\n|\r")


class EventStreamParser:
    """Turns ``text/event-stream`` bytes into :class:`StreamEvent` (the WHATWG HTML
    standard's event stream format, with JSON data)."""

    def __init__(self, *, max_bytes: int = MAX_EVENT_BYTES):
        self.max_bytes = max_bytes
        self.retry_ms: int | None = None
        self._pending = b""
        self._name = ""
        self._data: list[str] = []
        self._size = 0
        self._id: str | None = None

    def feed(self, chunk: bytes) -> list[StreamEvent]:
        """The events that ``chunk`` completes."""
        pending = self._pending + chunk
        # A CR at the very end may be the first half of a CRLF: keep it for the next chunk.
        cut = len(pending) - 1 if pending.endswith(b"\r") else len(pending)
        lines = _LINE_END.split(pending[:cut])
        # What follows the last line end is not a line yet.
        self._pending = lines.pop() + pending[cut:]
        if len(self._pending) + self._size > self.max_bytes:
            raise ClientError(f"an event of the stream is larger than {self.max_bytes} bytes")
        events = []
        for raw in lines:
            event = self._line(raw.decode("utf-8", errors="replace"))
            if event is not None:
                events.append(event)
        return events

    def _line(self, line: str) -> StreamEvent | None:
        if not line:
            return self._dispatch()
        if line.startswith(":"):
            return None  # a comment: the keep-alive
        name, _, value = line.partition(":")
        value = value[1:] if value.startswith(" ") else value
        if name == "data":
            self._data.append(value)
            self._size += len(value) + 1
            if self._size > self.max_bytes:
                raise ClientError(
                    f"an event of the stream is larger than {self.max_bytes} bytes"
                )
        elif name == "event":
            self._name = value
        elif name == "id" and "\0" not in value:
            self._id = value
        elif name == "retry" and value.isdigit():
            self.retry_ms = int(value)
        return None

    def _dispatch(self) -> StreamEvent | None:
        name, data, event_id = self._name or "message", self._data, self._id
        self._name, self._data, self._size, self._id = "", [], 0, None
        if not data:
            return None
        try:
            decoded = json.loads("\n".join(data))
        except ValueError:
            raise ClientError(f"the event stream sent a {name} event that is not JSON") from None
        return StreamEvent(name, decoded, event_id)


def _api_message(response: requests.Response) -> str:
    try:
        error = response.json()["error"]
    except (ValueError, KeyError, TypeError):
        text = response.text.strip().splitlines()
        return f"HTTP {response.status_code} {response.reason}: {text[0] if text else ''}".rstrip()
    details = error.get("details") or {}
    extra = "; ".join(f"{key}: {value}" for key, value in details.items())
    message = f"{error.get('message', '')} ({extra})" if extra else error.get("message", "")
    return f"{message} [HTTP {response.status_code} {error.get('code', '')}]"


class Client:
    """Talks to one API base URL, with a bearer token when one is given."""

    def __init__(self, base_url: str = DEFAULT_URL, *, token: str | None = None,
                 timeout: float = 30.0, events_url: str | None = None):
        self.base_url = base_url.rstrip("/")
        # Without one given: the local stack's events for its API, else the API's own
        # origin (a proxy in front of both routes the streams to the events service).
        if not events_url:
            events_url = DEFAULT_EVENTS_URL if self.base_url == DEFAULT_URL else self.base_url
        self.events_url = events_url.rstrip("/")
        self.session = requests.Session()
        self.session.headers["Accept"] = "application/json"
        if token:
            self.session.headers["Authorization"] = f"Bearer {token}"
        self.timeout = timeout

    def request(self, method: str, path: str, **kwargs: Any) -> requests.Response:
        """Send a request; raise :class:`ClientError` unless the answer is 2xx."""
        url = f"{self.base_url}{path}"
        try:
            response = self.session.request(method, url, timeout=self.timeout, **kwargs)
        except requests.ConnectionError:
            raise ClientError(
                f"cannot connect to the API at {self.base_url} (is it running? "
                "set EMCOINS_API_URL or --api-url)"
            ) from None
        except requests.Timeout:
            raise ClientError(f"the API at {self.base_url} did not answer in time") from None
        except requests.RequestException as exc:
            raise ClientError(f"request to {url} failed: {exc}") from None
        if not response.ok:
            raise ClientError(_api_message(response))
        return response

    def submit(self, body: dict[str, Any]) -> dict[str, Any]:
        """POST /jobs; returns ``{id, status, url}``."""
        return self.request("POST", "/jobs", json=body).json()

    def job(self, job_id: str) -> dict[str, Any]:
        """GET /jobs/<id>."""
        return self.request("GET", f"/jobs/{job_id}").json()

    def wait(
        self, job_id: str, *, timeout: float = 60.0, interval: float = 0.1, seen: list | None = None
    ) -> dict[str, Any]:
        """Poll a job until it is final and return it; ``seen`` collects every poll's body."""
        deadline = time.monotonic() + timeout
        while True:
            job = self.job(job_id)
            if seen is not None:
                seen.append(job)
            if job["status"] in FINAL:
                return job
            if time.monotonic() > deadline:
                raise ClientError(f"job {job_id} did not finish in {timeout:g} s")
            time.sleep(interval)

    def follow(self, job_id: str, *, timeout: float = 600.0,
               last_event_id: str | None = None) -> Iterator[StreamEvent]:
        """The job's events as they happen (``status``, ``progress``), ending after ``done``,
        whose data is the whole job; all within ``timeout`` seconds.

        A dropped connection is opened again with ``Last-Event-ID``, so no event is lost
        or repeated. :class:`EventsUnavailable` if the first connection fails or finds no
        stream (no events service at :attr:`events_url`); :class:`ClientError` if the job
        is gone, on the deadline, or after :data:`MAX_RECONNECTS` failed reconnections.
        """
        deadline = time.monotonic() + timeout
        url = f"{self.events_url}/jobs/{job_id}/events"
        last_id, connected, failures, delay = last_event_id, False, 0, 1.0
        while True:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise ClientError(f"job {job_id} did not finish in {timeout:g} s")
            headers = {"Accept": "text/event-stream"}
            if last_id:
                headers["Last-Event-ID"] = last_id
            problem = ""
            try:
                response = self.session.get(
                    url, headers=headers, stream=True,
                    timeout=(min(5.0, remaining), min(STREAM_READ_TIMEOUT, remaining)),
                )
            except requests.RequestException as exc:
                if not connected:
                    raise EventsUnavailable(
                        f"no event stream at {self.events_url} ({type(exc).__name__})"
                    ) from None
                problem = type(exc).__name__
            else:
                with response:
                    streaming = response.ok and response.headers.get(
                        "Content-Type", ""
                    ).startswith("text/event-stream")
                    if not connected and not streaming and response.status_code in (
                        200, 404, 405, 501
                    ):
                        raise EventsUnavailable(
                            f"no event stream at {self.events_url} "
                            f"(HTTP {response.status_code})"
                        )
                    if response.status_code == 404:
                        raise ClientError(f"job {job_id} no longer exists (deleted or expired)")
                    if not streaming:
                        raise ClientError(_api_message(response))
                    connected = True
                    parser = EventStreamParser()
                    try:
                        for chunk in response.iter_content(chunk_size=None):
                            for event in parser.feed(chunk):
                                failures = 0
                                last_id = event.id or last_id
                                yield event
                                if event.name == "done":
                                    return
                            if time.monotonic() > deadline:
                                raise ClientError(
                                    f"job {job_id} did not finish in {timeout:g} s"
                                )
                        problem = "the stream ended before done"
                    except requests.RequestException as exc:
                        problem = type(exc).__name__
                    if parser.retry_ms is not None:
                        delay = parser.retry_ms / 1000
            failures += 1
            if failures > MAX_RECONNECTS:
                raise ClientError(f"the event stream of job {job_id} keeps failing: {problem}")
            time.sleep(max(0.0, min(delay, deadline - time.monotonic())))

    def cancel(self, job_id: str) -> dict[str, Any]:
        """POST /jobs/<id>/cancel."""
        return self.request("POST", f"/jobs/{job_id}/cancel").json()

    def delete(self, job_id: str) -> None:
        """DELETE /jobs/<id>: the job and everything kept for it."""
        self.request("DELETE", f"/jobs/{job_id}")

    def jobs(self, *, status: str | None = None, page_size: int = 50,
             page_token: str = "") -> dict[str, Any]:
        """GET /jobs: one page of the caller's jobs, newest first."""
        params: dict[str, Any] = {"page_size": page_size}
        if status:
            params["status"] = status
        if page_token:
            params["page_token"] = page_token
        return self.request("GET", "/jobs", params=params).json()

    def plot(self, job_id: str, fmt: str) -> bytes:
        """GET /jobs/<id>/plot.<fmt>."""
        return self.request("GET", f"/jobs/{job_id}/plot.{fmt}").content
