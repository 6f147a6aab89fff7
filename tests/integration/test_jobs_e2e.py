"""The whole path over HTTP: real Redis, real Celery workers on both queues, real draw source."""

from __future__ import annotations

import json
import time
import uuid

import pytest
import requests

from tests.integration.helpers import submit, wait_for
from tests.stub_http import draw

pytestmark = pytest.mark.integration


def test_readyz_sees_redis_and_workers(stack):
    response = requests.get(f"{stack.api_url}/readyz", timeout=10)
    assert response.status_code == 200
    assert response.json()["checks"] == {"redis": "ok", "workers": "ok"}


def test_source_job_estimates_the_configured_coins(stack):
    truth = requests.get(f"{stack.drawsource_url}/config", timeout=5).json()
    job = submit(
        stack.api_url,
        {"source": {"url": f"{stack.drawsource_url}/draw", "draws": 400}, "seed": 1},
    )
    seen: list[dict] = []
    done = wait_for(stack.api_url, job, seen=seen)
    assert done["status"] == "succeeded", done
    em = done["result"]["em"]
    assert done["result"]["n_components"] == 2 and done["result"]["bic"] is None
    for estimate, se, coin in zip(em["thetas"], em["standard_errors"], truth["coins"],
                                  strict=True):
        # 4 standard errors: a correct fit fails this about once in 16,000 runs.
        assert abs(estimate - coin) < 4 * se, (estimate, se, coin)
    assert em["converged"] and em["averaged"]["restarts"] == 10
    assert len(done["result"]["gmm"]["means"]) == 2
    fetched = [body["progress"]["draws_fetched"] for body in seen]
    assert fetched == sorted(fetched), "progress never goes back"
    assert fetched[-1] == 400 and all(b["progress"]["draws_total"] == 400 for b in seen)
    assert done["created_at"] <= done["started_at"] <= done["finished_at"]


def test_progress_rises_through_batches(stack, drawsource):
    url = drawsource(latency_ms=30, seed=3)
    job = submit(stack.api_url, {"source": {"url": url, "draws": 120}, "methods": ["em"]})
    seen: list[dict] = []
    done = wait_for(stack.api_url, job, seen=seen)
    assert done["status"] == "succeeded"
    fetched = {body["progress"]["draws_fetched"] for body in seen}
    # Batches of 10 draws land one by one: the poll sees values strictly between 0 and 120.
    assert any(0 < value < 120 for value in fetched), fetched
    assert all(value % 10 == 0 for value in fetched)
    assert "gmm" not in done["result"]


def test_inline_job_with_auto_components(stack):
    draws = ["HHHHHHHHHT"] * 20 + ["TTTTTTTTTH"] * 20 + ["HHHHHTTTTT"] * 20
    job = submit(stack.api_url, {"draws": draws, "n_components": "auto", "max_components": 3,
                                 "seed": 4})
    done = wait_for(stack.api_url, job)
    assert done["status"] == "succeeded", done
    result = done["result"]
    assert set(result["bic"]) == {"1", "2", "3"}
    assert result["n_components"] == int(min(result["bic"], key=result["bic"].get))
    assert done["progress"] == {"draws_fetched": 60, "draws_total": 60}


def test_api_gateway_format_is_read(stack, drawsource):
    url = drawsource(format="apigw", coins="0.1,0.9", seed=5)
    job = submit(stack.api_url, {"source": {"url": url, "draws": 60}, "methods": ["em"]})
    done = wait_for(stack.api_url, job)
    assert done["status"] == "succeeded", done
    low, high = done["result"]["em"]["thetas"]
    assert low < 0.3 and high > 0.7


def test_source_down_fails_with_its_code(stack):
    url = "http://127.0.0.1:9/draw"  # the discard port: nothing listens
    job = submit(stack.api_url, {"source": {"url": url, "draws": 5}})
    done = wait_for(stack.api_url, job, timeout=30)
    assert done["status"] == "failed"
    assert done["result"] is None
    assert done["error"]["code"] == "source_unavailable"
    assert url in done["error"]["message"]


def test_source_answering_5xx_fails_after_retries(stack, drawsource):
    url = drawsource(error_rate=1.0)
    done = wait_for(stack.api_url, submit(stack.api_url, {"source": {"url": url, "draws": 3}}))
    assert done["error"]["code"] == "source_unavailable"
    assert "HTTP 503" in done["error"]["message"]


def test_garbage_draws_fail_the_job_naming_the_draw(stack, stub_source):
    source = stub_source(lambda n, path: draw("HTXH"))
    done = wait_for(stack.api_url, submit(stack.api_url, {"source": {"url": source.url(),
                                                                   "draws": 4}}))
    assert done["status"] == "failed"
    assert done["error"]["code"] == "invalid_draws"
    assert "'X' at position 2" in done["error"]["message"]
    assert done["error"]["details"]["draw"] == 0


def test_cancel_is_final(stack, drawsource):
    url = drawsource(latency_ms=200)
    job = submit(stack.api_url, {"source": {"url": url, "draws": 200}})
    response = requests.post(f"{stack.api_url}{job['url']}/cancel", timeout=10)
    assert response.status_code == 202
    assert response.json()["status"] == "cancelled"
    # Whatever the workers were doing, the job stays cancelled and never gets a result.
    time.sleep(1.5)
    body = requests.get(f"{stack.api_url}{job['url']}", timeout=10).json()
    assert body["status"] == "cancelled" and body["result"] is None
    assert body["progress"]["draws_fetched"] < 200
    assert requests.post(f"{stack.api_url}{job['url']}/cancel", timeout=10).status_code == 409


def test_unknown_job_is_404(stack):
    response = requests.get(f"{stack.api_url}/jobs/{uuid.uuid4()}", timeout=10)
    assert response.status_code == 404
    assert response.json()["error"]["code"] == "not_found"


def test_bad_request_over_http(stack):
    response = requests.post(
        f"{stack.api_url}/jobs", data=json.dumps({"counts": [[5, 2]]}),
        headers={"Content-Type": "application/json"}, timeout=10,
    )
    assert response.status_code == 422
    assert "counts.0" in response.json()["error"]["details"]
