"""The job resource beyond submit and poll: listing, spec, draws, posteriors, cancel, delete,
Idempotency-Key, and the HTTP details clients rely on."""

from __future__ import annotations

import base64
import csv
import io
import json

import numpy as np
import pytest
import redis
from scipy.stats import binom

from shared import keys
from shared.store import JobStore
from tests.factories import plotted_result

JOB = {"counts": [[3, 10], [7, 10], [2, 10, 4]], "n_components": 2, "seed": 5}


def submit(client, body=JOB, **headers):
    response = client.post("/jobs", json=body, headers=headers)
    assert response.status_code == 202, response.get_data(as_text=True)
    return response


def test_the_202_carries_location_and_retry_after_and_the_job_its_spec(client):
    response = submit(client)
    job_id = response.get_json()["id"]
    assert response.headers["Location"] == f"/jobs/{job_id}"
    assert int(response.headers["Retry-After"]) >= 1
    job = client.get(f"/jobs/{job_id}").get_json()
    assert job["spec"] == {
        "source": None, "n_components": 2, "max_components": 4, "weights": "learn",
        "restarts": 10, "methods": ["em", "gmm"], "seed": 5, "callback": None,
        "bootstrap": None, "test_components": None,
    }
    unseeded = submit(client, {"counts": [[3, 10], [7, 10]]}).get_json()
    seed = client.get(unseeded["url"]).get_json()["spec"]["seed"]
    assert isinstance(seed, int) and 0 <= seed < 2**32


def test_draws_are_served_as_json_or_csv(client):
    job = submit(client).get_json()
    assert client.get(f"{job['url']}/draws").get_json() == {
        "counts": [[2, 10, 4], [3, 10, 1], [7, 10, 1]]
    }
    response = client.get(f"{job['url']}/draws", headers={"Accept": "text/csv"})
    assert response.mimetype == "text/csv"
    assert list(csv.reader(io.StringIO(response.get_data(as_text=True)))) == [
        ["heads", "flips", "count"], ["2", "10", "4"], ["3", "10", "1"], ["7", "10", "1"]
    ]


def test_draws_of_a_source_job_are_409_until_fetched(client):
    job = submit(client, {"source": {"url": "http://127.0.0.1:8001/draw", "draws": 5}})
    response = client.get(f"{job.get_json()['url']}/draws")
    assert response.status_code == 409
    assert response.get_json()["error"]["details"] == {"status": "queued"}


@pytest.fixture
def succeeded(client, redis_server):
    """A job the store marks succeeded with a known EM fit (thetas 0.25/0.75, w 0.4/0.6)."""
    job = submit(client).get_json()
    jobs = JobStore(redis.Redis.from_url(redis_server.url), ttl_seconds=60)
    jobs.start_fitting(job["id"], [[2, 10, 4], [3, 10, 1], [7, 10, 1]])
    assert jobs.succeed(job["id"], plotted_result())
    return job


def test_posteriors_of_every_pair_against_the_binomial_pmf(client, succeeded):
    body = client.get(f"{succeeded['url']}/posteriors").get_json()
    assert body["pairs"] == [[2, 10, 4], [3, 10, 1], [7, 10, 1]]  # most frequent first
    assert body["truncated"] is False
    for (heads, flips, _), probabilities in zip(body["pairs"], body["probabilities"],
                                                strict=True):
        joint = np.array([0.4 * binom.pmf(heads, flips, 0.25),
                          0.6 * binom.pmf(heads, flips, 0.75)])
        np.testing.assert_allclose(probabilities, joint / joint.sum(), rtol=1e-10)
    text = client.get(f"{succeeded['url']}/posteriors", headers={"Accept": "text/csv"})
    rows = list(csv.reader(io.StringIO(text.get_data(as_text=True))))
    assert rows[0] == ["heads", "flips", "count", "p_1", "p_2"] and len(rows) == 4


def test_posteriors_are_409_before_the_job_succeeded(client):
    job = submit(client).get_json()
    assert client.get(f"{job['url']}/posteriors").status_code == 409


def test_cancel_is_a_post_and_delete_removes_every_key(client, redis_client, succeeded):
    job = submit(client).get_json()
    assert client.post(f"{job['url']}/cancel").get_json()["status"] == "cancelled"
    assert client.post(f"{job['url']}/cancel").status_code == 409
    client.get(f"{succeeded['url']}/plot.svg")
    assert redis_client.keys(f"emcoins:job:{succeeded['id']}*")
    response = client.delete(succeeded["url"])
    assert response.status_code == 204 and response.get_data() == b""
    assert redis_client.keys(f"emcoins:job:{succeeded['id']}*") == []
    assert client.get(succeeded["url"]).status_code == 404
    assert client.delete(succeeded["url"]).status_code == 404
    listed = [j["id"] for j in client.get("/jobs").get_json()["jobs"]]
    assert succeeded["id"] not in listed and job["id"] in listed


def test_deleting_an_unfinished_job_cancels_it_first(client, redis_client):
    job = submit(client).get_json()
    assert client.delete(job["url"]).status_code == 204
    assert redis_client.zscore(keys.unfinished_jobs(), job["id"]) is None
    assert redis_client.keys(f"emcoins:job:{job['id']}*") == []


def test_listing_is_newest_first_paged_and_stable_while_jobs_arrive(client):
    ids = [submit(client).get_json()["id"] for _ in range(7)]
    first = client.get("/jobs?page_size=3").get_json()
    assert [j["id"] for j in first["jobs"]] == ids[::-1][:3]
    assert set(first["jobs"][0]) == {
        "id", "url", "status", "progress", "created_at", "started_at", "finished_at"
    }
    newer = submit(client).get_json()["id"]  # arrives between two pages
    second = client.get(f"/jobs?page_size=3&page_token={first['next_page_token']}").get_json()
    assert [j["id"] for j in second["jobs"]] == ids[::-1][3:6]
    third = client.get(f"/jobs?page_size=3&page_token={second['next_page_token']}").get_json()
    assert [j["id"] for j in third["jobs"]] == ids[:1] and third["next_page_token"] == ""
    assert client.get("/jobs").get_json()["jobs"][0]["id"] == newer


def test_listing_filters_by_status_and_forgets_expired_jobs(client, redis_client):
    kept, cancelled = submit(client).get_json(), submit(client).get_json()
    client.post(f"{cancelled['url']}/cancel")
    listed = client.get("/jobs?status=cancelled").get_json()["jobs"]
    assert [j["id"] for j in listed] == [cancelled["id"]]
    redis_client.delete(keys.job(kept["id"]))  # as if it expired
    assert [j["id"] for j in client.get("/jobs").get_json()["jobs"]] == [cancelled["id"]]
    assert redis_client.zscore(keys.owner_jobs(None), kept["id"]) is None


@pytest.mark.parametrize(
    ("query", "field"),
    [("page_size=0", "page_size"), ("page_size=501", "page_size"),
     ("page_size=x", "page_size"), ("status=done", "status"),
     ("page_token=garbage", "page_token"),
     ("page_token=" + base64.urlsafe_b64encode(b'{"a": 1}').decode(), "page_token")],
)
def test_bad_list_parameters_are_422_naming_them(client, query, field):
    response = client.get(f"/jobs?{query}")
    assert response.status_code == 422, response.get_data(as_text=True)
    assert field in response.get_json()["error"]["details"]


def test_an_idempotency_key_replays_the_same_job(client, redis_client):
    first = submit(client, **{"Idempotency-Key": "k-1"})
    again = submit(client, **{"Idempotency-Key": "k-1"})
    assert again.get_json() == first.get_json()
    assert again.headers["Location"] == first.headers["Location"]
    assert len(client.get("/jobs").get_json()["jobs"]) == 1
    other = client.post("/jobs", json={**JOB, "seed": 6}, headers={"Idempotency-Key": "k-1"})
    assert other.status_code == 422
    assert other.get_json()["error"]["code"] == "idempotency_key_reused"
    assert submit(client, **{"Idempotency-Key": "k-2"}).get_json()["id"] != first.get_json()["id"]
    # The key expires with its job and is removed with it.
    key = keys.idempotency(None, __import__("hashlib").sha256(b"k-1").hexdigest())
    assert redis_client.pttl(key) == pytest.approx(
        redis_client.pttl(keys.job(first.get_json()["id"])), abs=50
    )
    client.delete(first.headers["Location"])
    assert not redis_client.exists(key)


def test_a_replay_is_never_429_and_a_refused_request_reserves_nothing(redis_client):
    from api import create_app

    capped = create_app({"TESTING": True, "max_queued": 1}).test_client()
    first = submit(capped, **{"Idempotency-Key": "a"})
    assert submit(capped, **{"Idempotency-Key": "a"}).get_json() == first.get_json()
    refused = capped.post("/jobs", json=JOB, headers={"Idempotency-Key": "b"})
    assert refused.status_code == 429
    capped.post(f"{first.get_json()['url']}/cancel")
    assert capped.post("/jobs", json=JOB, headers={"Idempotency-Key": "b"}).status_code == 202


def test_a_bad_idempotency_key_is_422(client):
    response = client.post("/jobs", json=JOB, headers={"Idempotency-Key": "x" * 256})
    assert response.status_code == 422
    assert "Idempotency-Key" in response.get_json()["error"]["details"]


def test_405_names_the_allowed_methods(client):
    response = client.put("/jobs")
    assert response.status_code == 405
    assert set(response.headers["Allow"].replace(" ", "").split(",")) >= {"GET", "POST"}
    assert response.get_json()["error"]["code"] == "method_not_allowed"


def test_the_openapi_document_declares_headers_examples_and_the_package_version(client):
    import importlib.metadata

    spec = client.get("/openapi.json").get_json()
    assert spec["info"]["version"] == importlib.metadata.version("emcoins") == "0.2.0"
    post = spec["paths"]["/jobs"]["post"]
    assert {"Location", "Retry-After"} <= set(post["responses"]["202"]["headers"])
    examples = post["requestBody"]["content"]["application/json"]["examples"]
    assert set(examples) == {"source", "draws", "counts", "bootstrap", "test_components"}
    get = spec["paths"]["/jobs/{job_id}"]["get"]
    assert "Retry-After" in get["responses"]["200"]["headers"]
    assert {"get", "post"} <= set(spec["paths"]["/jobs"])
    assert "post" in spec["paths"]["/jobs/{job_id}/cancel"]
    assert "delete" in spec["paths"]["/jobs/{job_id}"]
    json.dumps(spec)
