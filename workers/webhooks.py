"""The io workers' delivery loop of completion callbacks, and the one POST it makes.

Each io worker process runs one :class:`DeliveryLoop` thread (started by
:class:`WebhookStep`): every :data:`POLL_SECONDS` it reads the callbacks due now from
Redis (one script call, LIMIT'ed), claims each one atomically and sends it from a small
thread pool. See :mod:`shared.webhooks` for the due set, the claims and the retry rule.

Nothing a receiver does can hold an attempt past ``webhook_timeout``, or make it read
more than the status line and headers:

- The receiver's host is resolved once; if any address is link-local or a cloud
  metadata service the callback fails (never retried), and otherwise the connection
  goes to one of those same addresses, so a name cannot point elsewhere in between.
- The URL is checked against ``callback_allowlist`` again at send time.
- A timer shuts the socket when the whole exchange (connect, TLS, request, status line
  and headers) passes ``webhook_timeout``: per-read time-outs alone let a receiver
  trickling a byte a second go on for ever.
- Redirects are not followed (3xx stops the retries, like any 4xx but 408 and 429);
  the answer's body is never read.
"""

from __future__ import annotations

import http.client
import logging
import socket
import ssl
import threading
import time
from collections.abc import Callable, Mapping
from concurrent.futures import ThreadPoolExecutor
from typing import Any
from urllib.parse import urlsplit

import redis
from celery import bootsteps

from shared.allowlist import OriginError, Resolver, refused_address, source_url_error, url_origin
from shared.config import Settings, get_settings
from shared.store import JobNotFound, JobStore, connect
from shared.taskqueue import IO_QUEUE
from shared.webhooks import (
    CallbackStatus,
    Claim,
    Deliveries,
    Next,
    max_attempts,
    message_id,
    next_step,
    payload,
    signed_headers,
)

log = logging.getLogger(__name__)

# How often each io worker asks Redis for due callbacks (one ZRANGEBYSCORE ... LIMIT).
POLL_SECONDS = 0.5
# Attempts one worker process makes at once; more due callbacks wait for a free slot.
CONCURRENCY = 4
# A claim outlives its attempt by this much before another worker may take the entry
# over; only a worker that died (or a Redis write that failed) leaves one that long.
LEASE_MARGIN_SECONDS = 30.0
# Pause after a poll failed (Redis not answering), so it is not retried in a hot loop.
_BACKOFF_SECONDS = 1.0


class Unanswered(Exception):
    """No HTTP status came back in time (time-out, refused or lost connection): retried."""


class Refused(Exception):
    """The callback may not be sent at all (allow-list, address, URL): never retried."""


class _Deadline:
    """Shuts the attempt's current socket when the whole exchange's time is up."""

    def __init__(self, seconds: float):
        self.ends = time.monotonic() + seconds
        self.expired = False
        self._sock: socket.socket | None = None
        self._lock = threading.Lock()
        self._timer = threading.Timer(seconds, self._expire)
        self._timer.daemon = True
        self._timer.start()

    def left(self) -> float:
        """Seconds left; :class:`Unanswered` once none are."""
        left = self.ends - time.monotonic()
        if left <= 0:
            raise Unanswered("no answer within the deadline")
        return left

    def watch(self, sock: socket.socket) -> None:
        """Shut ``sock`` at the deadline (at once if it has passed)."""
        with self._lock:
            self._sock = sock
            expired = self.expired
        if expired:
            _shut(sock)

    def _expire(self) -> None:
        with self._lock:
            self.expired = True
            sock = self._sock
        if sock is not None:
            _shut(sock)

    def cancel(self) -> None:
        """The exchange is over."""
        self._timer.cancel()


def _shut(sock: socket.socket) -> None:
    # shutdown, not close: close from another thread does not wake a blocked recv.
    try:
        sock.shutdown(socket.SHUT_RDWR)
    except OSError:
        pass


def post(
    url: str,
    body: bytes,
    headers: Mapping[str, str],
    *,
    timeout: float,
    allowlist: tuple[str, ...],
    resolve: Resolver = socket.getaddrinfo,
) -> int:
    """POST ``body`` to ``url`` and return the HTTP status, all within ``timeout`` seconds.

    Raises :class:`Refused` when the URL may not be sent to, :class:`Unanswered` when
    no status came back in time.
    """
    refusal = source_url_error(
        url, allowlist, what="callback receiver", setting="EMCOINS_CALLBACK_ALLOWLIST"
    )
    if refusal:
        raise Refused(refusal)
    try:
        origin = url_origin(url)
    except OriginError as exc:
        raise Refused(str(exc)) from None
    resolved: list[tuple[Any, ...]] = []

    def remember(*args: Any) -> list[tuple[Any, ...]]:
        resolved[:] = resolve(*args)
        return resolved

    late = f"no answer within {timeout:g} s (EMCOINS_WEBHOOK_TIMEOUT)"
    deadline = _Deadline(timeout)
    try:
        blocked = refused_address(origin.host, origin.port, resolve=remember)
        if blocked is not None:
            raise Refused(
                f"{origin.host} resolves to {blocked}, a link-local or cloud-metadata address"
            )
        if not resolved:
            raise Unanswered(f"{origin.host} does not resolve")
        sock = _connect(resolved, deadline)
        try:
            status = _exchange(sock, url, origin.scheme, origin.host, origin.port, body,
                               headers, deadline)
        finally:
            sock.close()
    except (OSError, http.client.HTTPException) as exc:
        # Socket time-outs are set to the time left, so they too mean the deadline passed.
        if deadline.expired or isinstance(exc, TimeoutError):
            raise Unanswered(late) from None
        raise Unanswered(f"{type(exc).__name__}: {exc}") from None
    finally:
        deadline.cancel()
    if deadline.expired:
        # Shut mid-headers, an answer ends where it was cut and can parse as complete.
        raise Unanswered(late)
    return status


def _connect(resolved: list[tuple[Any, ...]], deadline: _Deadline) -> socket.socket:
    """A socket connected to the first of the checked addresses that answers."""
    error: OSError | None = None
    for family, kind, proto, _, address in resolved:
        left = deadline.left()
        sock = socket.socket(family, kind, proto)
        deadline.watch(sock)
        try:
            sock.settimeout(left)
            sock.connect(address)
            return sock
        except OSError as exc:
            sock.close()
            error = exc
    raise error or OSError("no address to connect to")


def _exchange(
    sock: socket.socket,
    url: str,
    scheme: str,
    host: str,
    port: int,
    body: bytes,
    headers: Mapping[str, str],
    deadline: _Deadline,
) -> int:
    """Send the request on ``sock`` and read the status line and headers, nothing more."""
    if scheme == "https":
        sock = ssl.create_default_context().wrap_socket(sock, server_hostname=host)
        deadline.watch(sock)
        connection: http.client.HTTPConnection = http.client.HTTPSConnection(host, port)
    else:
        connection = http.client.HTTPConnection(host, port)
    # The socket is ours, connected to an address already checked: http.client must not
    # resolve the name again.
    connection.sock = sock
    split = urlsplit(url)
    target = (split.path or "/") + (f"?{split.query}" if split.query else "")
    try:
        sock.settimeout(deadline.left())
        connection.request(
            "POST",
            target,
            body=body,
            headers={
                **headers,
                "Content-Type": "application/json",
                "User-Agent": "emcoins-webhooks",
                "Connection": "close",
            },
        )
        sock.settimeout(deadline.left())
        # The body is never read: only the status decides anything.
        return connection.getresponse().status
    finally:
        connection.close()


class DeliveryLoop:
    """Polls the due callbacks, claims them and sends them, until stopped."""

    def __init__(
        self,
        client: redis.Redis,
        settings: Settings,
        *,
        poll_seconds: float = POLL_SECONDS,
        concurrency: int = CONCURRENCY,
        send: Callable[..., int] = post,
    ):
        self.settings = settings
        self.store = JobStore(client, ttl_seconds=settings.job_ttl_seconds)
        self.deliveries = Deliveries(client)
        self.poll_seconds = poll_seconds
        self.concurrency = concurrency
        self.send = send
        self.lease_seconds = settings.webhook_timeout + LEASE_MARGIN_SECONDS
        self.max_attempts = max_attempts(settings.webhook_retry_seconds)
        self._stopping = threading.Event()
        self._wake = threading.Event()
        self._busy = 0
        self._lock = threading.Lock()
        self._pool = ThreadPoolExecutor(max_workers=concurrency, thread_name_prefix="webhook")
        self._thread: threading.Thread | None = None

    @classmethod
    def from_settings(cls, settings: Settings) -> DeliveryLoop:
        """A loop on its own Redis client."""
        return cls(connect(settings), settings)

    def start(self) -> None:
        """Run the loop in a daemon thread."""
        self._thread = threading.Thread(target=self.run, name="webhook-loop", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        """Stop polling and wait for the attempts in flight (each ends within webhook_timeout)."""
        self._stopping.set()
        self._wake.set()
        if self._thread is not None:
            self._thread.join(self.poll_seconds + self.settings.redis_timeout + 1)
        self._pool.shutdown(wait=True, cancel_futures=True)

    def run(self) -> None:
        """Poll until stopped; failures are logged and waited out, never end the loop."""
        while not self._stopping.is_set():
            # Cleared before the poll, so an attempt ending during it still wakes the wait.
            self._wake.clear()
            try:
                pause = self.poll_once()
            except redis.RedisError as exc:
                log.warning("webhooks: Redis not answering (%s)", exc)
                self._stopping.wait(_BACKOFF_SECONDS)
                continue
            except Exception:
                log.exception("webhooks: the delivery loop's poll failed")
                self._stopping.wait(_BACKOFF_SECONDS)
                continue
            if pause > 0:
                self._wake.wait(pause)

    def poll_once(self) -> float:
        """Claim and start what is due, up to the free slots; returns how long to wait
        before the next poll (0 if more may be due now)."""
        with self._lock:
            free = self.concurrency - self._busy
        if free <= 0:
            return self.poll_seconds  # a finished attempt wakes the loop
        due = self.deliveries.due(free)
        # A retry due sooner than the next poll is polled for when it is due.
        pause = self.poll_seconds
        if due.next_in_ms is not None:
            pause = min(pause, due.next_in_ms / 1000)
        for job_id in due.ids:
            claim = self.deliveries.claim(
                job_id, lease_seconds=self.lease_seconds, max_attempts=self.max_attempts
            )
            if claim is None:
                continue
            with self._lock:
                self._busy += 1
            try:
                self._pool.submit(self._run_attempt, claim)
            except RuntimeError:  # the pool shut down: the lease brings the entry back
                with self._lock:
                    self._busy -= 1
                return self.poll_seconds
        return 0.0 if len(due.ids) == free else pause

    def _run_attempt(self, claim: Claim) -> None:
        try:
            self.attempt(claim)
        except Exception:
            # The claim's lease runs out and another poll makes the attempt again.
            log.exception("webhook attempt %d went wrong", claim.attempt,
                          extra={"job_id": claim.job_id})
        finally:
            with self._lock:
                self._busy -= 1
            self._wake.set()

    def attempt(self, claim: Claim) -> Next | None:
        """Make one claimed attempt and record what came of it; None if the job is gone."""
        try:
            record = self.store.get(claim.job_id)
        except JobNotFound:
            return None
        body = payload(record)
        msg_id = message_id(claim.job_id)
        headers = signed_headers(
            self.settings.webhook_secret, msg_id=msg_id, timestamp=int(time.time()), body=body
        )
        status: int | None = None
        started = time.monotonic()
        try:
            status = self.send(
                claim.url,
                body,
                headers,
                timeout=self.settings.webhook_timeout,
                allowlist=self.settings.callback_allowlist,
            )
            step = next_step(status, attempt=claim.attempt,
                             schedule=self.settings.webhook_retry_seconds)
            why = f"HTTP {status}"
        except Unanswered as exc:
            step = next_step(None, attempt=claim.attempt,
                             schedule=self.settings.webhook_retry_seconds)
            why = str(exc)
        except Refused as exc:
            step = Next(CallbackStatus.FAILED)
            why = f"refused: {exc}"
        extra = {"job_id": claim.job_id}
        if not self.deliveries.finish(claim, step, last_status=status):
            log.warning("webhook attempt %d outlived its claim; its outcome (%s) is dropped",
                        claim.attempt, why, extra=extra)
            return None
        log.info(
            "webhook attempt %d (%s) -> %s in %.3f s: %s%s",
            claim.attempt, msg_id, step.state.value, time.monotonic() - started, why,
            "" if step.delay is None else f"; next in {step.delay:g} s",
            extra=extra,
        )
        return step


class WebhookStep(bootsteps.StartStopStep):
    """Runs a :class:`DeliveryLoop` in each worker that consumes the io queue, when the
    service has a webhook secret to sign with."""

    requires = ("celery.worker.components:Pool",)

    def include_if(self, worker: Any) -> bool:
        queues = worker.app.amqp.queues.consume_from or {}
        return IO_QUEUE in queues and bool(get_settings().webhook_secret)

    def create(self, worker: Any) -> DeliveryLoop:
        return DeliveryLoop.from_settings(get_settings())
