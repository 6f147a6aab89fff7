"""At fetch time: no link-local or metadata address is ever requested, and no redirect followed."""

from __future__ import annotations

import json
import os
import socket
import uuid
from collections.abc import Callable

import pytest
import redis

from shared.config import Settings
from shared.store import JobStore
from tests.factories import spec
from tests.stub_http import raw
from workers.fetch import DrawFetcher, SourceRefused, SourceUnavailable, make_session


class NoNetwork:
    """A session that fails the test if the fetcher tries to send anything."""

    def __init__(self):
        self.calls: list[str] = []

    def get(self, url, **kwargs):
        self.calls.append(url)
        raise AssertionError(f"the fetcher requested {url}")


def resolving_to(*addresses: str, calls: list | None = None):
    """A getaddrinfo stand-in answering ``addresses`` for every name."""

    def resolve(host, port, family=0, type=0):
        if calls is not None:
            calls.append((host, port))
        return [(socket.AF_INET, socket.SOCK_STREAM, 6, "", (a, port)) for a in addresses]

    return resolve


def fetcher(session=None, **kwargs) -> DrawFetcher:
    settings = Settings(fetch_attempts=3, fetch_backoff=0.0)
    return DrawFetcher(session or make_session(4), settings, sleep=lambda s: None, **kwargs)


def test_an_allowed_name_resolving_to_metadata_is_refused_before_any_request():
    session = NoNetwork()
    draws = fetcher(session, resolve=resolving_to("169.254.169.254"))
    with pytest.raises(SourceRefused) as info:
        draws.fetch_one("http://drawsource:8001/draw", 3)
    message = str(info.value)
    assert "drawsource resolves to 169.254.169.254" in message and "link-local" in message
    assert info.value.url == "http://drawsource:8001/draw" and info.value.index == 3
    assert session.calls == []
    # The task fails the job as it does any source error: the job records this message.
    assert isinstance(info.value, SourceUnavailable)


def test_a_batch_checks_once_and_requests_nothing_when_refused():
    session, calls = NoNetwork(), []
    draws = fetcher(session, resolve=resolving_to("10.0.0.8", "fe80::1", calls=calls))
    with pytest.raises(SourceRefused, match="fe80::1"):
        draws.fetch("http://drawsource:8001/draw", range(30))
    assert calls == [("drawsource", 8001)]
    assert session.calls == []


def test_a_literal_metadata_origin_on_the_allowlist_is_still_refused_at_fetch_time():
    # Even an operator allow-listing it (by mistake) does not make the fetcher ask it.
    settings = Settings(source_allowlist=("http://169.254.169.254",), fetch_attempts=3)
    session = NoNetwork()
    draws = DrawFetcher(session, settings, sleep=lambda s: None)  # the real resolver
    with pytest.raises(SourceRefused, match="169.254.169.254 resolves to 169.254.169.254"):
        draws.fetch("http://169.254.169.254/latest/meta-data/", range(5))
    with pytest.raises(SourceRefused):
        draws.fetch_one("http://[::ffff:169.254.169.254]:80/", 0)
    assert session.calls == []


@pytest.fixture
def servers(stub_source) -> Callable:
    """Start a source giving one answer to every GET; returns its URL and its hits."""

    def start(status, body=b"", headers=None):
        server = stub_source(lambda n, path: raw(body, status, headers))
        return server.url(), server.hits

    return start


@pytest.mark.parametrize("status", [301, 302, 303, 307, 308])
def test_redirects_are_not_followed(servers, status):
    # The redirect target would answer a valid draw: following it would succeed.
    target, target_hits = servers(200, json.dumps({"flips": "HT"}).encode())
    source, source_hits = servers(status, headers={"Location": target})
    with pytest.raises(SourceUnavailable, match=f"HTTP {status}"):
        fetcher().fetch_one(source, 0)
    assert source_hits == ["/draw"]
    assert target_hits == []


def test_an_ordinary_address_is_fetched(servers):
    url, hits = servers(200, json.dumps({"flips": "HHT"}).encode())
    calls: list = []
    draws = fetcher(resolve=resolving_to("127.0.0.1", calls=calls))
    assert draws.fetch(url, range(4)) == [(2, 3)] * 4
    assert len(hits) == 4 and len(calls) == 1


def test_the_fetch_task_fails_the_job_with_the_refusal(redis_server, redis_client, monkeypatch):
    from workers import tasks

    jobs = JobStore(redis.Redis.from_url(redis_server.url), ttl_seconds=60)
    refusing = fetcher(NoNetwork(), resolve=resolving_to("169.254.169.254"))
    monkeypatch.setattr(
        tasks, "_per_process", {"pid": os.getpid(), "store": jobs, "fetcher": refusing}
    )
    job_id = str(uuid.uuid4())
    url = "http://drawsource:8001/draw"
    jobs.create(job_id, spec=spec(source=(url, 3)), draws_total=3)
    tasks.fetch_batch.run(job_id, url, 0, 0, 3)
    record = jobs.get(job_id)
    assert record.status.value == "failed"
    assert record.error.code == "source_unavailable"
    assert "resolves to 169.254.169.254" in record.error.message
    assert record.error.details == {"url": url, "draw": 0}
    assert jobs.batches(job_id) == {}

