"""One structured log line per request, carrying the job id of job routes."""

from __future__ import annotations

import time

from flask import Flask, Response, current_app, g, request

from shared import logs


def _start_request() -> None:
    g.emcoins_started = time.perf_counter()
    job_id = (request.view_args or {}).get("job_id")
    g.emcoins_job_token = logs.current_job.set(job_id)


def _log_request(response: Response) -> Response:
    started = g.get("emcoins_started")
    if started is not None and request.path != "/metrics":
        current_app.logger.info(
            "%s %s %s", request.method, request.path, response.status_code,
            extra={
                "method": request.method,
                "path": request.path,
                "status": response.status_code,
                "duration_ms": round((time.perf_counter() - started) * 1000, 1),
            },
        )
    return response


def _end_request(exc: BaseException | None) -> None:
    token = g.pop("emcoins_job_token", None)
    if token is not None:
        logs.current_job.reset(token)


def init_app(app: Flask) -> None:
    """Structured logs in the configured format, and a line per request with its job id."""
    logs.configure(app.config["SETTINGS"].log_format)
    app.before_request(_start_request)
    app.after_request(_log_request)
    app.teardown_request(_end_request)
