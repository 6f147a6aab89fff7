"""The one place where exceptions become JSON errors: ``{"error": {code, message, details}}``."""

from __future__ import annotations

import json
from typing import Any

import redis
from apispec import BasePlugin
from flask import Flask, jsonify
from flask_smorest import Api
from gunicorn import util as gunicorn_util
from gunicorn.http.errors import LimitRequestHeaders, LimitRequestLine
from gunicorn.workers.gthread import ThreadWorker
from kombu.exceptions import OperationalError
from werkzeug.exceptions import HTTPException

from shared.config import Settings

# HTTP status -> the code clients match on.
_CODES = {
    400: "bad_request",
    401: "unauthorized",
    404: "not_found",
    405: "method_not_allowed",
    409: "conflict",
    413: "body_too_large",
    414: "uri_too_long",
    415: "unsupported_media_type",
    422: "invalid_fields",
    429: "too_many_jobs",
    431: "headers_too_large",
    503: "unavailable",
}


class APIError(Exception):
    """An error a route raises on purpose, with its status, code and details."""

    def __init__(
        self,
        status: int,
        message: str,
        *,
        code: str | None = None,
        details: dict[str, Any] | None = None,
        headers: dict[str, str] | None = None,
    ):
        super().__init__(message)
        self.status = status
        self.code = code or _CODES.get(status, "error")
        self.message = message
        self.details = details or {}
        self.headers = headers or {}


def error_response(
    status: int,
    message: str,
    *,
    code: str | None = None,
    details: dict[str, Any] | None = None,
    headers: dict[str, str] | None = None,
):
    """A JSON error response in the envelope every error uses."""
    body = {
        "error": {
            "code": code or _CODES.get(status, "error"),
            "message": message,
            "details": details or {},
        }
    }
    response = jsonify(body)
    response.status_code = status
    for name, value in (headers or {}).items():
        response.headers[name] = value
    return response


def flatten(messages: Any, prefix: str = "") -> dict[str, str]:
    """Turn marshmallow's nested messages into ``{"counts.3.0": "Not a valid integer."}``."""
    if isinstance(messages, dict):
        flat: dict[str, str] = {}
        for key, value in messages.items():
            path = prefix if key == "_schema" else f"{prefix}.{key}" if prefix else str(key)
            flat.update(flatten(value, path))
        return flat
    if isinstance(messages, list) and all(isinstance(m, str) for m in messages):
        return {prefix or "_request": " ".join(messages)}
    if isinstance(messages, list):
        flat = {}
        for index, value in enumerate(messages):
            flat.update(flatten(value, f"{prefix}.{index}" if prefix else str(index)))
        return flat
    return {prefix or "_request": str(messages)}


def _http_error(exc: HTTPException):
    status = exc.code or 500
    data = getattr(exc, "data", None) or {}
    messages = data.get("messages")
    if status == 422 and messages:
        # webargs nests field errors under the location ("json", "query"); users want the
        # field's path or the parameter's name.
        details: dict[str, str] = {}
        for located in messages.values():
            details.update(flatten(located))
        return error_response(422, "Some fields are invalid; see details.", details=details)
    if status == 400 and messages:
        return error_response(400, "The body is not valid JSON.", details=flatten(messages))
    message = exc.description or exc.name
    if status == 413:
        limit = _settings_limit()
        message = f"The body is larger than {limit} bytes (EMCOINS_MAX_BODY_BYTES)."
    # werkzeug's own headers (Allow on a 405, WWW-Authenticate...) go with the JSON body.
    headers = {k: v for k, v in exc.get_headers() if k.lower() != "content-type"}
    headers.update(getattr(exc, "headers", None) or {})
    return error_response(status, message, headers=headers)


def _api_error(exc: APIError):
    return error_response(
        exc.status, exc.message, code=exc.code, details=exc.details, headers=exc.headers
    )


def _unavailable(exc: Exception):
    # Redis (store or broker) is down or frozen: say so quickly instead of hanging or a 500.
    settings = _settings()
    return error_response(
        503,
        "The job store or queue is not answering; try again shortly.",
        details={"dependency": "redis", "reason": type(exc).__name__},
        headers={"Retry-After": str(settings.retry_after_seconds if settings else 1)},
    )


def _settings() -> Settings | None:
    from flask import current_app

    return current_app.config.get("SETTINGS")


def _settings_limit() -> int:
    settings = _settings()
    return settings.max_body_bytes if settings else 0


class UnavailablePlugin(BasePlugin):
    """Documents the 503 of :func:`_unavailable` on every operation that uses Redis."""

    def operation_helper(self, path=None, operations=None, **kwargs) -> None:
        """Add the 503 where an operation does not describe its own."""
        if path == "/healthz":  # answers without Redis
            return
        for operation in (operations or {}).values():
            operation.setdefault("responses", {}).setdefault(
                "503",
                {
                    "description": "Redis is not answering; retry after Retry-After.",
                    "content": {
                        "application/json": {"schema": {"$ref": "#/components/schemas/Error"}}
                    },
                },
            )


class JSONErrorWorker(ThreadWorker):
    """gunicorn's gthread worker, refusing over-long request lines and headers in JSON.

    gunicorn answers these itself, before the app sees the request, with an HTML page:
    run it with ``-k api.errors.JSONErrorWorker`` so that they get the envelope too. The
    limits stay gunicorn's (``--limit-request-line``, default 4094 bytes).
    """

    REFUSALS = {LimitRequestLine: (414, "URI Too Long"),
                LimitRequestHeaders: (431, "Request Header Fields Too Large")}

    def handle_error(self, req, client, addr, exc) -> None:
        """Answer a refused request line or header block in JSON; anything else as gunicorn does."""
        refusal = next((v for k, v in self.REFUSALS.items() if isinstance(exc, k)), None)
        if refusal is None:
            super().handle_error(req, client, addr, exc)
            return
        status, reason = refusal
        self.log.warning("Invalid request from ip=%s: %s", (addr or ("",))[0], exc)
        body = json.dumps(
            {"error": {"code": _CODES[status], "message": f"{reason}: {exc}.", "details": {}}}
        ).encode()
        head = (
            f"HTTP/1.1 {status} {reason}\r\nConnection: close\r\n"
            f"Content-Type: application/json\r\nContent-Length: {len(body)}\r\n\r\n"
        )
        try:
            gunicorn_util.write_nonblock(client, head.encode("latin-1") + body)
        except OSError:
            self.log.debug("Failed to send error message.")


def init_app(app: Flask, api: Api) -> None:
    """Register the handlers; they replace flask-smorest's own error format."""
    app.register_error_handler(HTTPException, _http_error)
    app.register_error_handler(APIError, _api_error)
    app.register_error_handler(redis.RedisError, _unavailable)
    app.register_error_handler(OperationalError, _unavailable)
