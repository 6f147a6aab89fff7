"""Hostile request bodies get JSON 4xx answers, never a 500: depth, integer length, size.

In-process through Flask's test client where it can send the request, and through a real
gunicorn for what only a server sees: an over-long request line and a chunked body.
"""

from __future__ import annotations

import http.client
import io
import json
import os
import socket
import sys
from pathlib import Path

import pytest
from flask import request
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

from api import create_app
from api.errors import APIError
from localstack.ports import free_port
from localstack.processes import Service, wait_http
from tests.api.test_jobs import assert_error
from tests.conftest import TEST_ALLOWLIST

ROOT = Path(__file__).resolve().parents[2]
JOB = '{"counts": [[1, 3]], "n_components": 1}'  # accepted whatever K's defaults need


def post_text(client, text: str | bytes, **kwargs):
    return client.post("/jobs", data=text, content_type="application/json", **kwargs)


def nested(depth: int, *, inner: str = "1", kind: str = "[") -> str:
    """``inner`` inside ``depth`` arrays (``[``) or objects (``{``)."""
    if kind == "[":
        return "[" * depth + inner + "]" * depth
    return '{"a": ' * depth + inner + "}" * depth


# --- depth ------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "text",
    [
        nested(1000),
        nested(1000, kind="{"),
        '{"counts": [[1, 3]], "x": ' + nested(1000) + "}",
        '{"counts": ' + "[" * 100_000,  # not even JSON: still no recursion
    ],
    ids=["arrays", "objects", "in-a-field", "unclosed"],
)
def test_deep_nesting_is_400_naming_the_limit(client, redis_client, text):
    error = assert_error(post_text(client, text), 400, "bad_request")
    assert "EMCOINS_MAX_JSON_DEPTH" in error["message"]
    assert error["details"] == {"max_json_depth": 32}
    assert redis_client.keys("emcoins:*") == []


def test_depth_limit_counts_structure_not_strings(client):
    # The object is level 1: 31 arrays inside make 32, the limit; 32 arrays make 33.
    at_limit = post_text(client, '{"counts": [[1, 3]], "x": ' + nested(31) + "}")
    assert assert_error(at_limit, 422, "invalid_fields")["details"] == {"x": "Unknown field."}
    over = post_text(client, '{"counts": [[1, 3]], "x": ' + nested(32) + "}")
    assert "33 deep" in assert_error(over, 400, "bad_request")["message"]
    # Brackets and escaped quotes inside strings are text, not nesting.
    text = '{"counts": [[1, 3]], "x": "\\"' + "[{" * 2000 + '"}'
    assert assert_error(post_text(client, text), 422, "invalid_fields")["details"] == {
        "x": "Unknown field."
    }


# --- numbers ----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "path", "digits"),
    [
        ('{"counts": [[1, 1' + "0" * 400 + "]]}", "counts.0.1", 401),
        ('{"counts": [[1, 3]], "seed": 1' + "0" * 5000 + "}", "seed", 5001),
        ('{"counts": [[1, 3]], "restarts": -' + "9" * 31 + "}", "restarts", 31),
        ('{"counts": [[1, 3]], "x": [{"y": 1' + "0" * 4400 + "}]}", "x.0.y", 4401),
    ],
    ids=["flips-10^400", "seed-5001-digits", "negative-31-digits", "beyond-python-4300"],
)
def test_long_integers_are_422_at_their_path(client, redis_client, text, path, digits):
    error = assert_error(post_text(client, text), 422, "invalid_fields")
    assert error["details"] == {
        path: f"At most 30 digits in an integer (EMCOINS_MAX_INT_DIGITS); this one has {digits}."
    }
    assert redis_client.keys("emcoins:*") == []


def test_thirty_digits_parse_and_thirty_one_do_not(client):
    error = assert_error(post_text(client, JOB[:-1] + ', "seed": 1' + "0" * 29 + "}"), 422,
                         "invalid_fields")
    assert "less than or equal to" in error["details"]["seed"]  # the schema's range check
    error = assert_error(post_text(client, JOB[:-1] + ', "seed": 1' + "0" * 30 + "}"), 422,
                         "invalid_fields")
    assert "EMCOINS_MAX_INT_DIGITS" in error["details"]["seed"]


@pytest.mark.parametrize(
    ("text", "path"),
    [
        ('{"counts": [[1e400, 3]]}', "counts.0.0"),
        ('{"counts": [[1, 3]], "seed": -1e400}', "seed"),
        ('{"counts": [[1, 3]], "seed": NaN}', "seed"),
        ('{"counts": [[1, 3]], "n_components": Infinity}', "n_components"),
        ("-Infinity", "_request"),
    ],
)
def test_numbers_that_are_not_finite_are_422_at_their_path(client, text, path):
    error = assert_error(post_text(client, text), 422, "invalid_fields")
    assert list(error["details"]) == [path]
    assert error["details"][path].startswith("Not a finite number")


def test_the_limits_come_from_settings(redis_client):
    client = create_app({"max_json_depth": 4, "max_int_digits": 5}).test_client()
    error = assert_error(post_text(client, '{"counts": [[[[1]]]]}'), 400, "bad_request")
    assert error["details"] == {"max_json_depth": 4}
    error = assert_error(post_text(client, JOB[:-1] + ', "seed": 123456}'), 422,
                         "invalid_fields")
    assert "At most 5 digits" in error["details"]["seed"]
    assert post_text(client, JOB[:-1] + ', "seed": 12345}').status_code == 202


# --- not JSON, unknown keys ---------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "fragment"),
    [
        ("{not json", "line 1, column 2"),
        ('{"counts": [[1, 3]],\n "seed": 1,}', "line 2, column 12"),
        (b'{"draws": ["H\xff"]}', "Not UTF-8"),
    ],
)
def test_a_body_that_is_not_json_is_400_saying_where(client, text, fragment):
    error = assert_error(post_text(client, text), 400, "bad_request")
    assert error["message"] == "The body is not valid JSON."
    assert fragment in error["details"]["_request"]


@pytest.mark.parametrize(
    ("body", "details"),
    [
        ({"counts": [[1, 3]], "_schema": 1}, {"_schema": "Unknown field."}),
        ({"source": {"url": "http://127.0.0.1:9/d", "_schema": 1}},
         {"source._schema": "Unknown field."}),
        ({"source": {"url": "http://127.0.0.1:9/d", "colour": "red"}, "_schema": None},
         {"source.colour": "Unknown field.", "_schema": "Unknown field."}),
        # Known fields are still checked: every problem in one answer.
        ({"counts": [[3, 2]], "_schema": 1},
         {"counts.0": "heads (3) cannot exceed flips (2).", "_schema": "Unknown field."}),
        ({"_schema": 1},
         {"_request": "Give exactly one of source, draws or counts.",
          "_schema": "Unknown field."}),
    ],
)
def test_unknown_keys_are_named_at_their_own_path(client, redis_client, body, details):
    error = assert_error(client.post("/jobs", json=body), 422, "invalid_fields")
    assert error["details"] == details
    assert redis_client.keys("emcoins:*") == []


# --- size -------------------------------------------------------------------------------


def padded(size: int) -> bytes:
    """A valid job of exactly ``size`` bytes."""
    return (JOB + " " * (size - len(JOB))).encode()


def test_a_streamed_body_over_the_limit_is_413(redis_client):
    client = create_app({"max_body_bytes": 1000, "source_allowlist": TEST_ALLOWLIST}).test_client()

    def send(body: bytes):
        # No Content-Length: the server tells the app that it ends the (chunked) stream.
        return client.post(
            "/jobs", input_stream=io.BytesIO(body), content_type="application/json",
            headers={"Transfer-Encoding": "chunked"},
            environ_overrides={"wsgi.input_terminated": True},
        )

    assert send(padded(1000)).status_code == 202
    for size in (1001, 50_000):
        error = assert_error(send(padded(size)), 413, "body_too_large")
        assert error["message"] == "The body is larger than 1000 bytes (EMCOINS_MAX_BODY_BYTES)."


# --- request.get_json goes through the same limits ----------------------------------------


def test_get_json_and_the_app_json_provider_apply_the_limits(app):
    assert app.json.sort_keys is False  # the settings of the provider it replaced are kept
    for text, status in ((nested(1000), 400), ('{"a": [1e400]}', 422), ("{", 400)):
        with app.test_request_context("/", method="POST", data=text,
                                      content_type="application/json"):
            with pytest.raises(APIError) as caught:
                request.get_json()
            assert caught.value.status == status
    with pytest.raises(APIError) as caught:
        app.json.loads('{"a": [1, 1' + "0" * 40 + "]}")
    assert caught.value.details == {
        "a.1": "At most 30 digits in an integer (EMCOINS_MAX_INT_DIGITS); this one has 41."
    }
    assert app.json.loads('{"a": [1, 2.5]}') == {"a": [1, 2.5]}


# --- generated hostile bodies -------------------------------------------------------------

field_names = st.sampled_from(
    ["counts", "seed", "restarts", "n_components", "source", "x", "_schema"]
)
# Each one refused whatever field holds it: with the body's own object and the wrapping,
# 32 levels more are 33 at least.
hostile_values = st.one_of(
    st.builds(nested, st.integers(32, 3000), kind=st.sampled_from(["[", "{"])),
    st.integers(31, 6000).map(lambda n: "-" * (n % 2) + "9" * n),
    st.integers(309, 5000).map(lambda e: f"{e % 9 + 1}e{e}"),
    st.sampled_from(["NaN", "Infinity", "-Infinity"]),
)


@settings(
    max_examples=60, deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture],
)
@given(
    field=field_names,
    value=hostile_values,
    wrap=st.sampled_from(["{}", "[{}]", '{{"url": {}}}']),
)
@example(field="x", value=nested(1000), wrap="{}")
@example(field="counts", value="1" + "0" * 400, wrap="[[1, {}]]")
@example(field="seed", value="1" + "0" * 4999, wrap="{}")
@example(field="seed", value="1e400", wrap="{}")
@example(field="source", value="1", wrap='{{"url": "http://127.0.0.1:9/d", "_schema": {}}}')
def test_hostile_bodies_get_a_json_4xx(client, field, value, wrap):
    inner = wrap.format(value)
    text = f'{{"counts": [[1, 3]], "{field}": {inner}}}'
    response = post_text(client, text)
    assert response.status_code in (400, 422), (text[:200], response.status_code)
    body = response.get_json()
    assert set(body) == {"error"} and body["error"]["details"], body


# --- through gunicorn -------------------------------------------------------------------


@pytest.fixture(scope="module")
def gunicorn(redis_server, tmp_path_factory):
    """The API under gunicorn with the JSON error worker; its ``host:port``."""
    port = free_port()
    env = {**os.environ, "EMCOINS_REDIS_URL": redis_server.url,
           "EMCOINS_SOURCE_ALLOWLIST": ",".join(TEST_ALLOWLIST), "EMCOINS_LOG_FORMAT": "text"}
    service = Service(
        "gunicorn",
        [sys.executable, "-m", "gunicorn", "--chdir", str(ROOT), "-b", f"127.0.0.1:{port}",
         "-w", "1", "-k", "api.errors.JSONErrorWorker", "--threads", "2", "api:create_app()"],
        env=env, log_dir=tmp_path_factory.mktemp("gunicorn"),
    ).start()
    try:
        wait_http(f"http://127.0.0.1:{port}/healthz", timeout=30, service=service)
        yield f"127.0.0.1:{port}"
    finally:
        service.stop()


def raw_exchange(address: str, data: bytes) -> tuple[int, dict[str, str], bytes]:
    """Send ``data`` as is and read the answer until the server closes."""
    host, port = address.split(":")
    with socket.create_connection((host, int(port)), timeout=10) as sock:
        sock.sendall(data)
        answer = b""
        while chunk := sock.recv(65536):
            answer += chunk
    head, _, body = answer.partition(b"\r\n\r\n")
    lines = head.decode("latin-1").split("\r\n")
    headers = dict(line.split(": ", 1) for line in lines[1:])
    return int(lines[0].split()[1]), {k.lower(): v for k, v in headers.items()}, body


@pytest.mark.parametrize(
    ("request_bytes", "status", "code"),
    [
        (b"GET /jobs/" + b"a" * 5000 + b" HTTP/1.1\r\nHost: x\r\n\r\n", 414, "uri_too_long"),
        (b"GET /jobs/" + b"a" * 9000 + b" HTTP/1.1\r\nHost: x\r\n\r\n", 414, "uri_too_long"),
        (b"GET /healthz HTTP/1.1\r\nHost: x\r\nX-Big: " + b"b" * 9000 + b"\r\n\r\n", 431,
         "headers_too_large"),
    ],
    ids=["5000", "9000", "header"],
)
def test_what_gunicorn_refuses_itself_is_json(gunicorn, request_bytes, status, code):
    got, headers, body = raw_exchange(gunicorn, request_bytes)
    assert got == status, body[:300]
    assert headers["content-type"] == "application/json"
    error = json.loads(body)["error"]
    assert error["code"] == code and error["message"] and error["details"] == {}


def test_a_chunked_body_is_read_and_held_to_the_limit_under_gunicorn(gunicorn, redis_client):
    def send(body: bytes) -> tuple[int, dict]:
        conn = http.client.HTTPConnection(gunicorn, timeout=30)
        # An iterable body without Content-Length goes out chunked.
        pieces = (body[i:i + 65536] for i in range(0, len(body), 65536))
        conn.request("POST", "/jobs", body=pieces, encode_chunked=True,
                     headers={"Content-Type": "application/json"})
        response = conn.getresponse()
        answer = response.status, json.loads(response.read())
        conn.close()
        return answer

    limit = 2 * 1024 * 1024  # EMCOINS_MAX_BODY_BYTES's default
    status, body = send(padded(limit))
    assert status == 202, body
    status, body = send(padded(limit + 1))
    assert status == 413, body
    assert body["error"]["message"] == (
        f"The body is larger than {limit} bytes (EMCOINS_MAX_BODY_BYTES)."
    )
