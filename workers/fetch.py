"""Fetching draws over HTTP, one GET per draw, each retried on its own.

A source that cannot be reached after the retries raises :class:`SourceUnavailable`;
one that answers garbage raises :class:`shared.errors.InvalidDrawError`.
"""

from __future__ import annotations

import random
import socket
import threading
import time
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor

import requests
from requests.adapters import HTTPAdapter

from shared.allowlist import OriginError, Resolver, refused_address, url_origin
from shared.config import Settings
from shared.draws import parse_draw_payload
from shared.errors import EMCoinsError, InvalidDrawError

# Statuses worth asking again: the source or a proxy in front of it is overloaded or restarting.
_RETRYABLE_STATUS = frozenset({429, 500, 502, 503, 504})


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


def make_session(pool_size: int) -> requests.Session:
    """A session whose connection pool fits the concurrency of one batch."""
    session = requests.Session()
    adapter = HTTPAdapter(pool_connections=4, pool_maxsize=pool_size, max_retries=0)
    session.mount("http://", adapter)
    session.mount("https://", adapter)
    return session


class DrawFetcher:
    """Fetches draws from one URL with a shared session and per-request retries."""

    def __init__(
        self,
        session: requests.Session,
        settings: Settings,
        *,
        sleep: Callable[[float], None] = time.sleep,
        resolve: Resolver = socket.getaddrinfo,
    ):
        self.session = session
        self.settings = settings
        self.sleep = sleep
        self.resolve = resolve
        self._rng = random.Random()
        self._lock = threading.Lock()
        # Kept for the process's life: starting dozens of threads per batch costs
        # milliseconds on the hot path of every job.
        self._pool = ThreadPoolExecutor(
            max_workers=settings.fetch_concurrency, thread_name_prefix="draw"
        )

    def fetch(
        self,
        url: str,
        indices: Sequence[int],
        *,
        cancelled: Callable[[], bool] = lambda: False,
    ) -> list[tuple[int, int]]:
        """``(heads, trials)`` for each draw index, fetched concurrently, in index order."""
        stop = threading.Event()

        def one(index: int) -> tuple[int, int]:
            if stop.is_set() or cancelled():
                stop.set()
                raise Cancelled(f"draw {index} not fetched: the job was cancelled")
            try:
                return self._fetch_one(url, index)
            except BaseException:
                # One failed draw fails the batch: do not keep the others retrying.
                stop.set()
                raise

        if len(indices):
            # Once per batch: the name may point elsewhere than when the job was accepted.
            self.check_address(url, indices[0])
        futures = [self._pool.submit(one, i) for i in indices]
        results: list[tuple[int, int]] = []
        first_error: BaseException | None = None
        for future in futures:
            try:
                results.append(future.result())
            except BaseException as exc:  # noqa: BLE001 - re-raised below, in index order
                if first_error is None or _rank(exc) < _rank(first_error):
                    first_error = exc
        if first_error is not None:
            raise first_error
        return results

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
        """One draw, after checking where the source's host points."""
        self.check_address(url, index)
        return self._fetch_one(url, index)

    def _fetch_one(self, url: str, index: int) -> tuple[int, int]:
        """One draw, retried with exponential backoff and jitter on transient failures."""
        settings = self.settings
        last = "no attempt made"
        for attempt in range(settings.fetch_attempts):
            if attempt:
                self.sleep(self._backoff(attempt))
            try:
                response = self.session.get(
                    url,
                    timeout=(settings.fetch_connect_timeout, settings.fetch_read_timeout),
                    allow_redirects=False,
                    headers={"Accept": "application/json"},
                )
            except requests.RequestException as exc:
                last = f"{type(exc).__name__}: {exc}"
                continue
            if response.status_code in _RETRYABLE_STATUS:
                last = f"HTTP {response.status_code}"
                continue
            if response.status_code != 200:
                # Redirects and client errors will not change on a retry.
                raise SourceUnavailable(
                    f"draw source {url} answered HTTP {response.status_code} for draw {index}",
                    url=url,
                    index=index,
                )
            try:
                payload = response.json()
            except ValueError:
                raise InvalidDrawError(
                    f"draw {index} from {url} is not JSON", index=index
                ) from None
            return parse_draw_payload(payload, index=index)
        raise SourceUnavailable(
            f"draw source {url} gave no draw {index} after "
            f"{settings.fetch_attempts} attempts (last: {last})",
            url=url,
            index=index,
        )

    def _backoff(self, attempt: int) -> float:
        """Full-jitter exponential backoff: uniform in [0, base * 2**attempt], capped."""
        ceiling = min(self.settings.fetch_backoff_max, self.settings.fetch_backoff * 2**attempt)
        with self._lock:
            return self._rng.uniform(ceiling / 2, ceiling)


def _rank(exc: BaseException) -> tuple[int, int]:
    """Order errors so the job reports the first bad draw, and a real failure over a cancel."""
    index = getattr(exc, "index", None)
    if isinstance(exc, Cancelled):
        return (2, 0)
    return (0 if index is not None else 1, index or 0)
