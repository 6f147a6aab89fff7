"""The Flask app through its test client: formats, faults, latency and JSON errors."""

from __future__ import annotations

import json
import re
import time
from typing import Any

import pytest
from flask.testing import FlaskClient

from drawsource.app import create_app
from drawsource.coins import CoinPlayer
from drawsource.config import DrawSourceConfig
from shared.draws import parse_draw_payload


def client_for(**settings: Any) -> FlaskClient:
    return create_app(DrawSourceConfig(**settings)).test_client()


def test_string_format_is_an_h_t_string() -> None:
    client = client_for(flips=12, seed=1)
    for _ in range(20):
        response = client.get("/draw")
        assert response.status_code == 200
        assert response.is_json
        data = response.get_json()
        assert list(data) == ["flips"]
        assert re.fullmatch(r"[HT]{12}", data["flips"])


def test_list_format_is_a_list_of_zero_one() -> None:
    client = client_for(flips=12, seed=1, format="list")
    for _ in range(20):
        data = client.get("/draw").get_json()
        assert list(data) == ["flips"]
        assert len(data["flips"]) == 12
        assert all(type(f) is int and f in (0, 1) for f in data["flips"])


def test_apigw_format_is_a_proxy_response_with_a_json_list_body() -> None:
    client = client_for(flips=12, seed=1, format="apigw")
    for _ in range(20):
        response = client.get("/draw")
        assert response.status_code == 200
        data = response.get_json()
        assert set(data) == {"statusCode", "body"}
        assert data["statusCode"] == 200
        assert isinstance(data["body"], str)
        body = json.loads(data["body"])
        assert len(body) == 12
        assert set(body) <= {0, 1}


@pytest.mark.parametrize(
    ("fmt", "expected"),
    [
        ("string", {"flips": "HHHHHHH"}),
        ("list", {"flips": [1, 1, 1, 1, 1, 1, 1]}),
        ("apigw", {"statusCode": 200, "body": "[1, 1, 1, 1, 1, 1, 1]"}),
    ],
)
def test_an_always_heads_coin_gives_exactly_known_answers(
    fmt: str, expected: dict[str, Any]
) -> None:
    client = client_for(coins=(1.0,), flips=7, format=fmt)
    assert client.get("/draw").get_json() == expected


def test_an_unweighted_coin_is_never_played() -> None:
    client = client_for(coins=(0.0, 1.0), weights=(1.0, 0.0), flips=5)
    assert {client.get("/draw").get_json()["flips"] for _ in range(50)} == {"TTTTT"}


@pytest.mark.parametrize("fmt", ["string", "list", "apigw"])
def test_every_format_is_read_by_the_consumer_parser(fmt: str) -> None:
    # Same seed, same flips whatever the format; the consumer must count the same heads.
    reference = CoinPlayer((0.3, 0.7), (0.5, 0.5), flips=9, seed=11)
    client = client_for(flips=9, seed=11, format=fmt)
    for _ in range(30):
        flips = reference.draw()
        heads, trials = parse_draw_payload(client.get("/draw").get_json())
        assert (heads, trials) == (sum(flips), 9)


def test_seeded_app_serves_the_players_stream() -> None:
    reference = CoinPlayer((0.3, 0.7), (0.5, 0.5), flips=10, seed=5)
    client = client_for(seed=5)
    served = [client.get("/draw").get_json()["flips"] for _ in range(40)]
    expected = ["".join("H" if f else "T" for f in reference.draw()) for _ in range(40)]
    assert served == expected


def test_injected_errors_do_not_shift_the_draw_stream() -> None:
    reference = CoinPlayer((0.3, 0.7), (0.5, 0.5), flips=10, seed=5)
    client = client_for(seed=5, format="list", error_rate=0.5)
    responses = [client.get("/draw") for _ in range(100)]
    served = [r.get_json()["flips"] for r in responses if r.status_code == 200]
    assert 0 < len(served) < 100
    assert served == [reference.draw() for _ in served]


def test_error_rate_one_always_answers_5xx_json() -> None:
    client = client_for(error_rate=1.0)
    for _ in range(30):
        response = client.get("/draw")
        assert 500 <= response.status_code < 600
        assert response.is_json
        data = response.get_json()
        assert data["status"] == response.status_code
        assert data["error"]
        assert "flips" not in data


def test_error_rate_zero_never_fails() -> None:
    client = client_for()
    assert {client.get("/draw").status_code for _ in range(300)} == {200}


def test_errors_apply_to_draws_only() -> None:
    client = client_for(error_rate=1.0)
    assert client.get("/healthz").status_code == 200
    assert client.get("/config").status_code == 200


@pytest.mark.parametrize("path", ["/draw", "/healthz", "/nowhere"])
def test_latency_is_added_to_every_answer(path: str) -> None:
    client = client_for(latency_ms=60)
    start = time.perf_counter()
    client.get(path)
    assert time.perf_counter() - start >= 0.060


def test_slow_requests_are_delayed_then_answered() -> None:
    client = client_for(slow_rate=1.0, slow_seconds=0.15)
    start = time.perf_counter()
    response = client.get("/draw")
    assert time.perf_counter() - start >= 0.15
    assert response.status_code == 200


def test_slow_rate_zero_never_stalls() -> None:
    client = client_for(slow_seconds=5.0)
    start = time.perf_counter()
    for _ in range(20):
        client.get("/draw")
    assert time.perf_counter() - start < 5.0


def test_healthz() -> None:
    response = client_for().get("/healthz")
    assert response.status_code == 200
    assert response.get_json() == {"status": "ok"}


@pytest.mark.parametrize("path", ["/", "/config"])
def test_config_endpoint_shows_what_is_played(path: str) -> None:
    client = client_for(coins=(0.1, 0.6, 0.8), weights=(2.0, 1.0, 1.0), flips=20, format="list")
    data = client.get(path).get_json()
    assert data["coins"] == [0.1, 0.6, 0.8]
    assert data["weights"] == pytest.approx([0.5, 0.25, 0.25])
    assert data["flips"] == 20
    assert data["format"] == "list"


def test_unknown_path_is_404_json() -> None:
    response = client_for().get("/no/such/path")
    assert response.status_code == 404
    assert response.is_json
    assert response.get_json()["status"] == 404


def test_wrong_method_is_405_json_with_allow_header() -> None:
    response = client_for().post("/draw")
    assert response.status_code == 405
    assert response.is_json
    assert response.get_json()["status"] == 405
    assert "GET" in response.headers["Allow"]


def test_create_app_without_config_reads_the_environment(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("DRAWSOURCE_COINS", "0")
    monkeypatch.setenv("DRAWSOURCE_FLIPS", "3")
    monkeypatch.setenv("DRAWSOURCE_FORMAT", "list")
    client = create_app().test_client()
    assert client.get("/draw").get_json() == {"flips": [0, 0, 0]}
