"""The jobs API against a real Redis, with no workers: what is accepted, refused and stored."""

from __future__ import annotations

import json
import uuid

import pytest

from shared import keys


def post(client, body, **kwargs):
    return client.post("/jobs", json=body, **kwargs)


def assert_error(response, status, code):
    assert response.status_code == status, response.get_data(as_text=True)
    assert response.is_json
    error = response.get_json()["error"]
    assert error["code"] == code
    assert error["message"]
    assert isinstance(error["details"], dict)
    return error


def test_submit_inline_counts_is_accepted_and_queued(client, redis_client):
    response = post(client, {"counts": [[3, 10], [8, 10], [3, 10]], "seed": 5})
    assert response.status_code == 202
    body = response.get_json()
    uuid.UUID(body["id"])
    assert body["status"] == "queued"
    assert body["url"] == f"/jobs/{body['id']}"
    assert response.headers["Location"] == body["url"]

    record = redis_client.hgetall(keys.job(body["id"]))
    assert record["status"] == "queued"
    assert json.loads(record["counts"]) == [[3, 10, 2], [8, 10, 1]]
    assert json.loads(record["spec"])["seed"] == 5
    # The canvas went to the broker: the fits wait in the cpu queue.
    assert redis_client.llen("cpu") >= 1


def test_poll_shows_progress_and_retry_after(client):
    job = post(client, {"draws": ["HHTT", "hthh", "TTTT"]}).get_json()
    response = client.get(job["url"])
    assert response.status_code == 200
    body = response.get_json()
    assert body["status"] == "queued"
    assert body["progress"] == {"draws_fetched": 3, "draws_total": 3}
    assert body["result"] is None and body["error"] is None
    assert body["created_at"].endswith("Z") and body["started_at"] is None
    assert int(response.headers["Retry-After"]) >= 1


def test_source_job_starts_with_no_draws_fetched(client):
    job = post(client, {"source": {"url": "http://127.0.0.1:9/draw"}}).get_json()
    body = client.get(job["url"]).get_json()
    assert body["progress"] == {"draws_fetched": 0, "draws_total": 30}


def test_every_job_gets_a_seed(client, redis_client):
    job = post(client, {"counts": [[1, 3], [2, 3]]}).get_json()
    spec = json.loads(redis_client.hget(keys.job(job["id"]), "spec"))
    assert isinstance(spec["seed"], int)
    assert spec["methods"] == ["em", "gmm"] and spec["restarts"] == 10


def test_unknown_job_is_404(client):
    assert_error(client.get(f"/jobs/{uuid.uuid4()}"), 404, "not_found")
    assert_error(client.get("/jobs/a:b"), 404, "not_found")


def test_cancel_then_conflict(client):
    job = post(client, {"counts": [[1, 3], [2, 3]]}).get_json()
    response = client.post(f"{job['url']}/cancel")
    assert response.status_code == 202
    assert response.get_json()["status"] == "cancelled"
    assert "Retry-After" not in client.get(job["url"]).headers
    error = assert_error(client.post(f"{job['url']}/cancel"), 409, "conflict")
    assert error["details"] == {"status": "cancelled"}
    assert_error(client.post(f"/jobs/{uuid.uuid4()}/cancel"), 404, "not_found")


@pytest.mark.parametrize(
    ("body", "path", "fragment"),
    [
        ({}, "_request", "exactly one of source, draws or counts"),
        ({"draws": ["HT"], "counts": [[1, 2]]}, "_request", "Got draws, counts"),
        ({"counts": [[1, 2], [3, 2]]}, "counts.1", "cannot exceed flips"),
        ({"counts": [[1, 2], [1, "x"]]}, "counts.1.1", "Not a valid integer"),
        ({"counts": [[1, 2], [-1, 2]]}, "counts.1", "must not be negative"),
        ({"counts": [[0, 0]]}, "counts.0", "flips must be at least 1"),
        ({"counts": [[1.5, 2]]}, "counts.0.0", "Not a valid integer"),
        ({"draws": ["HT", "HXT"]}, "draws.1", "'X' at position 1"),
        ({"draws": []}, "draws", "Shorter than minimum"),
        ({"source": {"url": "ftp://x/draw"}}, "source.url", "Not a valid URL"),
        ({"source": {"url": "http://x/draw", "draws": 0}}, "source.draws", "greater than"),
        ({"counts": [[1, 2]], "n_components": 0}, "n_components", "at least 1"),
        ({"counts": [[1, 2]], "n_components": "two"}, "n_components", '"auto"'),
        ({"counts": [[1, 2]], "weights": "heavy"}, "weights", "Must be one of"),
        ({"counts": [[1, 2]], "methods": ["em", "em"]}, "methods", "once"),
        ({"counts": [[1, 2]], "methods": ["svm"]}, "methods.0", "Must be one of"),
        ({"counts": [[1, 2]], "restarts": 0}, "restarts", "greater than"),
        ({"counts": [[1, 2]], "seed": -1}, "seed", "greater than"),
        ({"counts": [[1, 2]], "colour": "red"}, "colour", "Unknown field"),
        ({"counts": [[1, 3], [2, 4]], "n_components": 3}, "n_components", "Teicher"),
        ({"counts": [[1, 2]], "restarts": 101}, "restarts", "EMCOINS_MAX_RESTARTS"),
        ({"counts": [[1, 2]], "n_components": 11}, "n_components", "EMCOINS_MAX_COMPONENTS"),
    ],
)
def test_invalid_fields_are_422_by_path(client, redis_client, body, path, fragment):
    error = assert_error(post(client, body), 422, "invalid_fields")
    assert path in error["details"], error["details"]
    assert fragment in error["details"][path]
    assert redis_client.keys("emcoins:*") == []


def test_limits_come_from_settings(redis_client):
    from api import create_app

    client = create_app({"max_draws": 2, "max_source_draws": 5, "max_flips": 4}).test_client()
    error = assert_error(post(client, {"draws": ["H", "T", "H"]}), 422, "invalid_fields")
    assert "EMCOINS_MAX_DRAWS" in error["details"]["draws"]
    error = assert_error(post(client, {"source": {"url": "http://a/", "draws": 6}}), 422,
                         "invalid_fields")
    assert "EMCOINS_MAX_SOURCE_DRAWS" in error["details"]["source.draws"]
    error = assert_error(post(client, {"counts": [[1, 5]]}), 422, "invalid_fields")
    assert "EMCOINS_MAX_FLIPS" in error["details"]["counts.0.1"]
    rows = create_app({"max_rows": 2}).test_client()
    error = assert_error(post(rows, {"counts": [[1, 3]] * 3}), 422, "invalid_fields")
    assert error["details"] == {"counts": "At most 2 rows per job (EMCOINS_MAX_ROWS)."}


def test_malformed_json_is_400(client):
    response = client.post("/jobs", data="{not json", content_type="application/json")
    assert_error(response, 400, "bad_request")


def test_not_json_is_415(client):
    response = client.post("/jobs", data="counts=1", content_type="text/plain")
    assert_error(response, 415, "unsupported_media_type")


def test_too_large_is_413(redis_client):
    from api import create_app

    client = create_app({"max_body_bytes": 1000}).test_client()
    body = {"draws": ["HT" * 50] * 20}
    error = assert_error(post(client, body), 413, "body_too_large")
    assert "1000 bytes" in error["message"]


def test_wrong_method_and_path_are_json(client):
    assert_error(client.put("/jobs"), 405, "method_not_allowed")
    assert_error(client.get("/nowhere"), 404, "not_found")


def test_openapi_describes_the_jobs_api(client):
    spec = client.get("/openapi.json").get_json()
    assert spec["openapi"].startswith("3.")
    post_op = spec["paths"]["/jobs"]["post"]
    assert {"202", "400", "413", "415", "422", "503"} <= set(post_op["responses"])
    get_op = spec["paths"]["/jobs/{job_id}"]["get"]
    assert {"200", "404"} <= set(get_op["responses"])
    assert "JobRequest" in spec["components"]["schemas"]


def test_retry_after_grows_with_the_backlog(client, redis_client):
    job = post(client, {"counts": [[1, 3], [2, 3]]}).get_json()
    assert client.get(job["url"]).headers["Retry-After"] == "1"
    # 1,000 more unfinished jobs: one second per 200, so 5 s (1,001 jobs round up to 6).
    redis_client.zadd(keys.unfinished_jobs(), {f"other-{i}": 0 for i in range(1000)})
    assert client.get(job["url"]).headers["Retry-After"] == "6"
    redis_client.zadd(keys.unfinished_jobs(), {f"more-{i}": 0 for i in range(5000)})
    assert client.get(job["url"]).headers["Retry-After"] == "10"  # EMCOINS_RETRY_AFTER_MAX


def test_fewer_distinct_pairs_than_coins_is_refused_at_n_components(client, redis_client):
    error = assert_error(post(client, {"counts": [[5, 10]], "n_components": 2}), 422,
                         "invalid_fields")
    assert error["details"] == {
        "n_components": "n_components=2 needs at least 2 distinct (heads, flips) pairs; "
        "the data has 1."
    }
    # Multiplicities do not make a pair distinct; "auto" chooses among what can be fitted.
    body = {"counts": [[5, 10, 40], [5, 10, 2]], "n_components": 2}
    assert "n_components" in assert_error(post(client, body), 422, "invalid_fields")["details"]
    assert post(client, {"counts": [[5, 10]], "n_components": "auto"}).status_code == 202
    assert redis_client.keys("emcoins:job:*") != []


def test_counts_rows_may_carry_a_multiplicity(client, redis_client):
    response = post(client, {"counts": [[3, 12, 5], [9, 12, 2], [3, 12]]})
    assert response.status_code == 202
    job = client.get(response.get_json()["url"]).get_json()
    assert job["progress"] == {"draws_fetched": 8, "draws_total": 8}
    error = assert_error(post(client, {"counts": [[3, 12, 0]]}), 422, "invalid_fields")
    assert error["details"] == {"counts.0.2": "count must be at least 1, got 0."}
