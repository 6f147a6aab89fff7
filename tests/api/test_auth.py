"""Optional bearer tokens: 401 without one, public paths stay open, jobs belong to their token."""

from __future__ import annotations

import hashlib
import uuid

import pytest

from api import create_app
from shared import keys
from shared.config import Settings
from shared.errors import ConfigError
from shared.status import JobStatus
from shared.store import JobStore

ALICE = "alice-7f3c1e2b9a6d4f08b5e1"
BOB = "bob-0c9d8e7f6a5b4c3d2e1f"
CAROL = "carol-1a2b3c4d5e6f7a8b9c0d"
JOB = {"counts": [[3, 10], [8, 10]], "seed": 1}


def bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


@pytest.fixture
def secured(redis_client):
    """An API that accepts Alice's and Bob's tokens."""
    return create_app({"TESTING": True, "api_tokens": (ALICE, BOB)}).test_client()


def assert_401(response, *, invalid: bool):
    assert response.status_code == 401, response.get_data(as_text=True)
    assert response.is_json
    error = response.get_json()["error"]
    assert error["code"] == "unauthorized" and "Bearer" in error["message"]
    challenge = response.headers["WWW-Authenticate"]
    assert challenge.startswith("Bearer")
    assert ('error="invalid_token"' in challenge) is invalid


def create(client, token: str) -> dict:
    response = client.post("/jobs", json=JOB, headers=bearer(token))
    assert response.status_code == 202, response.get_json()
    return response.get_json()


def test_without_tokens_configured_nothing_is_asked(client, redis_client):
    job = client.post("/jobs", json=JOB).get_json()
    assert client.get(job["url"]).status_code == 200
    assert "owner" not in redis_client.hgetall(keys.job(job["id"]))


@pytest.mark.parametrize(
    ("method", "path"),
    [
        ("post", "/jobs"),
        ("get", "/jobs/00000000-0000-4000-8000-000000000000"),
        ("delete", "/jobs/00000000-0000-4000-8000-000000000000"),
        ("get", "/jobs/00000000-0000-4000-8000-000000000000/plot.png"),
        ("get", "/jobs/00000000-0000-4000-8000-000000000000/plot.svg"),
        ("get", "/nowhere"),
    ],
)
def test_protected_paths_need_a_token(secured, redis_client, method, path):
    kwargs = {"json": JOB} if method == "post" else {}
    assert_401(getattr(secured, method)(path, **kwargs), invalid=False)
    assert_401(getattr(secured, method)(path, headers=bearer(CAROL), **kwargs), invalid=True)
    assert redis_client.keys("emcoins:job:*") == []


@pytest.mark.parametrize(
    "header",
    [
        f"Basic {ALICE}",
        f"Token {ALICE}",
        ALICE,
        "Bearer",
        "Bearer ",
        f"Bearer {ALICE}x",
        f"Bearer {ALICE[:-1]}",
        f"Bearer {ALICE.upper()}",
    ],
)
def test_only_the_exact_token_as_a_bearer_is_accepted(secured, header):
    response = secured.post("/jobs", json=JOB, headers={"Authorization": header})
    assert response.status_code == 401


def test_the_scheme_name_is_case_insensitive(secured):
    response = secured.post("/jobs", json=JOB, headers={"Authorization": f"bearer {ALICE}"})
    assert response.status_code == 202


@pytest.mark.parametrize(
    "path",
    [
        "/healthz",
        "/",
        "/docs",
        "/docs/assets/swagger-ui.css",
        "/openapi.json",
        "/metrics",
        "/static/app.js",
    ],
)
def test_public_paths_need_no_token(secured, path):
    with secured.get(path) as response:  # closes the file a static answer streams
        assert response.status_code == 200, (path, response.status_code)
        assert "WWW-Authenticate" not in response.headers


def test_readiness_needs_no_token(secured):
    # No workers run here, so it answers 503, but never 401.
    assert secured.get("/readyz").status_code in (200, 503)


def test_a_job_records_a_hash_of_its_token_never_the_token(secured, redis_client):
    job = create(secured, ALICE)
    owner = redis_client.hget(keys.job(job["id"]), "owner")
    assert owner == "sha256:" + hashlib.sha256(ALICE.encode()).hexdigest()
    # Nowhere in Redis (job records, broker messages) is the token itself.
    for key in redis_client.keys("*"):
        kind = redis_client.type(key)
        if kind == "hash":
            values = [*redis_client.hgetall(key).values()]
        elif kind == "list":
            values = redis_client.lrange(key, 0, -1)
        elif kind == "string":
            values = [redis_client.get(key)]
        elif kind == "zset":
            values = redis_client.zrange(key, 0, -1)
        else:
            values = [repr(redis_client.dump(key))]
        assert not any(ALICE in str(value) for value in values), key


def test_the_owner_sees_and_cancels_the_job(secured):
    job = create(secured, ALICE)
    assert secured.get(job["url"], headers=bearer(ALICE)).get_json()["status"] == "queued"
    # Found, and not yet succeeded: the plot is a 409, not a 404.
    assert secured.get(f"{job['url']}/plot.png", headers=bearer(ALICE)).status_code == 409
    response = secured.post(f"{job['url']}/cancel", headers=bearer(ALICE))
    assert response.status_code == 202 and response.get_json()["status"] == "cancelled"


def test_another_token_gets_the_404_of_a_job_that_does_not_exist(secured, redis_client):
    job = create(secured, ALICE)
    missing = f"/jobs/{uuid.uuid4()}"
    for suffix in ("", "/plot.png", "/plot.svg"):
        theirs = secured.get(job["url"] + suffix, headers=bearer(BOB))
        nobodys = secured.get(missing + suffix, headers=bearer(BOB))
        assert theirs.status_code == nobodys.status_code == 404
        body, other = theirs.get_json()["error"], nobodys.get_json()["error"]
        assert body["code"] == other["code"] == "not_found"
        assert body["message"] == other["message"].replace(missing[6:], job["id"])
        assert body["details"] == other["details"] == {}
    assert secured.post(f"{job['url']}/cancel", headers=bearer(BOB)).status_code == 404
    # Bob's attempt changed nothing.
    assert redis_client.hget(keys.job(job["id"]), "status") == JobStatus.QUEUED.value


def test_each_token_sees_only_its_own_jobs(secured):
    alices, bobs = create(secured, ALICE), create(secured, BOB)
    assert secured.get(alices["url"], headers=bearer(ALICE)).status_code == 200
    assert secured.get(bobs["url"], headers=bearer(BOB)).status_code == 200
    assert secured.get(alices["url"], headers=bearer(BOB)).status_code == 404
    assert secured.get(bobs["url"], headers=bearer(ALICE)).status_code == 404


def test_a_job_created_without_auth_is_hidden_once_auth_is_on(redis_client):
    open_api = create_app({"TESTING": True}).test_client()
    job = open_api.post("/jobs", json=JOB).get_json()
    secured = create_app({"TESTING": True, "api_tokens": (ALICE,)}).test_client()
    assert secured.get(job["url"], headers=bearer(ALICE)).status_code == 404


def test_the_plot_of_a_finished_job_is_for_its_owner_only(secured, redis_server):
    import redis

    from tests.factories import plotted_result

    job = create(secured, ALICE)
    jobs = JobStore(redis.Redis.from_url(redis_server.url), ttl_seconds=60)
    jobs.start_fitting(job["id"], [[3, 10, 1], [8, 10, 1]])
    result = plotted_result()
    assert jobs.succeed(job["id"], result)
    svg = secured.get(f"{job['url']}/plot.svg", headers=bearer(ALICE))
    assert svg.status_code == 200 and svg.mimetype == "image/svg+xml"
    assert secured.get(f"{job['url']}/plot.svg", headers=bearer(BOB)).status_code == 404
    assert secured.get(f"{job['url']}/plot.svg").status_code == 401


def test_every_configured_token_is_compared_in_constant_time(secured, monkeypatch):
    import hmac

    from api import auth

    compared, original = [], hmac.compare_digest

    def compare_digest(a, b):
        compared.append((len(a), len(b)))
        return original(a, b)

    monkeypatch.setattr(auth.hmac, "compare_digest", compare_digest)
    # Alice's token is the first configured: the loop must not stop at it.
    assert secured.post("/jobs", json=JOB, headers=bearer(ALICE)).status_code == 202
    assert len(compared) == 2
    compared.clear()
    assert secured.post("/jobs", json=JOB, headers=bearer("x")).status_code == 401
    # Digests are compared, so a short guess takes as long as any other.
    assert compared == [(32, 32), (32, 32)]


def test_openapi_documents_the_bearer_scheme_and_401_when_on(secured, client):
    spec = secured.get("/openapi.json").get_json()
    assert spec["components"]["securitySchemes"]["bearerAuth"] == {
        "type": "http",
        "scheme": "bearer",
    }
    for path, method in [
        ("/jobs", "post"),
        ("/jobs/{job_id}", "get"),
        ("/jobs/{job_id}", "delete"),
        ("/jobs/{job_id}/plot.png", "get"),
        ("/jobs/{job_id}/plot.svg", "get"),
    ]:
        operation = spec["paths"][path][method]
        assert "401" in operation["responses"], (path, method)
        assert operation["security"] == [{"bearerAuth": []}]
    for path in ("/healthz", "/readyz", "/metrics"):
        assert "401" not in spec["paths"][path]["get"]["responses"]
        assert "security" not in spec["paths"][path]["get"]
    open_spec = client.get("/openapi.json").get_json()
    assert "securitySchemes" not in open_spec["components"]
    assert "401" not in open_spec["paths"]["/jobs"]["post"]["responses"]


def test_tokens_are_read_from_the_environment_and_kept_out_of_repr():
    settings = Settings.from_env({"EMCOINS_API_TOKENS": f"{ALICE}, {BOB}"})
    assert settings.api_tokens == (ALICE, BOB)
    assert ALICE not in repr(settings)
    assert Settings().api_tokens == ()


def test_a_token_with_whitespace_is_refused_without_echoing_it():
    with pytest.raises(ConfigError, match="EMCOINS_API_TOKENS") as info:
        Settings(api_tokens=("has space",))
    assert "has space" not in str(info.value)
