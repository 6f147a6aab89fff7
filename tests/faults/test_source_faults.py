"""A flaky, dead or lying draw source: jobs succeed through retries or fail clearly and quickly."""

from __future__ import annotations

import time

import pytest

from shared.config import Settings
from tests.integration.helpers import submit, wait_for
from tests.stub_http import draw, raw

pytestmark = [pytest.mark.faults, pytest.mark.integration]


def test_flaky_source_every_job_succeeds(fault_stack, drawsource):
    # 30% of answers are 503 and 5% hang past the 1 s read timeout of this stack.
    url = drawsource(error_rate=0.3, slow_rate=0.05, slow_seconds=30, seed=9)
    jobs = [submit(fault_stack.api_url, {"source": {"url": url, "draws": 30}, "seed": i})
            for i in range(6)]
    done = [wait_for(fault_stack.api_url, job, timeout=120) for job in jobs]
    assert [d["status"] for d in done] == ["succeeded"] * 6, [d["error"] for d in done]
    assert all(d["progress"]["draws_fetched"] == 30 for d in done)


def retry_bound(settings: Settings) -> float:
    """The documented worst case of one draw: every attempt times out, every backoff is full."""
    backoffs = sum(
        min(settings.fetch_backoff_max, settings.fetch_backoff * 2**attempt)
        for attempt in range(1, settings.fetch_attempts)
    )
    per_attempt = settings.fetch_connect_timeout + settings.fetch_read_timeout
    return settings.fetch_attempts * per_attempt + backoffs


def test_source_down_fails_within_the_bound(fault_stack):
    url = "http://127.0.0.1:9/draw"  # nothing listens on the discard port
    start = time.monotonic()
    job = submit(fault_stack.api_url, {"source": {"url": url, "draws": 40}})
    done = wait_for(fault_stack.api_url, job, timeout=120)
    took = time.monotonic() - start
    assert done["status"] == "failed"
    assert done["error"]["code"] == "source_unavailable" and url in done["error"]["message"]
    # A refused connection fails at once, so only the backoffs count here.
    assert took < retry_bound(Settings(fetch_connect_timeout=0, fetch_read_timeout=0)) + 5


GARBAGE = {
    "not-json": b"<html>oops</html>",
    "wrong-shape": b'{"heads": 3}',
    "letters": b'{"flips": "HTQH"}',
    "values": b'{"flips": [1, 0, 2]}',
    "empty-string": b'{"flips": ""}',
    "empty-list": b'{"flips": []}',
    "apigw-garbage": b'{"statusCode": 200, "body": "[1, 7]"}',
}


@pytest.mark.parametrize("kind", sorted(GARBAGE))
def test_garbage_fails_with_invalid_draws(stack, stub_source, kind):
    # Three good draws, then garbage: the job names the first bad draw.
    source = stub_source(lambda n, path: draw("HTTH") if n <= 3 else raw(GARBAGE[kind]))
    body = {"source": {"url": source.url(), "draws": 8}}
    done = wait_for(stack.api_url, submit(stack.api_url, body))
    assert done["status"] == "failed"
    assert done["error"]["code"] == "invalid_draws"
    assert f"draw {done['error']['details']['draw']}" in done["error"]["message"]


def test_draws_of_different_lengths_are_valid(stack, stub_source):
    source = stub_source(lambda n, path: draw("HT" * (n % 5 + 3)))
    job = submit(stack.api_url, {"source": {"url": source.url(), "draws": 20}, "methods": ["em"]})
    done = wait_for(stack.api_url, job)
    assert done["status"] == "succeeded", done
    assert len(set(source.hits)) == 1 and len(source.hits) == 20
