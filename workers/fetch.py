"""Fetching draws over HTTP, one GET per draw, each retried on its own, each bounded.

A source that cannot be reached after the retries raises :class:`SourceUnavailable`;
one that answers garbage raises :class:`shared.errors.InvalidDrawError`.

Nothing a source does can hold the fetcher longer or make it hold more than these bounds
(all from :class:`shared.config.Settings`):

- One attempt (connect, headers and body together) ends within ``fetch_deadline``. A
  per-read time-out alone does not do it: a source sending a byte a second beats every
  read. The thread that called :meth:`DrawFetcher.fetch` watches the attempts in flight
  and shuts the socket of any past its deadline; a timed-out attempt is retried.
- A batch ends within ``fetch_batch_deadline`` plus about a tenth of a second, inside the
  broker's visibility timeout, so it is never redelivered while it still runs.
- The ``cancelled`` callback is asked every :data:`POLL_SECONDS` while the batch runs; when
  it says yes, every request in flight is shut at once, not only the ones not started.
- An answer is read as a stream and refused (``InvalidDrawError``) once it holds more than
  :func:`shared.draws.max_answer_bytes` of ``max_flips`` bytes, counted after
  decompression. gzip and deflate are inflated in steps never larger than what is left
  under that cap; other content codings are refused.
- At most ``fetch_large_answers`` draws of the process read past their first chunk at
  once; the others wait for one of them to end, within their own deadlines. A process
  reads at most that many answers of the cap at once, plus a chunk or two per waiting
  draw, however many batches of large or hostile answers it runs; a refused answer is
  let go at once.
"""

from __future__ import annotations

import http.client
import random
import socket
import threading
import time
import zlib
from collections.abc import Callable, Iterable, Sequence
from concurrent.futures import FIRST_EXCEPTION, Future, ThreadPoolExecutor, wait
from typing import Any

import requests
import urllib3
from requests.adapters import HTTPAdapter
from urllib3.connection import HTTPConnection, HTTPSConnection
from urllib3.connectionpool import HTTPConnectionPool, HTTPSConnectionPool

from shared.allowlist import OriginError, Resolver, refused_address, url_origin
from shared.config import Settings
from shared.draws import max_answer_bytes, parse_draw_answer
from shared.errors import EMCoinsError, InvalidDrawError

# Statuses worth asking again: the source or a proxy in front of it is overloaded or restarting.
_RETRYABLE_STATUS = frozenset({429, 500, 502, 503, 504})
# How often the calling thread looks at cancellation and deadlines while a batch runs.
POLL_SECONDS = 0.05
# How long a stopped batch waits for its aborted requests to give their threads back.
_GRACE_SECONDS = 0.5
_CHUNK = 64 * 1024
# Content codings inflated here (zlib's wbits: 32 + 15 reads a gzip or a zlib header).
_INFLATED = {"gzip": 47, "x-gzip": 47, "deflate": 47}
_TRANSPORT_ERRORS = (
    requests.RequestException,
    urllib3.exceptions.HTTPError,
    http.client.HTTPException,
    OSError,
)


class SourceUnavailable(EMCoinsError):
    """The draw source did not give a draw after every retry."""

    def __init__(self, message: str, *, url: str, index: int):
        super().__init__(message)
        self.url = url
        self.index = index


class SourceRefused(SourceUnavailable):
    """The source's host resolves to an address never fetched (link-local, cloud metadata)."""


class Cancelled(EMCoinsError):
    """The job was cancelled while its draws were being fetched."""


class _Retry(Exception):
    """One attempt failed in a way that another attempt may not."""


# The attempt the current thread is making, so its connections can hand it their sockets.
_current = threading.local()


class _Exchange:
    """One attempt: its deadline, the sockets it uses, and a way to cut it short."""

    def __init__(self, deadline: float):
        self.deadline = deadline
        self.reason: str | None = None
        self._sockets: list[socket.socket] = []
        self._done = False
        self._lock = threading.Lock()

    def attach(self, sock: socket.socket) -> None:
        """Watch ``sock``; shut it at once if the attempt was already aborted."""
        with self._lock:
            if self._done:
                return
            self._sockets.append(sock)
            aborted = self.reason is not None
        if aborted:
            _shut(sock)

    def abort(self, reason: str) -> None:
        """Shut every socket of the attempt: a read blocked on it returns at once."""
        with self._lock:
            if self._done or self.reason is not None:
                return
            self.reason = reason
            sockets = list(self._sockets)
        for sock in sockets:
            _shut(sock)

    def finish(self) -> None:
        """The attempt is over: its connection may go back to the pool untouched."""
        with self._lock:
            self._done = True
            self._sockets.clear()


def _shut(sock: socket.socket) -> None:
    # shutdown, not close: close from another thread does not wake a blocked recv.
    try:
        sock.shutdown(socket.SHUT_RDWR)
    except OSError:
        pass  # already closed, or (TLS) detached into its wrapper, which is watched too


def _watch(sock: socket.socket | None) -> None:
    exchange = getattr(_current, "exchange", None)
    if sock is not None and exchange is not None:
        exchange.attach(sock)


class _Watched:
    """Mixed into urllib3's connections: each hands its socket to the attempt using it,
    new or reused (the TLS one hands over its wrapped socket)."""

    def _new_conn(self) -> socket.socket:
        sock = super()._new_conn()  # type: ignore[misc]
        _watch(sock)
        return sock

    def request(self, *args: Any, **kwargs: Any) -> None:
        _watch(self.sock)  # type: ignore[attr-defined]
        super().request(*args, **kwargs)  # type: ignore[misc]


class _WatchedHTTPConnection(_Watched, HTTPConnection):
    """A plain connection whose socket the attempt can shut."""


class _WatchedHTTPSConnection(_Watched, HTTPSConnection):
    """A TLS connection whose socket the attempt can shut."""


class _WatchedHTTPPool(HTTPConnectionPool):
    ConnectionCls = _WatchedHTTPConnection


class _WatchedHTTPSPool(HTTPSConnectionPool):
    ConnectionCls = _WatchedHTTPSConnection


class _WatchedAdapter(HTTPAdapter):
    """requests' adapter with connections that a fetcher can shut from another thread."""

    def init_poolmanager(self, *args: Any, **kwargs: Any) -> None:
        super().init_poolmanager(*args, **kwargs)
        self.poolmanager.pool_classes_by_scheme = {
            "http": _WatchedHTTPPool,
            "https": _WatchedHTTPSPool,
        }


def make_session(pool_size: int) -> requests.Session:
    """A session whose connection pool fits one batch and whose requests can be cut short.

    :class:`DrawFetcher` enforces its deadlines and cancellation through this session's
    connections; with another session only the per-read time-outs would hold.
    """
    session = requests.Session()
    adapter = _WatchedAdapter(pool_connections=4, pool_maxsize=pool_size, max_retries=0)
    session.mount("http://", adapter)
    session.mount("https://", adapter)
    return session


class _Batch:
    """The attempts in flight for one :meth:`DrawFetcher.fetch`, and its stop signal."""

    def __init__(self) -> None:
        self.stopped = threading.Event()
        self.reason = ""
        self._live: set[_Exchange] = set()
        self._lock = threading.Lock()

    def open(self, deadline: float) -> _Exchange:
        """A new attempt, aborted at once if the batch has stopped."""
        exchange = _Exchange(deadline)
        with self._lock:
            self._live.add(exchange)
            stopped = self.stopped.is_set()
        if stopped:
            exchange.abort(self.reason)
        return exchange

    def close(self, exchange: _Exchange) -> None:
        """The attempt is over, whichever way."""
        exchange.finish()
        with self._lock:
            self._live.discard(exchange)

    def stop(self, reason: str) -> None:
        """Stop the batch: no new attempt starts, and every one in flight is shut."""
        with self._lock:
            if self.stopped.is_set():
                return
            self.reason = reason
            self.stopped.set()
            live = list(self._live)
        for exchange in live:
            exchange.abort(reason)

    def expire(self, now: float) -> None:
        """Shut every attempt in flight whose deadline has passed."""
        with self._lock:
            late = [exchange for exchange in self._live if exchange.deadline <= now]
        for exchange in late:
            exchange.abort("deadline")


class DrawFetcher:
    """Fetches draws from one URL with a shared session and per-request retries."""

    def __init__(
        self,
        session: requests.Session,
        settings: Settings,
        *,
        sleep: Callable[[float], None] | None = None,
        resolve: Resolver = socket.getaddrinfo,
        batches: int = 1,
    ):
        self.session = session
        self.settings = settings
        # None: back off on the batch's stop signal, so a cancel ends a backoff at once.
        self.sleep = sleep
        self.resolve = resolve
        self._rng = random.Random()
        self._lock = threading.Lock()
        # Kept for the process's life: starting dozens of threads per batch costs
        # milliseconds on the hot path of every job. Room for every batch the worker runs
        # at once (``batches``, its concurrency), each with its full share of threads: a
        # source that holds its threads until the batch deadline cannot starve the other
        # jobs' batches. Idle threads are reused, so normal load starts no more of them.
        self._pool = ThreadPoolExecutor(
            max_workers=batches * settings.fetch_concurrency, thread_name_prefix="draw"
        )
        self._large = threading.BoundedSemaphore(settings.fetch_large_answers)

    @property
    def max_answer_bytes(self) -> int:
        """The most bytes (after decompression) read from the source for one draw."""
        return max_answer_bytes(self.settings.max_flips)

    def fetch(
        self,
        url: str,
        indices: Iterable[int],
        *,
        cancelled: Callable[[], bool] = lambda: False,
    ) -> list[tuple[int, int]]:
        """``(heads, trials)`` for each draw index, fetched concurrently, in index order.

        Returns or raises within ``fetch_batch_deadline`` (plus :data:`POLL_SECONDS` and a
        short grace for aborted requests); ``cancelled`` is asked from this thread every
        :data:`POLL_SECONDS`, and raises :class:`Cancelled` within that once it says yes.
        """
        indices = list(indices)
        if not indices:
            return []
        deadline = time.monotonic() + self.settings.fetch_batch_deadline
        if cancelled():
            raise Cancelled(f"draws {indices[0]}.. not fetched: the job was cancelled")
        # Once per batch: the name may point elsewhere than when the job was accepted.
        self.check_address(url, indices[0])
        batch = _Batch()
        futures = [self._pool.submit(self._draw, url, index, batch) for index in indices]
        try:
            self._watch_batch(url, indices, futures, batch, deadline, cancelled)
        finally:
            _halt(batch, futures, "the batch ended", grace=0)
        return [future.result() for future in futures]

    def _watch_batch(
        self,
        url: str,
        indices: Sequence[int],
        futures: list[Future],
        batch: _Batch,
        deadline: float,
        cancelled: Callable[[], bool],
    ) -> None:
        """Wait for the draws, enforcing the deadlines and cancellation, until all are in."""
        pending = set(futures)
        while pending:
            _, pending = wait(pending, timeout=POLL_SECONDS, return_when=FIRST_EXCEPTION)
            failed = [i for i, f in enumerate(futures) if f.done() and f.exception() is not None]
            # One failed draw fails the batch, and the job names its first bad draw: once
            # every draw before the lowest failed one is in, stop the rest (do not keep them
            # retrying) and report it. Waiting for those earlier draws is bounded by the
            # deadlines below, and makes the reported draw the same whatever the timing.
            if failed and all(f.done() for f in futures[: min(failed)]):
                _halt(batch, futures, "another draw of the batch failed")
                raise _first_error(futures)
            if cancelled():
                _halt(batch, futures, "the job was cancelled")
                raise Cancelled(f"draws of {url} abandoned: the job was cancelled")
            now = time.monotonic()
            if now >= deadline:
                missing = min(i for i, f in zip(indices, futures, strict=True) if f in pending)
                _halt(batch, futures, "the batch deadline passed")
                raise SourceUnavailable(
                    f"draw source {url} gave no draw {missing} within the batch deadline of "
                    f"{self.settings.fetch_batch_deadline:g} s (EMCOINS_FETCH_BATCH_DEADLINE)",
                    url=url,
                    index=missing,
                )
            batch.expire(now)

    def check_address(self, url: str, index: int) -> None:
        """Refuse a source whose host resolves to a link-local or cloud-metadata address."""
        try:
            origin = url_origin(url)
        except OriginError as exc:
            raise SourceRefused(f"draw source refused: {exc}", url=url, index=index) from None
        address = refused_address(origin.host, origin.port, resolve=self.resolve)
        if address is not None:
            raise SourceRefused(
                f"draw source {url} refused: {origin.host} resolves to {address}, "
                "a link-local or cloud-metadata address, which is never fetched",
                url=url,
                index=index,
            )

    def fetch_one(self, url: str, index: int) -> tuple[int, int]:
        """One draw, after checking where the source's host points, with the same bounds."""
        return self.fetch(url, [index])[0]

    def _draw(self, url: str, index: int, batch: _Batch) -> tuple[int, int]:
        """One draw, retried with exponential backoff and jitter on transient failures."""
        settings = self.settings
        last = "no attempt made"
        for attempt in range(settings.fetch_attempts):
            if attempt:
                self._pause(self._backoff(attempt), batch)
            if batch.stopped.is_set():
                raise Cancelled(f"draw {index} abandoned: {batch.reason}")
            exchange = batch.open(time.monotonic() + settings.fetch_deadline)
            _current.exchange = exchange
            try:
                answer = self._attempt(url, index, exchange)
            except _Retry as exc:
                last = str(exc)
                continue
            finally:
                _current.exchange = None
                batch.close(exchange)
            return parse_draw_answer(
                answer,
                index=index,
                max_flips=settings.max_flips,
                max_depth=settings.max_json_depth,
            )
        raise SourceUnavailable(
            f"draw source {url} gave no draw {index} after "
            f"{settings.fetch_attempts} attempts (last: {last})",
            url=url,
            index=index,
        )

    def _attempt(self, url: str, index: int, exchange: _Exchange) -> bytes:
        """The body of one GET, or :class:`_Retry`; raises for answers a retry won't change."""
        settings = self.settings
        response = None
        try:
            try:
                response = self.session.get(
                    url,
                    timeout=(
                        min(settings.fetch_connect_timeout, settings.fetch_deadline),
                        min(settings.fetch_read_timeout, settings.fetch_deadline),
                    ),
                    allow_redirects=False,
                    stream=True,
                    headers={"Accept": "application/json", "Accept-Encoding": "gzip, deflate"},
                )
                if response.status_code in _RETRYABLE_STATUS:
                    raise _Retry(f"HTTP {response.status_code}")
                if response.status_code != 200:
                    # Redirects and client errors will not change on a retry.
                    raise SourceUnavailable(
                        f"draw source {url} answered HTTP {response.status_code} for draw {index}",
                        url=url,
                        index=index,
                    )
                body = self._read_answer(response, url, index, exchange)
            except _TRANSPORT_ERRORS as exc:
                self._raise_if_aborted(exchange, index)
                raise _Retry(f"{type(exc).__name__}: {exc}") from None
            except InvalidDrawError:
                # Cut short mid-body, an answer looks truncated: that is not the source's fault.
                self._raise_if_aborted(exchange, index)
                raise
            if not _framed(response):
                # Shut mid-body, an answer that ends with its connection looks complete.
                self._raise_if_aborted(exchange, index)
            return body
        finally:
            if response is not None:
                # Closes the connection unless the body was read to its end.
                response.close()

    def _raise_if_aborted(self, exchange: _Exchange, index: int) -> None:
        if exchange.reason == "deadline":
            raise _Retry(
                f"no whole answer within {self.settings.fetch_deadline:g} s "
                "(EMCOINS_FETCH_DEADLINE)"
            )
        if exchange.reason is not None:
            raise Cancelled(f"draw {index} abandoned: {exchange.reason}")

    def _read_answer(
        self, response: requests.Response, url: str, index: int, exchange: _Exchange
    ) -> bytes:
        """The body, read in chunks and inflated in bounded steps, refused past the cap;
        past its first chunk, only while this draw holds one of the large answers' turns."""
        cap = self.max_answer_bytes
        coding = response.headers.get("Content-Encoding", "identity").strip().lower()
        if coding not in ("", "identity", *_INFLATED):
            raise InvalidDrawError(
                f"draw {index} from {url} has Content-Encoding {coding!r}; only gzip and "
                "deflate are read",
                index=index,
            )
        inflater = zlib.decompressobj(_INFLATED[coding]) if coding in _INFLATED else None
        declared = response.headers.get("Content-Length", "")
        if inflater is None and declared.isdigit() and int(declared) > cap:
            raise self._too_long(url, index, f"its Content-Length is {int(declared)}")
        pieces: list[bytes] = []
        size = 0
        large = False
        try:
            for chunk in response.raw.stream(_CHUNK, decode_content=False):
                while chunk:
                    if inflater is None:
                        piece, chunk = chunk, b""
                    else:
                        try:
                            # At most _CHUNK out per step, whatever the ratio: a draw holds
                            # what it read so far plus one step, never a burst of the cap.
                            piece = inflater.decompress(chunk, min(_CHUNK, cap + 1 - size))
                        except zlib.error:
                            raise InvalidDrawError(
                                f"draw {index} from {url} is not valid {coding} data",
                                index=index,
                            ) from None
                        chunk = inflater.unconsumed_tail
                    pieces.append(piece)
                    size += len(piece)
                    if size > cap:
                        why = (
                            "it goes on past that" if inflater is None
                            else f"{coding} inflates past that"
                        )
                        raise self._too_long(url, index, why)
                    if not large and size > _CHUNK:
                        self._wait_for_turn(exchange, index)
                        large = True
            if inflater is not None and not inflater.eof:
                raise InvalidDrawError(
                    f"draw {index} from {url} ends in the middle of its {coding} data",
                    index=index,
                )
            # Joined once the answer is accepted: one copy, not a growing buffer's slack.
            return b"".join(pieces)
        finally:
            # An error's traceback keeps this frame, and the batch keeps the error until it
            # ends: without this, a refused answer would stay in memory, turn given back.
            pieces.clear()
            if large:
                self._large.release()

    def _wait_for_turn(self, exchange: _Exchange, index: int) -> None:
        """Until this draw may hold a large answer (see the module), or its attempt is
        stopped: at its deadline (a retry), or with its batch."""
        while not self._large.acquire(timeout=POLL_SECONDS):
            self._raise_if_aborted(exchange, index)

    def _too_long(self, url: str, index: int, why: str) -> InvalidDrawError:
        return InvalidDrawError(
            f"draw {index} from {url} is longer than {self.max_answer_bytes} bytes, the most "
            f"a draw of {self.settings.max_flips} flips (EMCOINS_MAX_FLIPS) takes: {why}",
            index=index,
        )

    def _pause(self, seconds: float, batch: _Batch) -> None:
        if self.sleep is None:
            batch.stopped.wait(seconds)
        else:
            self.sleep(seconds)

    def _backoff(self, attempt: int) -> float:
        """Full-jitter exponential backoff: uniform in [0, base * 2**attempt], capped."""
        ceiling = min(self.settings.fetch_backoff_max, self.settings.fetch_backoff * 2**attempt)
        with self._lock:
            return self._rng.uniform(ceiling / 2, ceiling)


def _framed(response: requests.Response) -> bool:
    """Whether the body's end is marked, so a body cut short raises instead of ending."""
    headers = response.headers
    return "Content-Length" in headers or "chunked" in headers.get("Transfer-Encoding", "")


def _halt(batch: _Batch, futures: Sequence[Future], reason: str, grace: float = _GRACE_SECONDS):
    """Stop the batch, drop its draws not started, and give the others ``grace`` to end."""
    batch.stop(reason)
    for future in futures:
        future.cancel()  # only those not started yet
    if grace:
        wait(futures, timeout=grace)


def _first_error(futures: Sequence[Future]) -> BaseException:
    """The error the job reports: the first bad draw, and a real failure over a cancel."""
    errors = [
        future.exception()
        for future in futures
        if future.done() and not future.cancelled() and future.exception() is not None
    ]
    return min(errors, key=_rank)


def _rank(exc: BaseException) -> tuple[int, int]:
    """Order errors so the job reports the first bad draw, and a real failure over a cancel."""
    index = getattr(exc, "index", None)
    if isinstance(exc, Cancelled):
        return (2, 0)
    return (0 if index is not None else 1, index or 0)
