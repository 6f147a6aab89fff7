"""Liveness and readiness."""


def test_healthz(client):
    response = client.get("/healthz")
    assert response.status_code == 200
    assert response.get_json()["status"] == "ok"


def test_readyz_without_workers_is_503(client):
    response = client.get("/readyz")
    assert response.status_code == 503
    error = response.get_json()["error"]
    assert error["code"] == "not_ready"
    assert error["details"]["redis"] == "ok"
    assert "no worker" in error["details"]["workers"]
    assert response.headers["Retry-After"]


def test_readyz_with_redis_down_names_it(redis_client):
    from api import create_app

    client = create_app({"redis_url": "redis://127.0.0.1:9/0", "redis_timeout": 0.5}).test_client()
    response = client.get("/readyz")
    assert response.status_code == 503
    assert "not answering" in response.get_json()["error"]["details"]["redis"]
    response = client.get("/jobs/abc")
    assert response.status_code == 503
    assert response.get_json()["error"]["details"]["dependency"] == "redis"
