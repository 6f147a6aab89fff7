"""Submission refuses draw sources off the allow-list with a 422, before anything is queued."""

from __future__ import annotations

import pytest

from api import create_app


def submit(client, url, **source):
    return client.post("/jobs", json={"source": {"url": url, "draws": 5, **source}})


def assert_nothing_stored_or_queued(redis_client):
    assert redis_client.keys("emcoins:*") == []
    assert redis_client.llen("io") == 0 and redis_client.llen("cpu") == 0


@pytest.fixture
def bundled(redis_client):
    """An API allowing only the bundled draw source's origin."""
    return create_app({"source_allowlist": ("http://127.0.0.1:8001",)}).test_client()


def test_an_allowed_origin_is_accepted(bundled, redis_client):
    response = submit(bundled, "http://127.0.0.1:8001/draw")
    assert response.status_code == 202, response.get_json()
    assert redis_client.llen("io") >= 1


@pytest.mark.parametrize(
    ("url", "fragment"),
    [
        ("http://127.0.0.1:8002/draw", "not an allowed draw source"),
        ("https://127.0.0.1:8001/draw", "not an allowed draw source"),
        ("http://localhost:8001/draw", "not an allowed draw source"),
        ("http://169.254.169.254/latest/meta-data/", "not an allowed draw source"),
        ("http://127.0.0.1:8001@169.254.169.254/draw", "not an allowed draw source"),
        ("ftp://127.0.0.1:8001/draw", "Not a valid URL"),
        ("file:///etc/passwd", "Not a valid URL"),
    ],
)
def test_a_refused_url_is_422_at_source_url_and_nothing_is_queued(
    bundled, redis_client, url, fragment
):
    response = submit(bundled, url)
    assert response.status_code == 422, response.get_json()
    error = response.get_json()["error"]
    assert error["code"] == "invalid_fields"
    assert fragment in error["details"]["source.url"], error["details"]
    assert_nothing_stored_or_queued(redis_client)


def test_the_refusal_names_the_setting(bundled):
    details = submit(bundled, "http://10.1.2.3:8001/draw").get_json()["error"]["details"]
    assert "EMCOINS_SOURCE_ALLOWLIST" in details["source.url"]


def test_a_port_wildcard_allows_every_port_of_its_host(redis_client):
    client = create_app({"source_allowlist": ("http://127.0.0.1:*",)}).test_client()
    assert submit(client, "http://127.0.0.1:9/draw").status_code == 202
    assert submit(client, "http://127.0.0.1:54321/draw").status_code == 202
    assert submit(client, "http://127.0.0.2:9/draw").status_code == 422


@pytest.mark.parametrize("port", ["0", "00", "65536"])
def test_a_port_wildcard_refuses_ports_outside_1_to_65535(redis_client, port):
    # Port 0 passed the wildcard, and the HTTP client then connected to port 80.
    client = create_app({"source_allowlist": ("http://127.0.0.1:*",)}).test_client()
    response = submit(client, f"http://127.0.0.1:{port}/draw")
    assert response.status_code == 422, response.get_json()
    error = response.get_json()["error"]
    assert error["code"] == "invalid_fields" and "source.url" in error["details"]
    assert_nothing_stored_or_queued(redis_client)


def test_a_metadata_address_is_refused_even_when_listed(redis_client):
    client = create_app({"source_allowlist": ("http://169.254.169.254",)}).test_client()
    response = submit(client, "http://169.254.169.254/latest/meta-data/")
    assert response.status_code == 422
    assert "link-local" in response.get_json()["error"]["details"]["source.url"]
    assert_nothing_stored_or_queued(redis_client)


def test_inline_data_needs_no_allowlist(redis_client):
    client = create_app({"source_allowlist": ()}).test_client()
    assert client.post("/jobs", json={"counts": [[1, 3], [2, 3]]}).status_code == 202
    assert submit(client, "http://127.0.0.1:8001/draw").status_code == 422
