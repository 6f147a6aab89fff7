"""Redis does not grow without bound: a cap on unfinished jobs, body size, and expiring records."""

from __future__ import annotations

import json
import time
import uuid

import pytest
import redis

from api import create_app
from shared import keys
from shared.contract import JobError
from shared.store import JobStore
from tests.factories import result

JOB = {"counts": [[3, 10], [8, 10]]}
BUNDLED = ("http://127.0.0.1:8001",)


@pytest.fixture
def capped(redis_client):
    """An API that allows three unfinished jobs."""
    return create_app({"TESTING": True, "max_queued": 3, "source_allowlist": BUNDLED}).test_client()


@pytest.fixture
def store(redis_server) -> JobStore:
    return JobStore(redis.Redis.from_url(redis_server.url), ttl_seconds=3600)


def submit(client, body=JOB):
    return client.post("/jobs", json=body)


def assert_429(response):
    assert response.status_code == 429, response.get_data(as_text=True)
    error = response.get_json()["error"]
    assert error["code"] == "too_many_jobs"
    assert "EMCOINS_MAX_QUEUED" in error["message"]
    assert error["details"] == {"max_queued": 3}
    assert int(response.headers["Retry-After"]) >= 0


def test_beyond_the_limit_jobs_are_refused_with_429_and_nothing_is_stored(capped, redis_client):
    for _ in range(3):
        assert submit(capped).status_code == 202
    queued = redis_client.llen("cpu")
    assert_429(submit(capped))
    assert_429(submit(capped, {"source": {"url": "http://127.0.0.1:8001/draw"}}))
    records = [key for key in redis_client.keys("emcoins:job:*") if key.count(":") == 2]
    assert len(records) == 3
    assert redis_client.zcard(keys.unfinished_jobs()) == 3
    assert redis_client.llen("cpu") == queued and redis_client.llen("io") == 0


def test_an_invalid_job_is_still_told_what_is_wrong_when_full(capped):
    for _ in range(3):
        submit(capped)
    assert submit(capped, {"counts": [[5, 2]]}).status_code == 422


def test_cancelling_a_job_frees_a_slot(capped):
    jobs = [submit(capped).get_json() for _ in range(3)]
    assert_429(submit(capped))
    assert capped.post(f"{jobs[0]['url']}/cancel").status_code == 202
    assert submit(capped).status_code == 202
    assert_429(submit(capped))


@pytest.mark.parametrize("outcome", ["succeed", "fail"])
def test_a_job_that_finishes_frees_a_slot(capped, store, outcome):
    jobs = [submit(capped).get_json() for _ in range(3)]
    assert_429(submit(capped))
    job_id = jobs[1]["id"]
    if outcome == "succeed":
        store.start_fitting(job_id, [[3, 10, 1], [8, 10, 1]])
        assert store.succeed(job_id, result(2))
    else:
        assert store.fail(job_id, JobError(code="fit_failed", message="boom"))
    assert submit(capped).status_code == 202
    assert_429(submit(capped))


def test_a_job_lost_past_its_ttl_does_not_hold_a_slot(capped, redis_client):
    for _ in range(3):
        submit(capped)
    # An id whose record expired without finishing (older than the TTL) no longer counts.
    oldest = redis_client.zrange(keys.unfinished_jobs(), 0, 0)[0]
    redis_client.zadd(keys.unfinished_jobs(), {oldest: time.time() - 86400 - 60})
    assert submit(capped).status_code == 202


def test_the_default_limit_is_documented_and_the_429_is_described(client):
    from shared.config import Settings

    assert Settings().max_queued == 2000
    operation = client.get("/openapi.json").get_json()["paths"]["/jobs"]["post"]
    answer = operation["responses"]["429"]
    assert answer["content"]["application/json"]["schema"] == {"$ref": "#/components/schemas/Error"}
    assert "Retry-After" in answer["headers"]


def padded(body: dict, size: int) -> bytes:
    """``body`` as JSON, padded with spaces to exactly ``size`` bytes."""
    raw = json.dumps(body).encode()
    assert len(raw) <= size
    return raw + b" " * (size - len(raw))


def test_the_body_limit_is_inclusive(redis_client):
    client = create_app({"TESTING": True, "max_body_bytes": 500}).test_client()

    def post(data: bytes):
        return client.post("/jobs", data=data, content_type="application/json")

    assert post(padded(JOB, 500)).status_code == 202
    response = post(padded(JOB, 501))
    assert response.status_code == 413
    assert "500 bytes (EMCOINS_MAX_BODY_BYTES)" in response.get_json()["error"]["message"]


def test_records_expire_after_the_ttl_and_the_draws_hash_shares_it(redis_client, redis_server):
    client = create_app(
        {"TESTING": True, "job_ttl_seconds": 120, "source_allowlist": BUNDLED}
    ).test_client()
    job = submit(client, {"source": {"url": "http://127.0.0.1:8001/draw", "draws": 4}}).get_json()
    ttl = redis_client.ttl(keys.job(job["id"]))
    assert 110 <= ttl <= 120
    store = JobStore(redis.Redis.from_url(redis_server.url), ttl_seconds=120)
    assert store.record_batch(job["id"], 0, [[1, 2], [2, 2]])
    job_ttl = redis_client.pttl(keys.job(job["id"]))
    draws_ttl = redis_client.pttl(keys.job_draws(job["id"]))
    assert 0 < draws_ttl <= job_ttl and job_ttl - draws_ttl < 1000
    # One absolute expiry for every key of the job: read at one instant, the TTLs agree.
    with redis_client.pipeline(transaction=True) as pipe:
        pipe.pttl(keys.job(job["id"]))
        pipe.pttl(keys.job_draws(job["id"]))
        job_ttl, draws_ttl = pipe.execute()
    assert job_ttl == draws_ttl


def test_job_ids_are_random_uuids(client):
    ids = [uuid.UUID(submit(client).get_json()["id"]) for _ in range(20)]
    assert all(job_id.version == 4 for job_id in ids)
    assert len(set(ids)) == len(ids)
