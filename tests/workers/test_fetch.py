"""Fetching draws over real HTTP: retries per request, errors that name the draw and the URL."""

from __future__ import annotations

import gzip
import json
from collections.abc import Callable

import pytest

from shared.config import Settings
from shared.errors import InvalidDrawError
from tests.hostile_source import HostileSource
from tests.stub_http import draw
from tests.stub_http import scripted as script
from workers.fetch import Cancelled, DrawFetcher, SourceUnavailable, make_session


@pytest.fixture
def scripted(stub_source) -> Callable[..., str]:
    """Start a source answering from a script; ``scripted.hits()`` lists what it was asked."""
    servers = []

    def start(*answers) -> str:
        servers.append(stub_source(script(*answers)))
        return servers[-1].url()

    start.hits = lambda: servers[-1].hits  # type: ignore[attr-defined]
    return start


def ok(flips) -> tuple[int, bytes, dict]:
    return draw(flips)


def fetcher(**overrides) -> tuple[DrawFetcher, list[float]]:
    settings = Settings(**{"fetch_attempts": 4, "fetch_read_timeout": 2.0, **overrides})
    sleeps: list[float] = []
    return DrawFetcher(make_session(4), settings, sleep=sleeps.append), sleeps


def test_fetches_in_index_order(scripted):
    url = scripted(ok("HHT"))
    draws, _ = fetcher()
    assert draws.fetch(url, range(5)) == [(2, 3)] * 5


def test_transient_errors_are_retried_per_request(scripted):
    url = scripted((503, b"busy", {}), (500, b"oops", {}), ok([1, 0, 1, 1]))
    draws, sleeps = fetcher()
    assert draws.fetch_one(url, 0) == (3, 4)
    assert len(scripted.hits()) == 3
    # Backoff grows: each wait lies in [base * 2**k / 2, base * 2**k].
    base = Settings().fetch_backoff
    assert len(sleeps) == 2
    for attempt, slept in enumerate(sleeps, start=1):
        assert base * 2**attempt / 2 <= slept <= base * 2**attempt


def test_gives_up_after_the_attempts_naming_url_and_draw(scripted):
    url = scripted((503, b"busy", {}))
    draws, sleeps = fetcher(fetch_attempts=3)
    with pytest.raises(SourceUnavailable) as info:
        draws.fetch_one(url, 7)
    assert url in str(info.value) and "draw 7" in str(info.value) and "HTTP 503" in str(info.value)
    assert len(scripted.hits()) == 3 and len(sleeps) == 2


def test_client_errors_and_redirects_are_not_retried(scripted):
    url = scripted((302, b"", {"Location": "http://169.254.169.254/"}))
    draws, _ = fetcher()
    with pytest.raises(SourceUnavailable, match="HTTP 302"):
        draws.fetch_one(url, 0)
    assert len(scripted.hits()) == 1


def test_refused_connection_is_source_unavailable():
    draws, sleeps = fetcher(fetch_attempts=2)
    with pytest.raises(SourceUnavailable, match="ConnectionError"):
        draws.fetch_one("http://127.0.0.1:9/draw", 0)
    assert len(sleeps) == 1


def test_garbage_is_invalid_and_names_the_first_bad_draw(scripted):
    url = scripted(ok("HT"), ok("HT"), (200, b"not json", {}), ok("HX"))
    draws, _ = fetcher(fetch_concurrency=1, fetch_batch_size=1)
    with pytest.raises(InvalidDrawError) as info:
        draws.fetch(url, range(4))
    assert info.value.index == 2 and "not JSON" in str(info.value)


def test_cancellation_stops_the_batch(scripted):
    url = scripted(ok("HT"))
    draws, _ = fetcher()
    with pytest.raises(Cancelled):
        draws.fetch(url, range(10), cancelled=lambda: True)
    assert scripted.hits() == []


def test_a_draw_of_exactly_max_flips_is_accepted(scripted):
    url = scripted(ok("HT" * 500))
    draws, _ = fetcher(max_flips=1000)
    assert draws.fetch(url, range(3)) == [(500, 1000)] * 3


def test_connections_are_kept_alive_between_draws():
    # Reading the body in a stream must still give the connection back to the pool.
    with HostileSource("normal", flips="HHT") as source:
        draws, _ = fetcher(fetch_concurrency=1, fetch_batch_size=1)
        for index in range(10):
            assert draws.fetch_one(source.url, index) == (2, 3)
        assert source.requests == 10 and source.connections == 1


def test_a_gzip_answer_is_inflated(scripted):
    body = gzip.compress(json.dumps({"flips": [1, 0, 1, 1]}).encode())
    url = scripted((200, body, {"Content-Encoding": "gzip"}))
    draws, _ = fetcher()
    assert draws.fetch(url, range(2)) == [(3, 4)] * 2


@pytest.mark.parametrize("coding", ["br", "compress", "gzip, gzip"])
def test_other_content_codings_are_refused(scripted, coding):
    url = scripted((200, b"\x00" * 16, {"Content-Encoding": coding}))
    draws, _ = fetcher()
    with pytest.raises(InvalidDrawError, match="Content-Encoding"):
        draws.fetch_one(url, 3)
    assert len(scripted.hits()) == 1  # not retried: the source would answer the same
