"""Redis stopped, restarted or frozen: accepted jobs finish, and the API says 503 quickly."""

from __future__ import annotations

import signal
import time

import pytest
import requests

from localstack.processes import wait_http
from tests.integration.helpers import submit, wait_for

pytestmark = [pytest.mark.faults, pytest.mark.integration]


def assert_quick_503(url: str, method: str = "GET", **kwargs) -> dict:
    """The API answers 503 with a JSON error and Retry-After within 3 s."""
    start = time.monotonic()
    response = requests.request(method, url, timeout=10, **kwargs)
    took = time.monotonic() - start
    assert response.status_code == 503, response.text
    assert took < 3, f"took {took:.1f} s"
    assert response.headers["Retry-After"]
    return response.json()["error"]


def test_jobs_survive_a_redis_restart(fault_stack, drawsource):
    # As in compose (restart: unless-stopped): kombu can take a worker down when Redis
    # goes away under it, and the supervisor brings it back.
    fault_stack.supervise()
    url = drawsource(latency_ms=100, seed=2)
    api = fault_stack.api_url
    jobs = [submit(api, {"source": {"url": url, "draws": 40}, "seed": i}) for i in range(8)]
    jobs += [submit(api, {"counts": [[1, 10], [9, 10]] * 10, "seed": i}) for i in range(4)]
    time.sleep(0.3)  # some fetching, some still queued

    fault_stack.redis.stop()  # SIGTERM: the append-only file is flushed
    error = assert_quick_503(f"{api}{jobs[0]['url']}")
    assert error["details"]["dependency"] == "redis"
    assert_quick_503(f"{api}/jobs", "POST", json={"counts": [[1, 3], [2, 3]]})
    ready = assert_quick_503(f"{api}/readyz")
    assert "not answering" in ready["details"]["redis"]
    time.sleep(2)

    fault_stack.redis.start()  # same port, same data folder
    done = [wait_for(api, job, timeout=120) for job in jobs]
    assert [d["status"] for d in done] == ["succeeded"] * len(jobs), [d["error"] for d in done]
    wait_http(f"{api}/readyz", timeout=30)  # ready again once a worker answers its ping


def test_frozen_redis_gives_503_not_a_hang(fault_stack):
    api = fault_stack.api_url
    job = submit(api, {"counts": [[1, 10], [9, 10]] * 10})
    wait_for(api, job)
    fault_stack.redis.process.send_signal(signal.SIGSTOP)
    try:
        assert_quick_503(f"{api}{job['url']}")
        ready = assert_quick_503(f"{api}/readyz")
        assert ready["details"]["redis"].startswith("not answering")
    finally:
        fault_stack.redis.process.send_signal(signal.SIGCONT)
    later = submit(api, {"counts": [[1, 10], [9, 10]] * 10})
    assert wait_for(api, later, timeout=60)["status"] == "succeeded"
